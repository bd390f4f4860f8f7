"""Streaming table readers and atomic writers for CSV, TSV, JSONL and Parquet, on polars.

Readers yield bounded batches so memory stays flat in corpus size; `-` is stdin, which is first
spooled to a temporary file (bounded memory, and a format can then be sniffed). Writers append
batch by batch to a temporary file in the target folder and rename it into place only when the
run completes, so an interrupted run never leaves a file that looks complete.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import polars as pl

from rosprompt_cli.errors import RosPromptError

FORMATS = ("csv", "tsv", "jsonl", "parquet")
_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
STDIO = "-"


def format_from_path(path: str, explicit: str | None = None, what: str = "input") -> str:
    if explicit:
        fmt = explicit.lower()
        if fmt not in FORMATS:
            raise RosPromptError(f"--format {explicit!r}: expected one of {', '.join(FORMATS)}")
        return fmt
    fmt = _EXTENSIONS.get(Path(path).suffix.lower())
    if fmt is None:
        raise RosPromptError(
            f"{path}: cannot tell the {what} format from the extension; use .csv, .tsv, .jsonl or "
            f".parquet, or pass --format"
        )
    return fmt


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@dataclass
class TableSource:
    """An input table; for stdin, `path` is the spooled temporary copy."""

    display: str
    path: Path
    fmt: str
    _spool_dir: Path | None = field(default=None, repr=False)

    def close(self) -> None:
        if self._spool_dir is not None:
            shutil.rmtree(self._spool_dir, ignore_errors=True)
            self._spool_dir = None

    def __enter__(self) -> TableSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _scan(self) -> pl.LazyFrame:
        if self.fmt in ("csv", "tsv"):
            # Every column as text: values come back out exactly as they went in ("007", "1.50").
            return pl.scan_csv(self.path, separator="\t" if self.fmt == "tsv" else ",", infer_schema=False)
        if self.fmt == "jsonl":
            return pl.scan_ndjson(self.path, infer_schema_length=None)
        return pl.scan_parquet(self.path)

    def columns(self) -> list[str]:
        try:
            return self._scan().collect_schema().names()
        except Exception as exc:
            raise RosPromptError(f"{self.display}: cannot read as {self.fmt} ({_first_line(exc)})") from exc

    def iter_batches(self, rows: int) -> Iterator[pl.DataFrame]:
        try:
            for frame in self._scan().collect_batches(chunk_size=rows):
                if frame.height:
                    yield frame
        except RosPromptError:
            raise
        except Exception as exc:
            raise RosPromptError(f"{self.display}: cannot read as {self.fmt} ({_first_line(exc)})") from exc

    def read_all(self) -> pl.DataFrame:
        try:
            return self._scan().collect()
        except Exception as exc:
            raise RosPromptError(f"{self.display}: cannot read as {self.fmt} ({_first_line(exc)})") from exc


def _sniff(head: bytes) -> str:
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith(b"PAR1"):
        return "parquet"
    if stripped.startswith(b"{"):
        return "jsonl"
    first = stripped.split(b"\n", 1)[0]
    return "tsv" if b"\t" in first and b"," not in first else "csv"


def open_source(path: str, fmt: str | None = None) -> TableSource:
    if path == STDIO:
        spool_dir = Path(tempfile.mkdtemp(prefix="rosprompt-stdin-"))
        spooled = spool_dir / "stdin"
        with open(spooled, "wb") as out:
            shutil.copyfileobj(sys.stdin.buffer, out, 1 << 20)
        with open(spooled, "rb") as fh:
            head = fh.read(4096)
        chosen = format_from_path("-", fmt) if fmt else _sniff(head)
        return TableSource("<stdin>", spooled, chosen, spool_dir)
    p = Path(path)
    if not p.exists():
        raise RosPromptError(f"{path}: input file not found")
    if p.is_dir():
        raise RosPromptError(f"{path}: is a folder; give a CSV, TSV, JSONL or Parquet file")
    return TableSource(path, p, format_from_path(path, fmt))


class TableWriter:
    """Appends batches; `commit()` publishes the file atomically, `abort()` removes the partial one."""

    def __init__(self, path: str, fmt: str, force: bool = False) -> None:
        self.display = path
        self.fmt = fmt
        self._first = True
        self._parts: list[Path] = []
        self._tmp: Path | None = None
        self._fh: BinaryIO
        if path == STDIO:
            if fmt == "parquet":
                raise RosPromptError("Parquet cannot be streamed to stdout; pass --out FILE.parquet or --out-format")
            self.target: Path | None = None
            self._fh = sys.stdout.buffer
            return
        target = Path(path)
        if target.exists() and not force:
            raise RosPromptError(f"{path}: output file exists; pass --force to overwrite it")
        if not target.parent.exists():
            raise RosPromptError(f"{path}: output folder {target.parent} does not exist")
        if not os.access(target.parent, os.W_OK):
            raise RosPromptError(f"{path}: output folder {target.parent} is not writable")
        self.target = target
        self._tmp = target.with_name(f".{target.name}.rosprompt-partial")
        if fmt == "parquet":
            self._parts_dir = Path(tempfile.mkdtemp(prefix=f".{target.name}.parts-", dir=target.parent))
        else:
            self._fh = open(self._tmp, "wb")

    def write(self, frame: pl.DataFrame) -> None:
        try:
            if self.fmt == "parquet":
                part = self._parts_dir / f"{len(self._parts):08d}.parquet"
                frame.write_parquet(part)
                self._parts.append(part)
            elif self.fmt in ("csv", "tsv"):
                frame.write_csv(self._fh, include_header=self._first, separator="\t" if self.fmt == "tsv" else ",")
            else:
                frame.write_ndjson(self._fh)
        except pl.exceptions.ComputeError as exc:
            if "nested" in str(exc).lower() or "not supported" in str(exc).lower():
                raise RosPromptError(
                    f"{self.display}: the data has nested values (lists or objects) that {self.fmt} cannot "
                    f"hold; write .jsonl or .parquet instead"
                ) from exc
            raise
        self._first = False
        if self.target is None:
            self._fh.flush()

    def commit(self) -> None:
        if self.target is None:
            return
        assert self._tmp is not None
        if self.fmt == "parquet":
            if self._parts:
                # Streaming merge of the parts into one file, written by polars.
                pl.scan_parquet(self._parts).sink_parquet(self._tmp)
            else:
                pl.DataFrame().write_parquet(self._tmp)
            shutil.rmtree(self._parts_dir, ignore_errors=True)
        else:
            self._fh.close()
        os.replace(self._tmp, self.target)

    def abort(self) -> None:
        if self.target is None:
            return
        if self.fmt == "parquet":
            shutil.rmtree(self._parts_dir, ignore_errors=True)
        else:
            self._fh.close()
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def require_columns(source: TableSource, wanted: dict[str, str]) -> list[str]:
    """Check that each option's column exists; the message lists the columns that do."""
    columns = source.columns()
    for option, column in wanted.items():
        if column not in columns:
            shown = ", ".join(columns) if columns else "(none)"
            raise RosPromptError(
                f"{source.display}: no column {column!r} (the file has: {shown}); pass {option} NAME"
            )
    return columns
