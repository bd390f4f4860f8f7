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
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TextIO

from rosprompt_cli.errors import RosPromptError, write_failed

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
    unit: str = "line"  # what `line` counts: lines of a text file, rows of a Parquet file

    def where(self, display: str) -> str:
        if self.column is None:
            return f"{display}, {self.unit} {self.line}"
        if isinstance(self.column, int):
            return f"{display}, {self.unit} {self.line}, column {self.column}"
        return f"{display}, {self.unit} {self.line}, column {self.column!r}"

    def message(self, display: str) -> str:
        return f"{self.where(display)}: {self.detail}"

    def as_record(self) -> dict:
        return {"line": self.line, "column": self.column, "reason": self.reason, "detail": self.detail, "raw": self.raw}


class RejectSink:
    """Receives rejects; keeps counts and the first few, and streams every one to `stream`."""

    def __init__(self, stream: TextIO | None = None, where: object = "the rejects file") -> None:
        self.stream = stream
        self.where = where  # the file the stream fills, for the error if it cannot be written
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
            try:
                self.stream.write(json.dumps(reject.as_record(), ensure_ascii=False) + "\n")
            except OSError as exc:  # a full disk: say so before any labelling, naming the file
                raise write_failed(self.where, exc) from exc


SKIP_ADVICE = "fix the input, or pass --on-error skip to set bad rows aside"  # label's, which has the option


class FailOnReject(RejectSink):
    """`--on-error fail`, and train and eval (which have no other way): the first bad row stops
    the run with its location and `advice`."""

    def __init__(self, display: str, advice: str = "fix the row, or remove it") -> None:
        super().__init__()
        self.display = display
        self.advice = advice

    def add(self, reject: Reject) -> None:
        raise RosPromptError(f"{reject.message(self.display)}; {self.advice}")


@dataclass
class InputFindings:
    """What the pre-pass found."""

    columns: list[str]
    rows: int = 0  # usable rows (what the labelling pass will see)
    empty_text: int = 0
    empty_text_lines: list[int] = field(default_factory=list)
    has_text_column: bool = True
    notes: list[str] = field(default_factory=list)  # what the user should know about how it was read

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
    """Feeds lines to csv.reader and remembers them, so a bad record can be copied out verbatim;
    lines can be handed back to be read again (after an unclosed quote). `consumed` counts the
    physical lines read so far."""

    def __init__(self, fh: IO[str]) -> None:
        self._fh = fh
        self._again: deque[str] = deque()
        self.lines: list[str] = []
        self.consumed = 0

    def __iter__(self) -> _LineTap:
        return self

    def __next__(self) -> str:
        line = self._again.popleft() if self._again else next(self._fh)
        self.consumed += 1
        self.lines.append(line)
        return line

    def give_back(self, lines: list[str]) -> None:
        self._again.extendleft(reversed(lines))
        self.consumed -= len(lines)


@dataclass(frozen=True)
class CsvRecord:
    line: int  # where the record starts (1-based physical line)
    fields: list[str]
    raw: str
    problem: tuple[str, str] | None = None  # (reason, detail) when the parser could not read it


UNCLOSED_QUOTE = ("fail", "reject-line")  # the first is the default: a quote never closed stops the run
FAIL_ON_UNCLOSED_QUOTE = UNCLOSED_QUOTE[0]
_UNCLOSED = "unexpected end of data"  # csv's message when a quoted field runs to the end of the file


class UnclosedQuote(RosPromptError):
    """A quote that is never closed: every line after it was read as part of one field."""


def unclosed_quote_error(display: str, line: int, lines: int) -> UnclosedQuote:
    return UnclosedQuote(
        f"{display}, line {line}: a quote opened on this line is never closed, so the {lines - 1} lines after it "
        f"were read as one field and none of them can be trusted; fix the quote, or pass --unclosed-quote "
        f"reject-line to set this line aside and read the next lines as rows"
    )


# A TSV field that is wholly quoted, with quotes inside doubled (as pandas and polars write them).
QUOTED_TSV_FIELD = r'"((?:[^"]|"")*)"'
_QUOTED_TSV_FIELD = re.compile(QUOTED_TSV_FIELD + r"(?=\t|$)")


def split_tsv_line(line: str) -> list[str]:
    """One line of tab-separated values. A quote is text, as in the plain format, except around
    a field that is wholly quoted with its own quotes doubled, which is unquoted."""
    fields: list[str] = []
    at = 0
    while True:
        if line.startswith('"', at):
            quoted = _QUOTED_TSV_FIELD.match(line, at)
            if quoted is not None:
                fields.append(quoted.group(1).replace('""', '"'))
                at = quoted.end() + 1
                if quoted.end() == len(line):
                    return fields
                continue
        tab = line.find("\t", at)
        if tab < 0:
            fields.append(line[at:])
            return fields
        fields.append(line[at:tab])
        at = tab + 1


def _tsv_records(fh: IO[str]) -> Iterator[CsvRecord]:
    for number, raw in enumerate(fh, 1):
        line = raw.rstrip("\r\n")
        if line:
            yield CsvRecord(number, split_tsv_line(line), raw)


