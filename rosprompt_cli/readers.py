"""Streaming table readers for CSV, TSV, JSONL and Parquet (writers: output.py).

Readers yield bounded batches so memory stays flat in corpus size; `-` is stdin, which is first
spooled to a temporary file (bounded memory, and a format can then be sniffed).
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import BinaryIO

import polars as pl

from rosprompt_cli.errors import RosPromptError
from rosprompt_cli.formats import DELIMITED, STDIO, check_format, file_separator, format_from_path, is_table_file, separator
from rosprompt_cli.input_check import (
    FAIL_ON_UNCLOSED_QUOTE,
    SHOWN_LINES,
    FailOnReject,
    InputFindings,
    Reject,
    RejectSink,
    check_csv,
    check_jsonl,
    column_at,
    csv_header,
    csv_problem,
    csv_records,
    key_problem,
)

ROW_INDEX = "__rosprompt_row"  # a column a clean copy numbers the rows with, dropped before it is written


def _blank(column: str) -> pl.Expr:
    """Whether a row's value in `column` is missing or only whitespace (any type, read as text)."""
    return pl.col(column).cast(pl.String, strict=False).str.strip_chars().fill_null("") == ""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@dataclass
class TableSource:
    """An input table; for stdin, `path` is the spooled temporary copy.

    `check()` is the row-level pre-pass (input_check.py); `iter_batches()` then yields the
    usable rows in input order, in frames of exactly `rows` rows (the last may be shorter), so
    that a run resumed at a frame boundary sees the same frames as an uninterrupted one.
    """

    display: str
    path: Path
    fmt: str
    _spool_dir: Path | None = field(default=None, repr=False)
    unclosed_quote: str = FAIL_ON_UNCLOSED_QUOTE  # CSV: what a quote never closed does (input_check.csv_records)
    findings: InputFindings | None = field(default=None, repr=False)
    _data_path: Path | None = field(default=None, repr=False)  # JSONL without its bad lines
    _schema: pl.Schema | None = field(default=None, repr=False)
    _text_as_bytes: str | None = field(default=None, repr=False)  # Parquet: a text column of UTF-8 bytes, decoded
    key_col: str | None = None  # --new-only-by: a row without a key is set aside (input_check.key_problem)

    def close(self) -> None:
        if self._spool_dir is not None:
            shutil.rmtree(self._spool_dir, ignore_errors=True)
            self._spool_dir = None

    def __enter__(self) -> TableSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @cached_property
    def separator(self) -> str:
        return file_separator(self.path, self.fmt)

    def _cannot_read(self, exc: BaseException) -> RosPromptError:
        return RosPromptError(f"{self.display}: cannot read as {self.fmt} ({_first_line(exc)})")

    def check(self, text_col: str | None = None, sink: RejectSink | None = None) -> InputFindings:
        """Find the columns, the usable rows and the rows with empty text; every unusable row
        goes to `sink` (default: fail on the first one)."""
        sink = sink if sink is not None else FailOnReject(self.display)
        text = text_col or ""
        if self.fmt in DELIMITED:
            self.findings = check_csv(self.path, self.display, self.separator, text, sink, self.unclosed_quote,
                                      self.key_col)
            if self.separator != separator(self.fmt):
                self.findings.notes.append(f"{self.display}: fields separated by {self.separator!r} (its header "
                                           f"line has no {separator(self.fmt)!r})")
        elif self.fmt == "jsonl":
            self.findings = self._check_jsonl(text, sink)
        else:
            self.findings = self._check_parquet(text, sink)
        return self.findings

    def _check_jsonl(self, text_col: str, sink: RejectSink) -> InputFindings:
        findings, needs_clean = check_jsonl(self.path, text_col, sink, None, self.display, self.key_col)
        if needs_clean:  # rare: a second pass writes the good lines where polars can read them
            if self._spool_dir is None:
                self._spool_dir = Path(tempfile.mkdtemp(prefix="rosprompt-input-"))
            self._data_path = self._spool_dir / "clean.jsonl"
            try:
                with open(self._data_path, "wb") as clean:
                    check_jsonl(self.path, text_col, RejectSink(), clean, self.display, self.key_col)
            except OSError as exc:
                raise _no_room_for_copy(self.display, self._spool_dir, exc) from exc
        if findings.rows:
            try:
                self._schema = self._scan().collect_schema()
            except Exception as exc:
                raise self._cannot_read(exc) from exc
        return findings

    def _check_parquet(self, text_col: str, sink: RejectSink) -> InputFindings:
        with open(self.path, "rb") as fh:
            head = fh.read(4)
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(size - 4, 0))
            tail = fh.read(4)
        if head != b"PAR1" or tail != b"PAR1":
            raise RosPromptError(
                f"{self.display}: not a Parquet file (no PAR1 marker at its start and end); if it is CSV or "
                f"JSONL, give it that extension or pass --format"
            )
        try:
            scan = pl.scan_parquet(self.path)
            self._schema = scan.collect_schema()
            findings = InputFindings(columns=self._schema.names(), rows=scan.select(pl.len()).collect().item())
            findings.has_text_column = text_col in findings.columns
            # Every check reads the file as it is, so that a row is named by its place in the file
            # and set aside once (for its first problem, text before key), whatever else is wrong.
            rejects: list[Reject] = []
            decoded: pl.Expr | None = None
            if findings.has_text_column:
                kind = self._schema[text_col]
                if kind.is_nested():
                    raise RosPromptError(
                        f"{self.display}: column {text_col!r} holds {kind} values, not text; store the text as "
                        f"strings, or pass --text-col NAME"
                    )
                if kind == pl.Binary:  # as some writers store UTF-8 text
                    rejects = self._undecodable_rows(scan, text_col)
                    decoded = pl.col(text_col).cast(pl.String)
            if self.key_col and self.key_col in findings.columns:
                rejects += self._keyless_rows(scan, self.key_col, {reject.line for reject in rejects})
            rejects.sort(key=lambda reject: reject.line)
            for reject in rejects:
                sink.add(reject)
            set_aside = [reject.line - 1 for reject in rejects]
            # the rows kept, numbered by their place in the file, text decoded (only rows whose
            # bytes are UTF-8 are left)
            kept = scan.with_row_index(ROW_INDEX).filter(~pl.col(ROW_INDEX).is_in(set_aside))
            if decoded is not None:
                kept = kept.with_columns(decoded)
            if findings.has_text_column:
                hits = kept.filter(_blank(text_col)).select(pl.col(ROW_INDEX) + 1).collect().get_column(ROW_INDEX)
                findings.empty_text = hits.len()
                findings.empty_text_lines = hits.head(SHOWN_LINES).to_list()
            if set_aside:
                self._clean_copy(kept.drop(ROW_INDEX))
                findings.rows -= len(set_aside)
            elif decoded is not None:
                self._text_as_bytes = text_col
            if decoded is not None:
                self._schema = self._scan().collect_schema()
        except RosPromptError:
            raise
        except Exception as exc:
            raise self._cannot_read(exc) from exc
        return findings

    def _keyless_rows(self, scan: pl.LazyFrame, key_col: str, set_aside: set[int]) -> list[Reject]:
        """--new-only-by on Parquet: the rows whose key is null or blank (but those at the 1-based
        rows `set_aside` already), to be set aside."""
        assert self._schema is not None
        kind = self._schema[key_col]
        if kind.is_nested():
            raise RosPromptError(f"{self.display}: column {key_col!r} holds {kind} values, which cannot key a row; "
                                 f"pass --new-only-by a column of strings or numbers")
        blank = scan.with_row_index(ROW_INDEX).filter(_blank(key_col)).select(pl.col(ROW_INDEX) + 1)
        rejects = []
        for row in blank.collect().get_column(ROW_INDEX).to_list():
            if row not in set_aside:
                reject = key_problem(row, key_col, None, lambda: "", unit="row")  # a blank key: nothing to show
                assert reject is not None
                rejects.append(reject)
        return rejects

    def _clean_copy(self, kept: pl.LazyFrame) -> None:
        """Write the rows `kept` (text decoded) to a Parquet file of the spool folder, read from now on."""
        if self._spool_dir is None:
            self._spool_dir = Path(tempfile.mkdtemp(prefix="rosprompt-input-"))
        self._data_path = self._spool_dir / "clean.parquet"
        try:
            kept.sink_parquet(self._data_path)
        except OSError as exc:
            raise _no_room_for_copy(self.display, self._spool_dir, exc) from exc
        self._text_as_bytes = None  # the copy holds the text decoded

    def _undecodable_rows(self, scan: pl.LazyFrame, text_col: str) -> list[Reject]:
        """A Parquet text column stored as bytes: the rows whose bytes are not UTF-8, to be set aside."""
        rejects: list[Reject] = []
        row = 0
        for frame in scan.select(text_col).collect_batches(chunk_size=1 << 16):
            for value in frame.get_column(text_col).to_list():  # only this rare path decodes row by row
                row += 1
                if value is None:
                    continue
                try:
                    value.decode("utf-8")
                except UnicodeDecodeError as exc:
                    rejects.append(Reject(row, text_col, "not UTF-8",
                                          f"byte 0x{value[exc.start]:02X} of the text (stored as bytes) is not UTF-8",
                                          value.decode("utf-8", "backslashreplace"), unit="row"))
        return rejects

    def _scan(self) -> pl.LazyFrame:
        if self.fmt == "jsonl":
            return pl.scan_ndjson(self._data_path or self.path, infer_schema_length=None)
        scan = pl.scan_parquet(self._data_path or self.path)
        if self._text_as_bytes is not None:
            scan = scan.with_columns(pl.col(self._text_as_bytes).cast(pl.String))
        return scan

    def columns(self) -> list[str]:
        return (self.findings or self.check()).columns

    @property
    def schema(self) -> pl.Schema | None:
        """Column types where the format has them (JSONL, Parquet; CSV is all text), after check()."""
        return self._schema

    def _empty_frame(self) -> pl.DataFrame:
        if self._schema is not None:
            return pl.DataFrame(schema=self._schema)
        return pl.DataFrame(schema={name: pl.String for name in self.columns()})

    def iter_batches(self, rows: int, start: int = 0) -> Iterator[pl.DataFrame]:
        """Usable rows from the `start`-th on. A table with columns but no rows yields one empty
        frame, so that the output still gets its header."""
        findings = self.findings or self.check()
        if not findings.columns:
            return
        if findings.rows == 0 or start >= findings.rows:
            if start == 0:
                yield self._empty_frame()
            return
        if self.fmt in DELIMITED:
            yield from self._csv_batches(rows, start)
            return
        try:
            frames = self._scan().slice(start).collect_batches(chunk_size=rows)
            yield from rechunk(frames, rows)
        except RosPromptError:
            raise
        except Exception as exc:
            raise self._cannot_read(exc) from exc

    def _csv_batches(self, rows: int, start: int) -> Iterator[pl.DataFrame]:
        records = csv_records(self.path, self.separator, self.unclosed_quote, self.display)
        header = csv_header(records, self.display)
        assert header is not None
        pending: list[list[str]] = []
        skipped = 0
        key_at = column_at(header, self.key_col)
        for record in records:
            if csv_problem(record, header, key_at) is not None:
                continue
            if skipped < start:
                skipped += 1
                continue
            pending.append(record.fields)
            if len(pending) == rows:
                yield _text_frame(header, pending)
                pending = []
        if pending:
            yield _text_frame(header, pending)

    def read_all(self) -> pl.DataFrame:
        frames = list(self.iter_batches(1 << 16))
        if not frames:
            raise RosPromptError(f"{self.display}: the file is empty")
        return pl.concat(frames) if len(frames) > 1 else frames[0]


