"""`label --engine ray`: the same scoring code, scaled out over a Ray cluster with Ray Data.

Input files (a folder, a glob or one file; CSV, TSV, JSONL or Parquet, one format) are read
with Ray Data's readers. A `map_batches` stage runs a fixed pool of `LabelWorker` actors; each
builds its scorer once from the same ScorerSpec as the local engine and labels its batches with
frames.prepare_frame and label_prepared, exactly as the local engine does. Output: a folder of
Parquet shards, or one Parquet file when --out ends in .parquet. Either is written beside the
target under a hidden name and renamed into place when complete, so a failed run publishes nothing.

Unlike the local engine there is no row-level pre-pass: a row Ray Data cannot read fails the
run (as --on-error fail would), and a failed run is started again rather than resumed.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import polars as pl

from rosprompt_cli.errors import RosPromptError
from rosprompt_cli.formats import DELIMITED, file_separator
from rosprompt_cli.frames import LabelOptions, OutputColumns
from rosprompt_cli.input_check import QUOTED_TSV_FIELD, csv_header, csv_records
from rosprompt_cli.readers import check_columns
from rosprompt_cli.labels import LabelSet
from rosprompt_cli.paths import resolved
from rosprompt_cli.inputs import input_files
from rosprompt_cli.spec import ScorerSpec, build_scorer
from rosprompt_cli.summary import tally_labels

INSTALL_HINT = "--engine ray needs Ray Data, an optional extra: pip install 'rosprompt[ray]'"
# Reading and writing are light next to scoring. Asking a CPU for each read or write task would
# leave none for them once the workers hold every CPU of a machine, and the run would stall.
IO_CPUS = 0
SHARD_PREFIX = "part"
SHARD_MIN_ROWS = 100_000  # rows per output shard (the last ones may hold fewer)


@dataclass(frozen=True)
class RayRequest:
    """Where the cluster is and what each worker gets; None: the default (given() names the
    options that were set, which the local engine refuses)."""

    address: str | None = None  # None: start a local Ray instance on this machine
    num_workers: int | None = None  # None: as many as the cluster's CPUs (or GPUs) fit
    gpus_per_worker: float | None = None  # None: 0, CPU workers
    cpus_per_worker: float | None = None  # None: 1

    def __post_init__(self) -> None:
        if self.num_workers is not None and self.num_workers < 1:
            raise RosPromptError("--num-workers must be at least 1")
        if self.gpus < 0:
            raise RosPromptError("--gpus-per-worker must be 0 or more")
        if self.cpus <= 0:
            raise RosPromptError("--cpus-per-worker must be more than 0")

    @property
    def gpus(self) -> float:
        return self.gpus_per_worker or 0.0

    @property
    def cpus(self) -> float:
        return self.cpus_per_worker or 1.0

    def given(self) -> list[str]:
        """The command-line flags of the options set."""
        flags = {"--ray-address": self.address, "--num-workers": self.num_workers,
                 "--gpus-per-worker": self.gpus_per_worker, "--cpus-per-worker": self.cpus_per_worker}
        return [flag for flag, value in flags.items() if value is not None]

    def workers_that_fit(self, resources: dict[str, float]) -> int:
        fit = int(resources.get("CPU", 0) // self.cpus)
        if self.gpus > 0:
            fit = min(fit, int(resources.get("GPU", 0) // self.gpus))
        return fit


@dataclass
class RayResult:
    """What the run did, for the status line and --summary."""

    output: str
    files: int
    workers: int
    rows: int = 0
    labelled: int = 0
    empty_text: int = 0
    below_min_score: int = 0
    seconds: float = 0.0
    label_counts: Counter = field(default_factory=Counter)


def require_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise RosPromptError(INSTALL_HINT) from exc
    return ray


class LabelWorker:
    """One Ray actor: the backbone and prompt loaded once, then batch after batch."""

    def __init__(self, spec: ScorerSpec, label_set: LabelSet, options: LabelOptions, threads: int) -> None:
        import torch

        from rosprompt_cli.backbone import _quiet_transformers

        torch.set_num_threads(max(1, threads))
        _quiet_transformers()
        # the worker's CPUs, for ONNX Runtime too (its default, every core, would oversubscribe)
        self.scorer = build_scorer(replace(spec, threads=spec.threads or max(1, threads)))
        self.label_set = label_set
        self.options = options
        self.label_vectors = self.scorer.label_vectors(label_set)  # once per worker

    def __call__(self, batch: Any) -> Any:
        from rosprompt_cli.frames import label_prepared, prepare_frame

        frame = pl.from_arrow(batch)
        assert isinstance(frame, pl.DataFrame)
        chunk = prepare_frame(frame, self.scorer, self.options)
        labelled = label_prepared(chunk, self.scorer, self.label_set, self.label_vectors, self.options)
        # Arrow types every reader and writer of Ray agrees on (no string views).
        return labelled.to_arrow(compat_level=pl.CompatLevel.oldest())


def check_target(out: str, force: bool) -> tuple[Path, bool]:
    """The output path and whether it is one file (else a folder of shards)."""
    target = resolved(out)
    single_file = target.suffix.lower() == ".parquet"
    if not single_file and target.suffix:
        raise RosPromptError(f"{out}: --engine ray writes Parquet: give a folder for shards, or a file ending in .parquet")
    if not target.parent.is_dir():
        raise RosPromptError(f"{out}: output folder {target.parent} does not exist; create it first")
    if target.exists():
        if not force:
            raise RosPromptError(f"{out}: exists; pass --force to replace it")
        if single_file and target.is_dir():
            raise RosPromptError(f"{out}: is a folder; give a file name ending in .parquet, or a folder without the extension")
        if target.is_dir() and any(not p.name.endswith(".parquet") for p in target.iterdir() if not p.name.startswith(".")):
            raise RosPromptError(f"{out}: holds files other than Parquet shards; --force only replaces a shard folder")
    return target, single_file


def _csv_columns(files: list[Path], fmt: str) -> list[str]:
    """Every CSV file's header, which must be the same in all."""
    header: list[str] | None = None
    for file in files:
        sep = file_separator(file, fmt)
        this = csv_header(csv_records(file, sep), str(file))
        if this is None:
            raise RosPromptError(f"{file}: the file is empty (no header, no rows)")
        if header is None:
            header, first, first_sep = this, file, sep
        elif sep != first_sep:
            raise RosPromptError(f"{file}: its fields are separated by {sep!r}, {first}'s by {first_sep!r}; give files "
                                 f"written the same way")
        elif this != header:
            raise RosPromptError(f"{file}: its header differs from {first}'s; give files with the same columns")
    assert header is not None
    return header


