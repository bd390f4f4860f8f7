"""Which code a bench result came from, for the result files of every bench script."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def source_commit() -> str:
    """The short commit of HEAD, with "+uncommitted changes" when tracked files differ from it
    (a result measured on such a tree is not reproducible from the commit alone)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=REPO).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD")
    return commit + ("+uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else "")
