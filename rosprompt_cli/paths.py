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


def sha256_file(path: Path, limit: int | None = None) -> str:
    """Hex sha256 of a file's bytes (its first `limit` bytes when given), read in 4 MiB pieces."""
    digest = hashlib.sha256()
    left = limit
    with open(path, "rb") as fh:
        while left is None or left > 0:
            chunk = fh.read(1 << 22 if left is None else min(1 << 22, left))
            if not chunk:
                break
            digest.update(chunk)
            if left is not None:
                left -= len(chunk)
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


def resolved(path: str | Path) -> Path:
    """The absolute path with every symlink followed; a symlink loop is the user's one-line error
    (Python raises RuntimeError or OSError for it, depending on the version)."""
    try:
        return Path(path).expanduser().resolve()
    except (RuntimeError, OSError) as exc:
        raise RosPromptError(f"{path}: a symlink loop (the link leads back to itself); fix or remove the link") from exc


def check_file_to_write(option: str, path: str | Path, what: str) -> None:
    """Before any work: `path` (given with `option`) can become a file: not a folder, in a folder
    that exists."""
    target = resolved(path)
    if target.is_dir():
        raise RosPromptError(f"{option} {path}: is a folder; give a file name for {what}")
    parent = target.parent
    if not parent.is_dir():
        shown = Path(path).parent
        if parent.exists():
            raise RosPromptError(f"{option} {path}: {shown} is a file, not a folder")
        raise RosPromptError(f"{option} {path}: folder {shown} does not exist; create it first")


def refuse_shared_paths(named: dict[str, str | Path | None]) -> None:
    """Any two of the files a run reads or writes (by role) that are one file are refused before
    any work: writing one would destroy the other."""
    seen: dict[Path, str] = {}
    for role, path in named.items():
        if path is None or str(path) == STDIO:
            continue
        absolute = resolved(path)
        if absolute in seen:
            raise RosPromptError(f"{path}: {seen[absolute]} and {role} are the same file; give each its own")
        seen[absolute] = role
