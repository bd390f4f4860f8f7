"""Atomic, resumable table writers, and the lock that keeps two runs off one output.

A writer appends batch by batch to a partial file beside the target (`.NAME.rosprompt-partial`,
or a folder of parts for Parquet) and renames it into place only when the run completes, so an
interrupted run never leaves a file that looks complete. `checkpoint()` makes everything written
so far durable and returns where the partial output ends; a writer built with that checkpoint
cuts off anything written after it (a batch half-written when the process was killed) and goes
on from there.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import polars as pl

from rosprompt_cli.errors import ExitCode, RosPromptError, write_failed
from rosprompt_cli.formats import DELIMITED, STDIO, separator


def sidecar(target: Path, role: str) -> Path:
    """A hidden file beside the target that belongs to the run writing it."""
    return target.with_name(f".{target.name}.rosprompt-{role}")


def _part_file(parts_dir: Path, index: int) -> Path:
    return parts_dir / f"{index:08d}.parquet"


def empty_checkpoint(fmt: str) -> dict:
    """The checkpoint of a writer that has written nothing."""
    return {"parts": 0} if fmt == "parquet" else {"bytes": 0}


def start_from_published(target: Path, fmt: str, checkpoint: dict, rows_per_part: int) -> None:
    """Make the partial output of a run that goes on from a published output at `checkpoint`:
    its first bytes (CSV, TSV, JSONL), or its first rows cut into the parts a writer of
    `rows_per_part` rows per part had written (Parquet), so that the file published in the end is
    the one a single run would have written. The published output stays as it is meanwhile."""
    if fmt == "parquet":
        parts_dir = sidecar(target, "parts")
        shutil.rmtree(parts_dir, ignore_errors=True)
        parts_dir.mkdir()
        published = pl.scan_parquet(target)
        for index in range(int(checkpoint["parts"])):
            published.slice(index * rows_per_part, rows_per_part).collect().write_parquet(_part_file(parts_dir, index))
        return
    size = int(checkpoint["bytes"])
    with open(target, "rb") as source, open(sidecar(target, "partial"), "wb") as partial:
        while size > 0:
            piece = source.read(min(1 << 22, size))
            if not piece:
                raise OSError(f"{target} is shorter than its record says")
            partial.write(piece)
            size -= len(piece)
        partial.flush()
        os.fsync(partial.fileno())


class TableWriter:
    """Appends batches; `commit()` publishes the file atomically, `abort()` removes the partial one."""

    def __init__(self, path: str, fmt: str, force: bool = False, resume_from: dict | None = None) -> None:
        self.display = path
        self.fmt = fmt
        self._first = True
        self._parts = 0
        self._fh: BinaryIO | None = None
        if path == STDIO:
            if fmt == "parquet":
                raise RosPromptError("Parquet cannot be streamed to stdout; pass --out FILE.parquet or --out-format")
            self.target: Path | None = None
            self._fh = sys.stdout.buffer
            return
        target = Path(path)
        check_output_path(target, force)
        self.target = target
        self._tmp = sidecar(target, "partial")
        self._parts_dir = sidecar(target, "parts")
        if resume_from is not None:
            self._check_partial(resume_from)
        if fmt == "parquet":
            if resume_from is None:
                shutil.rmtree(self._parts_dir, ignore_errors=True)
            self._parts_dir.mkdir(exist_ok=True)
            if resume_from is not None:
                self._parts = int(resume_from["parts"])
                for part in self._parts_dir.glob("*.parquet"):
                    if int(part.stem) >= self._parts:
                        part.unlink()  # written after the last checkpoint
        elif resume_from is None:
            self._fh = open(self._tmp, "wb")
        else:
            self._fh = open(self._tmp, "r+b")
            self._fh.truncate(int(resume_from["bytes"]))  # drop a batch cut off by the interruption
            self._fh.seek(0, os.SEEK_END)
            self._first = int(resume_from["bytes"]) == 0

    def _check_partial(self, checkpoint: dict) -> None:
        if self.fmt == "parquet":
            missing = [i for i in range(int(checkpoint["parts"])) if not self._part(i).exists()]
            intact = not missing
        else:
            intact = self._tmp.exists() and self._tmp.stat().st_size >= int(checkpoint["bytes"])
        if not intact:
            raise RosPromptError(
                f"{self.display}: the partial output of the interrupted run is missing or shorter than its "
                f"progress file says; run without --resume to start over"
            )

    def _part(self, index: int) -> Path:
        return _part_file(self._parts_dir, index)

    def write(self, frame: pl.DataFrame) -> None:
        try:
            if self.fmt == "parquet":
                frame.write_parquet(self._part(self._parts))
                self._parts += 1
            elif self.fmt in DELIMITED:
                refuse_unwritable(self.display, self.fmt, frame.schema)
                frame.write_csv(self._fh, include_header=self._first, separator=separator(self.fmt))
            else:
                frame.write_ndjson(self._fh)
            self._first = False
            if self.target is None:
                assert self._fh is not None
                self._fh.flush()
        except (OSError, pl.exceptions.ComputeError) as exc:
            if self.target is None and isinstance(exc, OSError) and _is_broken_pipe(exc):
                raise StdoutClosed("stdout was closed by the program reading it; stopped") from exc
            raise write_failed(self.display, exc) from exc

    def checkpoint(self) -> dict:
        """Make what was written durable; the returned dict lets a later writer resume here."""
        if self.fmt == "parquet":
            return {"parts": self._parts}  # the same keys as empty_checkpoint's
        assert self._fh is not None
        try:
            self._fh.flush()
            os.fsync(self._fh.fileno())
        except OSError as exc:
            raise write_failed(self.display, exc) from exc
        return {"bytes": self._fh.tell()}

    def commit(self, before_rename: Callable[[Path], None] | None = None) -> None:
        """Publish the output; `before_rename(partial)` is called once the partial file is
        complete and durable, just before it is renamed into place."""
        if self.target is None:
            return
        try:
            self._commit(before_rename)
        except (OSError, pl.exceptions.ComputeError) as exc:
            raise write_failed(self.display, exc) from exc

    def _commit(self, before_rename: Callable[[Path], None] | None) -> None:
        if self.fmt == "parquet":
            parts = [self._part(i) for i in range(self._parts)]
            if parts:
                # Streaming merge of the parts into one file, written by polars.
                pl.scan_parquet(parts).sink_parquet(self._tmp)
            else:
                pl.DataFrame().write_parquet(self._tmp)
            with open(self._tmp, "rb") as merged:
                os.fsync(merged.fileno())
            shutil.rmtree(self._parts_dir, ignore_errors=True)
        else:
            assert self._fh is not None
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
        if before_rename is not None:
            before_rename(self._tmp)
        os.replace(self._tmp, self.target)

    def suspend(self) -> None:
        """Stop writing but keep the partial output, for `--resume` (which cuts it back to the
        last checkpoint)."""
        if self.target is not None and self._fh is not None:
            try:
                self._fh.close()
            except OSError:
                pass  # bytes after the last checkpoint, which a resumed run cuts off anyway

    def abort(self) -> None:
        if self.target is None:
            return
        if self._fh is not None:
            try:
                self._fh.close()
            except OSError:
                pass  # the file is removed next
        shutil.rmtree(self._parts_dir, ignore_errors=True)
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


class StdoutClosed(RosPromptError):
    """The reader of stdout went away (`rosprompt label … | head`): the run ends quietly, as Unix
    tools do."""

    exit_code = ExitCode.STDOUT_CLOSED


def _is_broken_pipe(exc: OSError) -> bool:
    # polars reports a closed pipe as a plain OSError naming the errno in its message
    return isinstance(exc, BrokenPipeError) or exc.errno == errno.EPIPE or f"os error {errno.EPIPE})" in str(exc)


def refuse_unwritable(display: str, fmt: str, schema: pl.Schema) -> None:
    """Columns the output format cannot hold: lists or objects in CSV and TSV, which hold text;
    raw bytes (a Parquet binary column) in any text format."""
    binary = [name for name, dtype in schema.items() if dtype == pl.Binary]
    if fmt != "parquet" and binary:
        raise RosPromptError(
            f"{display}: column {binary[0]!r} holds raw bytes that {fmt} output cannot hold; write .parquet instead"
        )
    nested = [name for name, dtype in schema.items() if dtype.is_nested()]
    if fmt in DELIMITED and nested:
        raise RosPromptError(
            f"{display}: column {nested[0]!r} holds nested values (lists or objects) that {fmt} output cannot "
            f"hold; write .jsonl or .parquet instead"
        )


def check_output_path(target: Path, force: bool) -> None:
    if target.is_symlink() and not target.exists():  # publishing would replace the link, not write where it points
        raise RosPromptError(f"{target}: a symlink to {os.readlink(target)}, which does not exist; point it at an "
                             f"existing file or remove it")
    if target.is_dir():
        raise RosPromptError(f"{target}: is a folder; give an output file name")
    if target.exists() and not force:
        raise RosPromptError(f"{target}: output file exists; pass --force to overwrite it")
    if not target.parent.exists():
        raise RosPromptError(f"{target}: output folder {target.parent} does not exist; create it first")
    if not os.access(target.parent, os.W_OK):
        raise RosPromptError(f"{target}: output folder {target.parent} is not writable; choose another --out")


class OutputLocked(RosPromptError):
    exit_code = ExitCode.LOCKED


class OutputLock:
    """An exclusive lock on an output path, held for the whole run.

    It is an advisory lock (flock) on a sidecar file, so the operating system releases it when
    the holder dies, even by SIGKILL: a crashed run never leaves a stale lock behind.
    """

    def __init__(self, target: Path, what: str = "output", advice: str = "choose another --out") -> None:
        self.path = sidecar(target, "lock")
        self.target = target
        self.what = what
        self.advice = advice
        self._fd: int | None = None

    def acquire(self) -> None:
        import fcntl

        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise self._cannot_write(exc) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
                os.close(fd)
                raise OutputLocked(
                    f"{self.target}: another rosprompt run ({holder}) is writing this {self.what}; wait for it "
                    f"to finish or {self.advice}"
                ) from None
            # The holder before us may have removed the file after we opened it: lock the live one.
            try:
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        try:  # the holder's name, for the message of a run that finds the lock taken
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode())
        except OSError as exc:  # a full or read-only file system: nothing has been done yet
            self.path.unlink(missing_ok=True)
            os.close(fd)
            raise self._cannot_write(exc) from None
        self._fd = fd

    def _cannot_write(self, exc: OSError) -> RosPromptError:
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        return RosPromptError(f"{self.target}: cannot write files in {self.target.parent} ({exc.strerror}); "
                              f"{'free some space there or ' if full else ''}{self.advice}")

    def release(self) -> None:
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
