"""Inputs of several files (a folder or a glob) and where each file's output goes.

Both engines read them: the local engine labels file after file into an output folder, one
output per input (so --on-error skip, rejects and --resume work per file as for one file);
the Ray engine hands the file list to Ray Data.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

from rosprompt_cli.errors import RosPromptError
from rosprompt_cli.formats import STDIO, check_format, extension, format_from_path, is_table_file
from rosprompt_cli.paths import resolved

GLOB_CHARACTERS = "*?["


def is_multi_file(spec: str) -> bool:
    """A folder, or a pattern that names no existing file."""
    if spec == STDIO:
        return False
    path = Path(spec).expanduser()
    return path.is_dir() or (not path.exists() and any(c in spec for c in GLOB_CHARACTERS))


def input_files(spec: str, fmt: str | None = None) -> tuple[list[Path], str]:
    """The files of a folder (every table file in it, hidden ones aside), a glob, or one file,
    sorted by path; and their one format."""
    path = Path(spec).expanduser()
    if path.is_dir():
        files = [p for p in path.iterdir()
                 if p.is_file() and not p.name.startswith(".") and (fmt or is_table_file(p))]
    elif path.is_file():
        files = [path]
    elif path.exists():  # a FIFO, pipe or device: the local engine reads those once (io.open_source)
        raise RosPromptError(f"{spec}: is a pipe or device, not a file; label it with --engine local")
    else:
        files = [Path(p) for p in glob.glob(str(path)) if Path(p).is_file()]
    if not files:
        raise RosPromptError(f"{spec}: no input files (give a file, a folder of CSV/TSV/JSONL/Parquet files, or a glob)")
    files.sort()
    formats = {format_from_path(str(f), fmt) for f in files}
    if len(formats) > 1:
        raise RosPromptError(f"{spec}: the input files mix formats ({', '.join(sorted(formats))}); give files of one format")
    return [resolved(f) for f in files], formats.pop()


def output_folder(out: str) -> Path:
    """--out for a multi-file input: a folder (existing, or a new name without an extension)."""
    if out == STDIO:
        raise RosPromptError("a folder or glob input writes one output per input file: give --out FOLDER, not stdout")
    folder = Path(out).expanduser()
    if folder.exists() and not folder.is_dir():
        raise RosPromptError(f"{out}: is a file; a folder or glob input needs --out FOLDER (one output per input file)")
    if not folder.exists() and folder.suffix:
        raise RosPromptError(
            f"{out}: a folder or glob input writes one output per input file; give --out a folder name "
            f"(no extension){' or use --engine ray to write one Parquet file' if folder.suffix == '.parquet' else ''}"
        )
    if not folder.parent.is_dir():
        raise RosPromptError(f"{out}: folder {folder.parent} does not exist; create it first")
    return folder


def per_file_outputs(files: list[Path], folder: Path, out_fmt: str | None) -> list[Path]:
    """FOLDER/<input name><extension of the output format> for each input (default Parquet)."""
    fmt = check_format(out_fmt, "--out-format") if out_fmt else "parquet"
    targets: dict[Path, Path] = {}
    for file in files:
        target = folder / (file.stem + extension(fmt))
        if target in targets:
            raise RosPromptError(
                f"{targets[target]} and {file}: both would be written to {target}; label them in separate runs"
            )
        targets[target] = file
    return list(targets)


@dataclass
class FilePlan:
    """One input file of a multi-file local run and its output."""

    input: Path
    output: Path


def plan_files(files: list[Path], outputs: list[Path], force: bool, resume: bool) -> list[FilePlan]:
    """Each input file with its output. Without --resume or --force an existing output is refused,
    before any file is labelled; with --resume each file's run decides as a single file's would
    (continue an interrupted run, keep an output complete for the same run, or start)."""
    for target in outputs:
        if target.exists() and not (force or resume):
            raise RosPromptError(f"{target}: output file exists; pass --force to overwrite it (or --resume to keep finished outputs)")
    return [FilePlan(file, target) for file, target in zip(files, outputs)]
