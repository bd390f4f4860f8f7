"""Where rosprompt keeps its per-user cache (converted models), and how files are identified."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from rosprompt_cli.errors import RosPromptError
from rosprompt_cli.formats import STDIO


def cache_home() -> Path:
    """ROSPROMPT_HOME if set, else $XDG_CACHE_HOME/rosprompt, else ~/.cache/rosprompt."""
    explicit = os.environ.get("ROSPROMPT_HOME")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "rosprompt"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 4 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_json_atomically(path: Path, value: object, indent: int | None = None) -> None:
    """JSON, written as write_text_atomically does."""
    write_text_atomically(path, json.dumps(value, indent=indent, ensure_ascii=False) + "\n")


def write_text_atomically(path: Path, text: str) -> None:
    """Write to a hidden sibling, make it durable, then rename it over `path`: a reader (or a
    run resumed after a crash) sees the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def exclusive_lock(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `lock_path` (created if missing): two processes that build the
    same cache entry at once take turns. The lock dies with its process."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as fh:
        try:
            import fcntl
        except ImportError:  # Windows: the callers' atomic renames still prevent a torn entry
            yield
            return
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def refuse_shared_paths(named: dict[str, str | Path | None]) -> None:
    """Any two of the files a run reads or writes (by role) that are one file are refused before
    any work: writing one would destroy the other."""
    seen: dict[Path, str] = {}
    for role, path in named.items():
        if path is None or str(path) == STDIO:
            continue
        resolved = Path(path).expanduser().resolve()
        if resolved in seen:
            raise RosPromptError(f"{path}: {seen[resolved]} and {role} are the same file; give each its own")
        seen[resolved] = role