def _text_frame(header: list[str], records: list[list[str]]) -> pl.DataFrame:
    """CSV values stay text, exactly as written; an empty field is null (written back empty)."""
    columns = list(zip(*records))
    frame = pl.DataFrame({name: pl.Series(name, values, dtype=pl.String) for name, values in zip(header, columns)})
    return frame.with_columns(pl.all().replace("", None))


def rechunk(frames: Iterable[pl.DataFrame], rows: int) -> Iterator[pl.DataFrame]:
    """Regroup frames of any sizes into frames of exactly `rows` rows (the last may be shorter)."""
    pending: list[pl.DataFrame] = []
    count = 0
    for frame in frames:
        while frame.height:
            take = min(rows - count, frame.height)
            pending.append(frame.slice(0, take))
            frame = frame.slice(take)
            count += take
            if count == rows:
                yield pl.concat(pending) if len(pending) > 1 else pending[0]
                pending, count = [], 0
    if pending:
        yield pl.concat(pending) if len(pending) > 1 else pending[0]


def _sniff(head: bytes) -> str:
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith(b"PAR1"):
        return "parquet"
    if stripped.startswith(b"{"):
        return "jsonl"
    first = stripped.split(b"\n", 1)[0]
    return "tsv" if b"\t" in first and b"," not in first else "csv"