def read_dataset(ray: Any, files: list[Path], fmt: str) -> Any:
    """A Dataset of the files' rows, typed as the local engine reads them: CSV values stay text,
    with an empty field null; JSONL and Parquet keep their types."""
    paths = [str(f) for f in files]
    if fmt in DELIMITED:
        import pyarrow as pa
        import pyarrow.csv as pacsv

        columns = _csv_columns(files, fmt)
        if fmt == "tsv":  # one row per line, a quote is text (input_check.split_tsv_line)
            parse = pacsv.ParseOptions(delimiter="\t", quote_char=False)
        else:
            parse = pacsv.ParseOptions(delimiter=file_separator(files[0], fmt), newlines_in_values=True)
        convert = pacsv.ConvertOptions(column_types={c: pa.string() for c in columns}, strings_can_be_null=True,
                                       quoted_strings_can_be_null=True, null_values=[""])
        dataset = ray.data.read_csv(paths, parse_options=parse, convert_options=convert, num_cpus=IO_CPUS)
        if fmt == "tsv":
            dataset = dataset.map_batches(unquote_tsv, batch_format="pyarrow", num_cpus=IO_CPUS)
        return dataset
    if fmt == "jsonl":
        return ray.data.read_json(paths, lines=True, num_cpus=IO_CPUS)
    return ray.data.read_parquet(paths, num_cpus=IO_CPUS)


