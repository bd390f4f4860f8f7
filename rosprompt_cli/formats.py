"""Table formats: names, file extensions, separators and the stdin/stdout marker, stated once."""

from __future__ import annotations

from pathlib import Path

from rosprompt_cli.errors import RosPromptError, check_choice

FORMATS = ("csv", "tsv", "jsonl", "parquet")
# Every extension read as a format; the first one listed per format is the one written.
EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
STDIO = "-"  # as an input: stdin; as an output: stdout
STDOUT_NAME = "<stdout>"  # how stdout is named as an output, in summaries and status lines
DELIMITED = ("csv", "tsv")  # the formats read and written as delimited text


def separator(fmt: str) -> str:
    """The field separator of a delimited-text format."""
    return "\t" if fmt == "tsv" else ","


def file_separator(path: Path, fmt: str) -> str:
    """The field separator of a delimited-text file as it is written: tab for TSV; for CSV a
    comma, or a semicolon when the header line has semicolons and no comma (as spreadsheets
    export CSV where the comma is the decimal mark)."""
    if fmt != "csv":
        return separator(fmt)
    with open(path, "rb") as fh:
        header = fh.readline(1 << 16)
    return ";" if b";" in header and b"," not in header else ","


def extension(fmt: str) -> str:
    """The extension a file written in `fmt` gets."""
    return next(ext for ext, name in EXTENSIONS.items() if name == fmt)


def is_table_file(path: Path) -> bool:
    return path.suffix.lower() in EXTENSIONS


def check_format(value: str, flag: str = "--format") -> str:
    if value.lower() not in FORMATS:
        check_choice(flag, value, FORMATS)  # the one-line error, naming the value as given
    return value.lower()


def format_from_path(path: str, explicit: str | None = None, what: str = "input") -> str:
    """`explicit` if given (checked), else the format the path's extension names."""
    if explicit:
        return check_format(explicit)
    fmt = EXTENSIONS.get(Path(path).suffix.lower())
    if fmt is None:
        raise RosPromptError(
            f"{path}: cannot tell the {what} format from the extension; use .csv, .tsv, .jsonl or "
            f".parquet, or pass --format"
        )
    return fmt