def csv_records(path: Path, separator: str, unclosed_quote: str = FAIL_ON_UNCLOSED_QUOTE, display: str | None = None) -> Iterator[CsvRecord]:
    """Every non-blank record with the line it starts on; the header is the first record.

    Tab-separated files are read one record per line (tsv above). CSV is read strictly: a field
    with text after its closing quote is a record with a `problem`; a quote never closed stops
    the read (`UnclosedQuote`), or with `unclosed_quote="reject-line"` that line alone becomes a
    record with a problem and reading resumes on the next line. A leading BOM is dropped. Bytes
    that are not UTF-8 come through as lone surrogates so the caller can reject that one record
    instead of the whole file.
    """
    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as fh:
        if separator == "\t":
            yield from _tsv_records(fh)
            return
        tap = _LineTap(fh)
        reader = csv.reader(tap, delimiter=separator, strict=True)
        while True:
            start = tap.consumed + 1
            problem = None
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                if str(exc) == _UNCLOSED:
                    if unclosed_quote == FAIL_ON_UNCLOSED_QUOTE:
                        raise unclosed_quote_error(display or str(path), start, len(tap.lines)) from None
                    tap.give_back(tap.lines[1:])
                    del tap.lines[1:]
                    reader = csv.reader(tap, delimiter=separator, strict=True)
                    problem = ("unclosed quote", "a quote opened on this line is never closed; it is set aside and the "
                               "lines after it were read as rows (check them)")
                else:
                    problem = ("misplaced quote", f"a quote is not where CSV allows one ({exc}); quote the whole field "
                               f"and double the quotes inside it")
                fields = []
            raw = "".join(tap.lines)
            tap.lines.clear()
            if fields or problem:
                yield CsvRecord(start, fields, raw, problem)


def key_problem(line: int, key_col: str, value: object, raw: Callable[[], str], unit: str = "line") -> Reject | None:
    """Why a row's --new-only-by key cannot tell it from other rows, or None. `raw()` gives the
    row's text for the rejects file: called only for a row set aside, since every row is checked."""
    if isinstance(value, (dict, list)):
        kind = "an object" if isinstance(value, dict) else "a list"
        return Reject(line, key_col, "key not a value", f"the --new-only-by key is {kind}; give it as a string or a "
                      f"number", raw(), unit)
    if value is None or (isinstance(value, str) and not value.strip()):
        return Reject(line, key_col, "empty key", "the --new-only-by key is empty; every row needs one to be "
                      "labelled once", raw(), unit)
    return None


def csv_problem(record: CsvRecord, header: list[str], key_at: int = -1) -> Reject | None:
    """Why a data record cannot be used, or None. `key_at`: the --new-only-by column's position."""
    fields = record.fields
    if record.problem is not None:
        return Reject(record.line, None, *record.problem, _visible(record.raw))
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
    if key_at >= 0:
        return key_problem(record.line, header[key_at], fields[key_at], lambda: _visible(record.raw))
    return None


def csv_header(records: Iterator[CsvRecord], display: str) -> list[str] | None:
    """The header of a CSV/TSV file, checked; None for an empty file."""
    first = next(records, None)
    if first is None:
        return None
    header = first.fields
    if first.problem is not None:
        raise RosPromptError(f"{display}, line 1: cannot read the header: {first.problem[1]}")
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


def check_csv(
    path: Path, display: str, separator: str, text_col: str, sink: RejectSink,
    unclosed_quote: str = FAIL_ON_UNCLOSED_QUOTE, key_col: str | None = None,
) -> InputFindings:
    records = csv_records(path, separator, unclosed_quote, display)
    header = csv_header(records, display)
    if header is None:
        return InputFindings(columns=[], has_text_column=False)
    findings = InputFindings(columns=header, has_text_column=text_col in header)
    text_at = header.index(text_col) if findings.has_text_column else -1
    key_at = column_at(header, key_col)
    for record in records:
        problem = csv_problem(record, header, key_at)
        if problem is not None:
            sink.add(problem)
            continue
        findings.rows += 1
        if text_at >= 0 and not record.fields[text_at].strip():
            findings.note_empty(record.line)
    return findings


def column_at(header: list[str], name: str | None) -> int:
    """The position of a column that may be absent (-1; a missing column is refused elsewhere)."""
    return header.index(name) if name and name in header else -1


# ------------------------------------------------------------------------------------- JSONL

_ARTICLE = {"object": "an", "list": "a", "scalar": "a"}


class _NotJson(ValueError):
    """NaN, Infinity or -Infinity: Python's json reads them, JSON (and polars) does not."""


def _refuse_constant(name: str) -> None:
    raise _NotJson(name)