def unquote_tsv(table: Any) -> Any:
    """The local reader's TSV rule on a pyarrow table read without quoting: a value wholly in
    quotes, inner quotes doubled, loses them; an empty value is null."""
    import pyarrow as pa
    import pyarrow.compute as pc

    quoted = f"^{QUOTED_TSV_FIELD}$"
    columns = []
    for column in table.columns:
        inner = pc.replace_substring(pc.utf8_slice_codeunits(column, 1, -1), '""', '"')
        value = pc.if_else(pc.match_substring_regex(column, quoted), inner, column)
        columns.append(pc.if_else(pc.equal(value, ""), pa.scalar(None, pa.string()), value))
    return pa.Table.from_arrays(columns, names=table.column_names)


def connect(ray: Any, address: str | None = None, **init: Any) -> bool:
    """Connect to the cluster at `address`, or start a local Ray instance (`init`: more
    arguments of ray.init), unless this process is connected already (a Python caller's own
    instance, used as it is); True when this call started a local instance, which its caller
    stops. Either way the run's Ray Data settings are applied: the driver's context is this
    process's, whoever started Ray."""
    started = False
    if not ray.is_initialized():
        os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")  # the C++ core's notices on stderr
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=True,
                 logging_level="ERROR", **init)
        started = address is None
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # rows come out in input order, file by file
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    # A failure reaches the user as one line (label_with_ray); Ray's own stack traces would bury it.
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    return started


def label_with_ray(
    input_spec: str,
    out: str,
    fmt: str | None,
    spec: ScorerSpec,
    label_set: LabelSet,
    options: LabelOptions,
    request: RayRequest,
    chunk_rows: int,
    force: bool,
) -> RayResult:
    """Label every row of the input files on Ray; see the module docstring."""
    ray = require_ray()
    files, in_fmt = input_files(input_spec, fmt)
    target, single_file = check_target(out, force)
    started_here = connect(ray, request.address)
    try:
        return _run(ray, files, in_fmt, input_spec, target, single_file, spec, label_set, options, request, chunk_rows)
    except RosPromptError:
        raise
    except ray.exceptions.RayError as exc:
        _name_bad_row(files, in_fmt, options.text_col)  # a row Ray could not read: say which one
        raise RosPromptError(f"{input_spec}: the Ray run failed, nothing was published ({_cause(exc)})") from exc
    finally:
        if started_here:
            ray.shutdown()


def _run(ray: Any, files: list[Path], in_fmt: str, input_spec: str, target: Path, single_file: bool,
         spec: ScorerSpec, label_set: LabelSet, options: LabelOptions, request: RayRequest,
         chunk_rows: int) -> RayResult:
    started = time.perf_counter()
    workers = request.num_workers or request.workers_that_fit(ray.cluster_resources())
    if workers < 1:
        raise RosPromptError(
            f"the Ray cluster has no room for one worker of {request.cpus:g} CPU and "
            f"{request.gpus:g} GPU; lower --cpus-per-worker/--gpus-per-worker"
        )
    dataset = read_dataset(ray, files, in_fmt)
    columns = dataset.columns()
    check_columns(input_spec, columns, {"--text-col": options.text_col}, have="the files have")
    OutputColumns(tuple(label_set.names), options).refuse_clash(input_spec, columns)
    labelled = dataset.map_batches(
        LabelWorker,
        fn_constructor_kwargs={"spec": spec, "label_set": label_set, "options": options,
                               "threads": int(request.cpus)},
        batch_format="pyarrow",
        batch_size=chunk_rows,
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=request.cpus,
        num_gpus=request.gpus,
    )
    result = RayResult(output=str(target), files=len(files), workers=workers)
    partial = target.with_name(f".{target.name}.partial")
    _remove(partial)
    try:
        if single_file:
            _write_single(labelled, partial, options.label_col, options.score_col, result)
        else:
            _write_shards(labelled, partial, options.label_col, options.score_col, result)
        _remove(target)
        partial.replace(target)
    except BaseException:
        _remove(partial)
        raise
    result.seconds = time.perf_counter() - started
    return result