def _no_room_for_copy(display: str, folder: Path, exc: OSError) -> RosPromptError:
    return RosPromptError(f"{display}: cannot write its temporary copy in {folder.parent} ({exc.strerror}); "
                          f"make room there or point TMPDIR at a folder that has it")


def _spooled(stream: BinaryIO, display: str, fmt: str | None, unclosed_quote: str) -> TableSource:
    """A source for an input that can be read only once (stdin, a FIFO, `<(...)`): it is copied
    to a temporary file first, since the pre-pass and the labelling pass each read the input.
    Its format is `fmt`, else sniffed from its first bytes."""
    spool_dir = Path(tempfile.mkdtemp(prefix="rosprompt-input-"))
    spooled = spool_dir / "input"
    try:
        with open(spooled, "wb") as out:
            shutil.copyfileobj(stream, out, 1 << 20)
    except BaseException as exc:  # including an interruption while waiting for the writer
        shutil.rmtree(spool_dir, ignore_errors=True)
        if isinstance(exc, OSError):
            raise _no_room_for_copy(display, spool_dir, exc) from exc
        raise
    with open(spooled, "rb") as fh:
        head = fh.read(4096)
    chosen = check_format(fmt) if fmt else _sniff(head)
    return TableSource(display, spooled, chosen, spool_dir, unclosed_quote)