class _DuplicateKey(ValueError):
    """One JSON object naming a key twice."""


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        raise _DuplicateKey(next(key for key, _ in pairs if key in seen or seen.add(key)))
    return value


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _lone_surrogate(shown: str, value: object) -> tuple[int | None, str] | None:
    """(column, escape) of the first escape such as \\ud800 that JSON decoded to half a UTF-16
    pair, which UTF-8 cannot encode (polars would write something else); None if there is none."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
        return None
    except UnicodeEncodeError:
        pass
    matches = list(_SURROGATE_ESCAPE.finditer(shown))
    i = 0
    while i < len(matches):
        this = matches[i]
        is_high = int(this.group()[2:], 16) < 0xDC00
        following = matches[i + 1] if i + 1 < len(matches) else None
        if is_high and following is not None and following.start() == this.end() and int(following.group()[2:], 16) >= 0xDC00:
            i += 2  # a pair: one character
            continue
        return this.start() + 1, this.group()
    return None, "an escape"


def jsonl_problem(line_no: int, raw: bytes, kinds: dict[str, str], text_col: str = "") -> tuple[Reject | None, dict | None]:
    """(reject, None) for a bad line, (None, object) for a good one. `kinds` remembers whether
    each key held an object, a list or a scalar, since polars cannot mix those in a column; the
    text must be a string (or a number, or missing)."""
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
        value = json.loads(shown, parse_constant=_refuse_constant, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        return Reject(line_no, exc.colno, "invalid JSON", f"invalid JSON ({exc.msg})", shown), None
    except _NotJson as exc:
        column = shown.find(str(exc)) + 1 or None
        return Reject(line_no, column, "invalid JSON", f"invalid JSON ({exc} is not a JSON value; write null)", shown), None
    except _DuplicateKey as exc:  # readers disagree on which value wins (Python: the last, polars: the first)
        return Reject(line_no, str(exc), "duplicate key", f"key {str(exc)!r} appears twice in one object", shown), None
    except RecursionError:
        return Reject(line_no, None, "invalid JSON", "JSON nested too deeply", shown), None
    if not isinstance(value, dict):
        return Reject(
            line_no, 1, "not a JSON object", f"expected a JSON object per line, found {type(value).__name__}", shown
        ), None
    if "\\u" in shown:
        surrogate = _lone_surrogate(shown, value)
        if surrogate is not None:
            column, escape = surrogate
            return Reject(line_no, column, "unpaired surrogate",
                          f"{escape} is half of a UTF-16 pair without its other half: no UTF-8 text can hold it, "
                          f"so the value could not be written back as it is", shown), None
    text = value.get(text_col)
    if isinstance(text, (dict, list)):
        kind = "an object" if isinstance(text, dict) else "a list"
        return Reject(line_no, text_col, "text not a string", f"the text is {kind}; give it as a string", shown), None
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


class _NumberColumns:
    """A JSONL column holding integers and decimals is read as decimals (float64): 1 comes back as
    1.0, the same JSON number, but an integer past 2**53 would come back with other digits. That
    is refused, naming both lines, rather than written changed."""

    EXACT = 2**53

    def __init__(self, display: str) -> None:
        self.display = display
        self.decimal: dict[str, int] = {}  # key -> first line with a decimal
        self.big: dict[str, tuple[int, int]] = {}  # key -> (first line, value) with an integer past EXACT

    def add(self, line_no: int, value: dict) -> None:
        for key, item in value.items():
            if isinstance(item, float):
                self.decimal.setdefault(key, line_no)
            elif isinstance(item, int) and not isinstance(item, bool) and abs(item) > self.EXACT:
                self.big.setdefault(key, (line_no, item))
            else:
                continue
            if key in self.decimal and key in self.big:
                big_line, big = self.big[key]
                raise RosPromptError(
                    f"{self.display}, line {big_line}, column {key!r}: the integer {big} would lose digits, as field "
                    f"{key!r} also holds decimals (line {self.decimal[key]}) and is read as one decimal column; "
                    f"write the integers as strings (\"{big}\")"
                )


def check_jsonl(path: Path, text_col: str, sink: RejectSink, clean: IO[bytes] | None,
                display: str | None = None, key_col: str | None = None) -> tuple[InputFindings, bool]:
    """Check every line; good lines are copied to `clean` (when given). Returns the findings and
    whether the file needs the cleaned copy (a BOM or a rejected line)."""
    columns: dict[str, None] = {}
    kinds: dict[str, str] = {}
    findings = InputFindings(columns=[])
    needs_clean = False
    numbers = _NumberColumns(display or str(path))
    with open(path, "rb") as fh:
        for line_no, raw in enumerate(fh, 1):
            if line_no == 1 and raw.startswith(BOM):
                raw = raw[len(BOM):]
                needs_clean = True
            if not raw.strip():
                continue
            problem, value = jsonl_problem(line_no, raw, kinds, text_col)
            if value is not None:
                for key in value:
                    columns.setdefault(key, None)
                if key_col:  # (a key missing from every line is a missing column, refused as such)
                    problem = key_problem(line_no, key_col, value.get(key_col),
                                          lambda: raw.decode("utf-8").rstrip("\r\n"))
            if problem is not None:
                sink.add(problem)
                needs_clean = True
                continue
            assert value is not None
            numbers.add(line_no, value)
            findings.rows += 1
            if _is_empty_text(value.get(text_col)):
                findings.note_empty(line_no)
            if clean is not None:
                clean.write(raw if raw.endswith(b"\n") else raw + b"\n")
    findings.columns = list(columns)
    findings.has_text_column = text_col in columns
    return findings, needs_clean