def _write_single(dataset: Any, path: Path, label_col: str, score_col: str, result: RayResult) -> None:
    """Stream the labelled batches, in order, into one Parquet file written by this process."""
    import pyarrow.parquet as pq

    writer = None
    try:
        for batch in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
            if writer is None:
                writer = pq.ParquetWriter(str(path), batch.schema)
            elif batch.schema != writer.schema:  # e.g. a JSONL column null in one file, text in another
                batch = batch.cast(writer.schema)
            writer.write_table(batch)
            tally_labels(result, pl.from_arrow(batch.column(label_col)), pl.from_arrow(batch.column(score_col)))
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        raise RosPromptError(f"{path.name.removeprefix('.').removesuffix('.partial')}: the input has no rows")


def _write_shards(dataset: Any, folder: Path, label_col: str, score_col: str, result: RayResult) -> None:
    """Let the cluster write the shards (part-NNNNNN.parquet, in input order), then count them."""
    from ray.data.datasource import FilenameProvider

    class ShardNames(FilenameProvider):
        def get_filename_for_task(self, write_uuid: str, task_index: int) -> str:
            return f"{SHARD_PREFIX}-{task_index:06}.parquet"

    from ray.data import SaveMode

    # OVERWRITE: the folder is this run's own fresh partial folder; names need no write id.
    dataset.write_parquet(str(folder), filename_provider=ShardNames(), min_rows_per_file=SHARD_MIN_ROWS,
                          mode=SaveMode.OVERWRITE, ray_remote_args={"num_cpus": IO_CPUS})
    shards = _number_shards(folder)
    if not shards:
        raise RosPromptError(f"{folder.name.removeprefix('.').removesuffix('.partial')}: the input has no rows")
    columns = pl.scan_parquet(shards).select(label_col, score_col).collect()
    tally_labels(result, columns.get_column(label_col), columns.get_column(score_col))


def _number_shards(folder: Path) -> list[Path]:
    """Rename the shards Ray wrote (part-TASK-K.parquet: K counts the files of one write task) to
    part-000000.parquet, part-000001.parquet, … in input order, so that sorting by name is
    reading in order; returns them in that order."""
    written = []
    for path in folder.glob(f"{SHARD_PREFIX}-*.parquet"):
        numbers = re.fullmatch(rf"{SHARD_PREFIX}-(\d+)(?:-(\d+))?\.parquet", path.name)
        assert numbers is not None, path
        written.append((int(numbers[1]), int(numbers[2] or 0), path))
    staged = [path.rename(folder / f".{index}.renaming") for index, (_, _, path) in enumerate(sorted(written))]
    shards = [folder / f"{SHARD_PREFIX}-{index:06}.parquet" for index in range(len(staged))]
    for stage, shard in zip(staged, shards):  # in two steps, so that no new name replaces an old one
        stage.rename(shard)
    return shards


def _cause(exc: BaseException) -> str:
    """The message of the error that started a chain of Ray wrappers, on one line."""
    seen: set[int] = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        inner = getattr(exc, "cause", None) or exc.__cause__
        if not isinstance(inner, BaseException):
            break
        exc = inner
    text = str(exc).strip()
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith(("Traceback", "  "))]
    return lines[0] if lines else type(exc).__name__


def _name_bad_row(files: list[Path], fmt: str, text_col: str) -> None:
    """Raise the local pre-pass's one-line error (file, line, column) for the first row of the
    input that cannot be read, if there is one; Ray's readers name neither file nor line."""
    from rosprompt_cli.input_check import FailOnReject
    from rosprompt_cli.readers import TableSource

    advice = "nothing was published; fix the input, or label it with --engine local --on-error skip to set bad rows aside"
    for file in files:
        if file.exists():
            with TableSource(str(file), file, fmt) as source:
                source.check(text_col, FailOnReject(str(file), advice))


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()