def open_source(path: str, fmt: str | None = None, unclosed_quote: str = FAIL_ON_UNCLOSED_QUOTE) -> TableSource:
    if path == STDIO:
        return _spooled(sys.stdin.buffer, "<stdin>", fmt, unclosed_quote)
    p = Path(path)
    if not p.exists():
        raise RosPromptError(f"{path}: input file not found")
    if p.is_dir():
        raise RosPromptError(f"{path}: is a folder; give a CSV, TSV, JSONL or Parquet file")
    try:
        stream = open(p, "rb")
    except OSError as exc:
        raise RosPromptError(f"{path}: cannot read the input ({exc.strerror})") from None
    with stream:
        if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):  # a FIFO, pipe or device: read once
            known = fmt or (format_from_path(path) if is_table_file(p) else None)
            return _spooled(stream, path, known, unclosed_quote)
    return TableSource(path, p, format_from_path(path, fmt), unclosed_quote=unclosed_quote)


def require_columns(source: TableSource, wanted: dict[str, str]) -> list[str]:
    """Check that each option's column exists; the message lists the columns that do."""
    columns = source.columns()
    if not columns and not (source.findings and source.findings.rows):  # rows of `{}` have no columns
        raise RosPromptError(f"{source.display}: the file is empty (no header, no rows)")
    check_columns(source.display, columns, wanted)
    return columns


def check_columns(display: str, columns: list[str], wanted: dict[str, str], have: str = "the file has") -> None:
    """Each option's column must be among `columns`; the message lists those there are."""
    for option, column in wanted.items():
        if column not in columns:
            if len(columns) == 1 and column in columns[0]:
                odd = next((c for c in "|:^~" if c in columns[0]), None)
                if odd is not None:
                    raise RosPromptError(
                        f"{display}: the header {columns[0]!r} is one column: its fields look separated by {odd!r}; "
                        f"CSV is read with commas (or semicolons, found from the header) and TSV with tabs: write "
                        f"the file with one of those"
                    )
            shown = ", ".join(columns) if columns else "(none)"
            raise RosPromptError(f"{display}: no column {column!r} ({have}: {shown}); pass {option} NAME")
