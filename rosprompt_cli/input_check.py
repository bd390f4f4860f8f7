"""Row-level checks of an input table, before any model work.

A pre-pass reads the whole input once and finds every row that cannot be used: a JSONL line
that is not JSON or not an object, a CSV record with the wrong number of fields, bytes that are
not UTF-8. Each one becomes a `Reject` naming its line (and column where that applies), and goes
to a rejects sink. The same pass finds the columns and the rows whose text is empty, so a run
can fail fast (`--on-error fail`) or set bad rows aside (`--on-error skip`) and say exactly
which ones, before the backbone is even loaded.

CSV and TSV are parsed here (Python's csv module) for the labelling pass too, so that the check
and the data can never disagree about where a record starts. JSONL data is parsed by polars; the
check only decides which lines reach it.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TextIO

from rosprompt_cli.errors import RosPromptError

BOM = b"\xef\xbb\xbf"
SHOWN_LINES = 5  # line numbers quoted in warnings; the rejects file has all of them

# Bytes that are not UTF-8 survive decoding as lone surrogates (errors="surrogateescape").
_UNDECODABLE = re.compile("[\udc80-\udcff]")

csv.field_size_limit(sys.maxsize)  # a news article can be longer than csv's 128 KB default


@dataclass(frozen=True)
class Reject:
    """One input record that was set aside: where it is, why, and its original text."""

    line: int
    column: int | str | None
    reason: str  # short category, counted in the run summary
    detail: str
    raw: str

    def where(self, display: str) -> str:
        if self.column is None:
            return f"{display}, line {self.line}"
        if isinstance(self.column, int):
            return f"{display}, line {self.line}, column {self.column}"
        return f"{display}, line {self.line}, column {self.column!r}"

    def message(self, display: str) -> str:
        return f"{self.where(display)}: {self.detail}"

    def as_record(self) -> dict:
        return {"line": self.line, "column": self.column, "reason": self.reason, "detail": self.detail, "raw": self.raw}


class RejectSink:
    """Receives rejects; keeps counts and the first few, and streams every one to `stream`."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self.by_reason: Counter[str] = Counter()
        self.first: list[Reject] = []

    @property
    def count(self) -> int:
        return sum(self.by_reason.values())

    def add(self, reject: Reject) -> None:
        self.by_reason[reject.reason] += 1
        if len(self.first) < SHOWN_LINES:
            self.first.append(reject)
        if self.stream is not None:
            self.stream.write(json.dumps(reject.as_record(), ensure_ascii=False) + "\n")


class FailOnReject(RejectSink):
    """`--on-error fail`: the first bad row stops the run with its location."""

    def __init__(self, display: str, advice: str = "fix the input, or pass --on-error skip to set bad rows aside") -> None:
        super().__init__()
        self.display = display
        self.advice = advice

    def add(self, reject: Reject) -> None:
        raise RosPromptError(f"{reject.message(self.display)}; {self.advice}")


@dataclass
class InputReport:
    """What the pre-pass found."""

    columns: list[str]
    rows: int = 0  # usable rows (what the labelling pass will see)
    empty_text: int = 0
    empty_text_lines: list[int] = field(default_factory=list)
    has_text_column: bool = True

    def note_empty(self, line: int) -> None:
        self.empty_text += 1
        if len(self.empty_text_lines) < SHOWN_LINES:
            self.empty_text_lines.append(line)


def _visible(raw: str) -> str:
    """The record's text with undecodable bytes shown as \\xNN, without the line break."""
    return raw.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace").rstrip("\r\n")


def _is_empty_text(value: object) -> bool:
    if value is None or isinstance(value, (dict, list)):
        return True
    return isinstance(value, str) and not value.strip()


# --------------------------------------------------------------------------------------- CSV


class _LineTap:
    """Feeds lines to csv.reader and remembers them, so a bad record can be copied out verbatim."""

    def __init__(self, fh: IO[str]) -> None:
        self._fh = fh
        self.lines: list[str] = []

    def __iter__(self) -> _LineTap:
        return self

    def __next__(self) -> str:
        line = next(self._fh)
        self.lines.append(line)
        return line


@dataclass(frozen=True)
class CsvRecord:
    line: int  # where the record starts (1-based physical line)
    fields: list[str]
    raw: str


def csv_records(path: Path, separator: str) -> Iterator[CsvRecord]:
    """Every non-blank record with the line it starts on; the header is the first record.

    A leading BOM is dropped. Bytes that are not UTF-8 come through as lone surrogates so the
    caller can reject that one record instead of the whole file.
    """
    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as fh:
        tap = _LineTap(fh)
        reader = csv.reader(tap, delimiter=separator, strict=False)
        start = 1
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:  # rare with strict=False; keep going after the bad record
                fields = [f"\0csv-error\0{exc}"]
            raw = "".join(tap.lines)
            tap.lines.clear()
            if fields:
                yield CsvRecord(start, fields, raw)
            start = reader.line_num + 1


def csv_problem(record: CsvRecord, header: list[str]) -> Reject | None:
    """Why a data record cannot be used, or None."""
    fields = record.fields
    if len(fields) == 1 and fields[0].startswith("\0csv-error\0"):
        detail = fields[0].split("\0")[2]
        return Reject(record.line, None, "unparsable CSV", f"cannot parse the record ({detail})", _visible(record.raw))
    if len(fields) != len(header):
        return Reject(
            record.line, None, "wrong number of fields",
            f"{len(fields)} fields where the header has {len(header)}; check for an unquoted separator or quote",
            _visible(record.raw),
        )
    for name, value in zip(header, fields):
        bad = _UNDECODABLE.search(value)
        if bad:
            byte = ord(bad.group()) - 0xDC00
            return Reject(
                record.line, name, "not UTF-8",
                f"byte 0x{byte:02X} is not UTF-8; re-encode the file as UTF-8", _visible(record.raw),
            )
    return None


def csv_header(records: Iterator[CsvRecord], display: str) -> list[str] | None:
    """The header of a CSV/TSV file, checked; None for an empty file."""
    first = next(records, None)
    if first is None:
        return None
    header = first.fields
    if _UNDECODABLE.search("".join(header)):
        raise RosPromptError(f"{display}, line 1: the header is not UTF-8; re-encode the file as UTF-8")
    seen: set[str] = set()
    for position, name in enumerate(header, 1):
        if not name.strip():
            raise RosPromptError(f"{display}, line 1: header column {position} has no name; name every column")
        if name in seen:
            raise RosPromptError(f"{display}, line 1: column {name!r} appears twice in the header; rename one")
        seen.add(name)
    return header


def check_csv(path: Path, display: str, separator: str, text_col: str, sink: RejectSink) -> InputReport:
    records = csv_records(path, separator)
    header = csv_header(records, display)
    if header is None:
        return InputReport(columns=[], has_text_column=False)
    report = InputReport(columns=header, has_text_column=text_col in header)
    text_at = header.index(text_col) if report.has_text_column else -1
    for record in records:
        problem = csv_problem(record, header)
        if problem is not None:
            sink.add(problem)
            continue
        report.rows += 1
        if text_at >= 0 and not record.fields[text_at].strip():
            report.note_empty(record.line)
    return report


# ------------------------------------------------------------------------------------- JSONL

_ARTICLE = {"object": "an", "list": "a", "scalar": "a"}


def jsonl_problem(line_no: int, raw: bytes, kinds: dict[str, str]) -> tuple[Reject | None, dict | None]:
    """(reject, None) for a bad line, (None, object) for a good one. `kinds` remembers whether
    each key held an object, a list or a scalar, since polars cannot mix those in a column."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        shown = raw.decode("utf-8", "backslashreplace").rstrip("\r\n")
        return Reject(
            line_no, exc.start + 1, "not UTF-8",
            f"byte 0x{raw[exc.start]:02X} is not UTF-8; re-encode the file as UTF-8", shown,
        ), None
    shown = text.rstrip("\r\n")
    try:
        value = json.loads(shown)
    except json.JSONDecodeError as exc:
        return Reject(line_no, exc.colno, "invalid JSON", f"invalid JSON ({exc.msg})", shown), None
    except RecursionError:
        return Reject(line_no, None, "invalid JSON", "JSON nested too deeply", shown), None
    if not isinstance(value, dict):
        return Reject(
            line_no, 1, "not a JSON object", f"expected a JSON object per line, found {type(value).__name__}", shown
        ), None
    found = {
        key: "object" if isinstance(item, dict) else "list" if isinstance(item, list) else "scalar"
        for key, item in value.items()
        if item is not None
    }
    for key, kind in found.items():
        seen = kinds.get(key, kind)
        if seen != kind:
            return Reject(
                line_no, None, "mixed value kinds",
                f"field {key!r} is {_ARTICLE[kind]} {kind} here but {_ARTICLE[seen]} {seen} on earlier lines; one column "
                f"cannot hold both", shown,
            ), None
    for key, kind in found.items():
        kinds.setdefault(key, kind)
    return None, value


def check_jsonl(path: Path, text_col: str, sink: RejectSink, clean: IO[bytes] | None) -> tuple[InputReport, bool]:
    """Check every line; good lines are copied to `clean` (when given). Returns the report and
    whether the file needs the cleaned copy (a BOM or a rejected line)."""
    columns: dict[str, None] = {}
    kinds: dict[str, str] = {}
    report = InputReport(columns=[])
    needs_clean = False
    with open(path, "rb") as fh:
        for line_no, raw in enumerate(fh, 1):
            if line_no == 1 and raw.startswith(BOM):
                raw = raw[len(BOM):]
                needs_clean = True
            if not raw.strip():
                continue
            problem, value = jsonl_problem(line_no, raw, kinds)
            if problem is not None:
                sink.add(problem)
                needs_clean = True
                continue
            assert value is not None
            for key in value:
                columns.setdefault(key, None)
            report.rows += 1
            if _is_empty_text(value.get(text_col)):
                report.note_empty(line_no)
            if clean is not None:
                clean.write(raw if raw.endswith(b"\n") else raw + b"\n")
    report.columns = list(columns)
    report.has_text_column = text_col in columns
    return report, needs_clean
