"""`label` as one library operation: a `LabelJob` describes the whole run, `run_label` does it.

A job is one input (a file, `-` for stdin, or a folder or glob of files), one output (a file,
`-` for stdout, or a folder), a label set, a scorer description, and the run's options. The
same call covers every way `rosprompt label` runs:

- one file, local engine: file_run.FileRun (lock, pre-pass, chunks, resume, atomic publish);
- several files, local engine: one FileRun per file with the model loaded once, each output in
  the --out folder, --resume keeping the outputs already complete;
- --engine ray: ray_engine.label_with_ray, after the model, prompt and labels are checked here.

Progress and status lines go to `on_event` (events.py), never to the terminal. The policy a
run follows is stated here once: the lexicon default (spec.label_set_for), which options each
engine takes, and the `--summary` file, written for a finished, failed or interrupted run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from rosprompt_cli import summary as summaries
from rosprompt_cli.errors import RosPromptError, SummaryNotWritten, WriteFailed, check_choice, write_failed
from rosprompt_cli.events import OnEvent, RowsDone, RowsFinished, RowsStarted, ignore, info, warn
from rosprompt_cli.file_run import (
    DEFAULT_CHUNK_ROWS,
    ON_ERROR,
    FileOptions,
    FileRun,
    RunRequest,
    check_chunk_rows,
    describe_rejects,
    run_files,
)
from rosprompt_cli.formats import STDIO, STDOUT_NAME
from rosprompt_cli.frames import LabelOptions, OutputColumns
from rosprompt_cli.input_check import FAIL_ON_UNCLOSED_QUOTE
from rosprompt_cli.paths import check_file_to_write, refuse_shared_paths
from rosprompt_cli.interrupt import Interrupted
from rosprompt_cli.labels import LabelSet
from rosprompt_cli.output import OutputLock
from rosprompt_cli.ray_engine import RayRequest, RayResult, check_target, label_with_ray, require_ray
from rosprompt_cli.inputs import input_files, is_multi_file, output_folder, per_file_outputs, plan_files
from rosprompt_cli.spec import ScorerFactory, ScorerSpec, label_set_for, scorer_for

if TYPE_CHECKING:
    from rosprompt_cli.verbalizers.base import Scorer

ENGINES = ("local", "ray")
# Ray Data packs small blocks together up to a batch; 2048 rows would hand a small input to one
# worker. 256 rows is seconds of work per batch on a CPU worker: small next to the scoring.
RAY_BATCH_ROWS = 256
# What ends a run early, for its summary: any error, and SIGINT/SIGTERM (a BaseException).
_STOPS = (Exception, Interrupted)


@dataclass(frozen=True)
class LabelJob(FileOptions):
    """Everything one `rosprompt label` run needs; checked when made, before any work.

    on_error: 'skip' (bad rows to the rejects file) or 'fail'; None: skip, the local default
    (the Ray engine can only fail). chunk_rows: None for the engine's default (2048 locally, 256
    per Ray batch). lexicon: None for the default (spec.label_set_for). summary: a JSON file
    written for every outcome once the run starts.
    """

    input: str
    labels: LabelSet
    out: str = STDIO
    scorer: ScorerSpec = field(default_factory=ScorerSpec)
    options: LabelOptions = field(default_factory=LabelOptions)
    lexicon: bool | None = None
    on_error: str | None = None
    rejects: str | None = None
    chunk_rows: int | None = None
    summary: str | None = None
    engine: str = "local"
    cluster: RayRequest = field(default_factory=RayRequest)
    # and FileOptions' fields: fmt, out_format, unclosed_quote, force, resume, new_only_by, seen_store

    def __post_init__(self) -> None:
        check_choice("--engine", self.engine, ENGINES)
        self.check_file_options(self.out)
        if self.engine == "local" and self.cluster.given():
            raise RosPromptError(f"{self.cluster.given()[0]} is an option of --engine ray")
        self.labels.require_choice("every row would get it, with score 1.0")
        OutputColumns(tuple(self.labels.names), self.options).refuse_duplicates()
        if self.on_error is not None:
            check_choice("--on-error", self.on_error, ON_ERROR)
        if self.summary:
            check_file_to_write("--summary", self.summary, "the run's summary")
        # the label and prompt files are read by the run too: --out or --summary must not replace them
        reads = files_kept(self.labels.source, self.scorer.prompt, self.seen_store)
        if self.engine == "local" and not is_multi_file(self.input):
            refuse_shared_paths(run_files(self.input, self.out, self.rejects, self.summary) | reads)
        else:
            refuse_shared_paths({"--out": self.out, "--summary": self.summary} | reads)

    def file_request(self, input: str, out: str, chunk_rows: int, rejects: str | None = None) -> RunRequest:
        """What the local engine's run of one file (this job's input, or one file of a folder
        input) takes from this job."""
        return RunRequest(input=input, out=out, on_error=self.on_error or "skip", rejects=rejects, chunk_rows=chunk_rows,
                          **self.file_options())


def files_kept(labels_file: str | None, prompt: str | None, seen_store: str | None) -> dict[str, str | None]:
    """The files a label run reads or keeps besides its input, by option: no file the run writes
    (--out, --rejects, --summary) may be one of them."""
    return {"--labels-file": labels_file, "--prompt": prompt, "--seen-store": seen_store}


@dataclass(frozen=True)
class LabelResult:
    """How the run ended: its --summary contents (also when no --summary file was asked for)."""

    summary: dict

    @property
    def status(self) -> str:
        return str(self.summary["status"])

    @property
    def rejected(self) -> int:
        """Rows set aside in rejects files (the exit code 4 case)."""
        return int(self.summary.get("rejected", 0))


SummarySoFar = Callable[[str, "str | None"], dict]  # (status, error) -> what --summary says if the run stops now


def run_label(job: LabelJob, on_event: OnEvent = ignore, scorer: Scorer | ScorerFactory | None = None) -> LabelResult:
    """Label every row of the job's input; see the module docstring. Raises RosPromptError
    (bad input, arguments or environment; nothing published) or interrupt.Interrupted; the
    --summary file says how the run ended either way.

    `scorer`: a scorer already built (used as it is, in place of `job.scorer`), or a factory
    such as a spec.ScorerCache that gives one for `job.scorer`; None builds one. The model is
    loaded after the input is checked, and not at all when the input is refused. Ray workers
    build their own from `job.scorer`, so `--engine ray` takes a factory, not a built scorer."""
    so_far: list[SummarySoFar] = [lambda status, error: failed_summary(job.input, job.out, status, error)]
    try:
        if job.engine == "ray":
            summary = _label_on_ray(job, on_event, so_far, scorer)
        else:
            summary = _label_locally(job, on_event, so_far, scorer)
    except _STOPS as exc:
        try:
            _write_summary(job, so_far[-1](*summaries.failure(exc)))
        except WriteFailed as also:
            warn(on_event, str(also))  # the run's own error, raised next, is the one to report
        raise
    return LabelResult(_write_summary(job, summary, finished=True))


def _write_summary(job: LabelJob, data: dict, finished: bool = False) -> dict:
    if job.summary:
        try:
            summaries.write(job.summary, data)
        except OSError as exc:
            failure = write_failed(f"--summary {job.summary}", exc)
            if finished:
                where = data.get("output", "the output")
                raise SummaryNotWritten(f"{failure}; the run itself finished and {where} is complete") from exc
            raise failure from exc
    return data


def failed_summary(input: str, out: str, status: str, error: str | None) -> dict:
    """The --summary of a run that stopped before it read a row (bad options, labels or input):
    a monitor then reads this failure rather than yesterday's "ok"."""
    output = STDOUT_NAME if out == STDIO else out
    return summaries.RunSummary(input=input, output=output, status=status, error=error).as_dict()


def write_failed_summary(path: str | None, input: str, out: str, rejects: str | None, exc: BaseException,
                         reads: dict[str, str | None] | None = None) -> None:
    """--summary for a run refused before it became a job (its options did not make one); never
    over any other file of the run (`reads`: the label and prompt files, by option), and not
    where the folder is missing."""
    if not path:
        return
    try:
        check_file_to_write("--summary", path, "the run's summary")
        refuse_shared_paths(run_files(input, out, rejects, path) | (reads or {}))
    except RosPromptError:
        return  # the summary would land on a file of the run
    summaries.write(path, failed_summary(input, out, *summaries.failure(exc)))


def _label_locally(job: LabelJob, on_event: OnEvent, so_far: list[SummarySoFar],
                   given: Scorer | ScorerFactory | None) -> dict:
    # before the input pre-pass, which may take a while
    job.scorer.check_placement()
    chunk_rows = check_chunk_rows(DEFAULT_CHUNK_ROWS if job.chunk_rows is None else job.chunk_rows)
    load_scorer = cache(lambda: scorer_for(job.scorer, given))  # once, after the first file's pre-pass
    if is_multi_file(job.input):
        return _label_files(job, chunk_rows, load_scorer, on_event, so_far)
    with FileRun(job.file_request(job.input, job.out, chunk_rows, job.rejects), job.options,
                 list(job.labels.names)) as run:
        so_far.append(lambda status, error: _file_summary(run, status, error))
        _run_file(run, job, load_scorer, on_event)
        return run.summary.as_dict()


def _file_summary(run: FileRun, status: str, error: str | None) -> dict:
    run.summary.status, run.summary.error = status, error
    return run.summary.as_dict()


def _run_file(run: FileRun, job: LabelJob, load_scorer: Callable[[], Scorer], on_event: OnEvent,
              announce: bool = True) -> None:
    """Check the input first (no model needed), then load the model and label."""
    report = run.prepare()
    source = run.source.display
    for note in report.notes:
        info(on_event, note)
    if not report.columns:
        warn(on_event, f"{source}: the input is empty (no header, no rows); the output will be empty")
    if report.empty_text:
        lines = ", ".join(map(str, report.empty_text_lines)) + (", …" if report.empty_text > len(report.empty_text_lines) else "")
        where = "rows" if run.source.fmt == "parquet" else "lines"
        warn(on_event, f"{source}: {report.empty_text:,} rows have empty or missing text ({where} {lines}); "
                       f"they are kept in the output with an empty label")
    scorer = load_scorer()
    label_set, lexicon_note = label_set_for(scorer, job.labels, job.lexicon)
    run.summary.prompt = scorer.prompt_note + lexicon_note
    run.summary.calibration = scorer.calibration.as_dict()
    if announce:
        info(on_event, f"{scorer.backbone.name} ({scorer.backbone.execution}), {run.summary.prompt}, "
                       f"{len(label_set)} labels; {scorer.calibration.note}")
    on_event(RowsStarted("labelling", report.rows))
    try:
        done = run.execute(scorer, label_set, on_rows=lambda n: on_event(RowsDone(n)),
                           on_resumed=lambda n: on_event(RowsDone(n, earlier=True)))
    finally:
        on_event(RowsFinished())
    if done.status == "complete":
        info(on_event, f"{done.output}: complete already for the same input, model, prompt, labels and options "
                       f"({done.rows:,} rows); nothing to do")
        return
    where = "stdout" if done.output == STDOUT_NAME else done.output
    resumed = f", resumed at row {done.resumed_from_row:,}" if done.resumed_from_row else ""
    if done.input_grew:
        resumed = f", the input grew: the first {done.resumed_from_row:,} rows kept from the earlier output"
    adapted = f"; {done.adapt}" if done.adapt else ""
    below = f", {done.below_min_score:,} below --min-score" if job.options.min_score is not None else ""
    if job.new_only_by is not None:
        below += f", {done.skipped_seen:,} already labelled by an earlier run or row (skipped)"
    info(on_event, f"{done.rows:,} rows -> {where} ({done.labelled:,} labelled, {done.empty_text:,} with empty text"
                   f"{below}{resumed}{adapted}) in {done.seconds:.1f}s")
    if done.rejected:
        warn(on_event, describe_rejects(run.sink, source, run.rejects_path))
    if done.adapt_groups_not_centred:
        warn(on_event, f"{source}: --adapt left {done.adapt_groups_not_centred:,} group(s) as they were ({done.adapt}); "
                       f"their labels are those of a run without --adapt")


def _label_files(job: LabelJob, chunk_rows: int, load_scorer: Callable[[], Scorer], on_event: OnEvent,
                 so_far: list[SummarySoFar]) -> dict:
    """A folder or glob input: file after file with one loaded model, one output per file in the
    --out folder; every output is checked before the first file is labelled."""
    if job.rejects:
        raise RosPromptError("--rejects names one file; with a folder or glob input each output gets its own NAME.rejects.jsonl")
    files, _ = input_files(job.input, job.fmt)
    folder = output_folder(job.out)
    plans = plan_files(files, per_file_outputs(files, folder, job.out_format), job.force, job.resume)
    folder.mkdir(exist_ok=True)
    done: list[dict] = []

    def complete() -> list[str]:  # outputs --resume found complete and kept
        return [one["output"] for one in done if one["status"] == "complete"]

    so_far.append(lambda status, error: summaries.combined(done, status, error, complete()))
    for number, plan in enumerate(plans):
        with FileRun(job.file_request(str(plan.input), str(plan.output), chunk_rows), job.options,
                     list(job.labels.names)) as run:
            try:
                _run_file(run, job, load_scorer, on_event, announce=number == 0)
            except _STOPS as exc:
                done.append(_file_summary(run, *summaries.failure(exc)))
                raise
            done.append(run.summary.as_dict())
    if complete():
        info(on_event, f"--resume: {len(complete())} of {len(files)} outputs are complete already and kept")
    status = summaries.run_status(sum(one["rejected"] for one in done))
    return summaries.combined(done, status, None, complete())


def _refuse_for_ray(job: LabelJob) -> None:
    """The local engine's options that --engine ray cannot honour, each refused in one line."""
    device = job.scorer.device
    if job.input == STDIO:
        raise RosPromptError("--engine ray reads files (a file, folder or glob), not stdin")
    if job.out == STDIO:
        raise RosPromptError("--engine ray writes Parquet files: give --out FOLDER (shards) or --out FILE.parquet, not stdout")
    if job.out_format not in (None, "parquet"):
        raise RosPromptError(f"--out-format {job.out_format}: --engine ray writes Parquet only")
    if job.on_error == "skip" or job.rejects:
        raise RosPromptError("--engine ray stops at the first unreadable row; to set bad rows aside use --engine local --on-error skip")
    if job.options.adapt is not None:
        raise RosPromptError("--adapt is for --engine local: it reads each input twice more before labelling")
    if job.new_only_by is not None:
        raise RosPromptError("--new-only-by is for --engine local: its seen store is kept by one process")
    if job.unclosed_quote != FAIL_ON_UNCLOSED_QUOTE:
        raise RosPromptError("--unclosed-quote reject-line is for --engine local; --engine ray stops at an unclosed quote")
    if job.resume:
        raise RosPromptError("--resume is for --engine local; a failed Ray run publishes nothing: run it again")
    if device.startswith("cuda") and not job.cluster.gpus:
        raise RosPromptError(f"--device {device} with --engine ray needs --gpus-per-worker (a worker sees only the GPUs it reserves)")
    if job.scorer.quantize == "int8" and job.cluster.gpus:
        raise RosPromptError("--quantize int8 is for CPU workers; GPU workers use --dtype float16 or bfloat16 instead")


def _label_on_ray(job: LabelJob, on_event: OnEvent, so_far: list[SummarySoFar],
                  given: Scorer | ScorerFactory | None) -> dict:
    """Check the model, prompt and labels here (one line on error, before any cluster work), then
    let the workers label."""
    from rosprompt_cli.verbalizers.base import Scorer  # needs torch, which this path loads next anyway

    if isinstance(given, Scorer):
        raise RosPromptError("--engine ray: each Ray worker builds its own scorer from the job's ScorerSpec; "
                             "pass a scorer factory (or none), not a built scorer")
    so_far.append(lambda status, error: summaries.ray_summary(RayResult(output=job.out, files=0, workers=0),
                                                              job.input, status, error))
    _refuse_for_ray(job)
    # a Ray worker's device is its own, and the driver may have no GPU at all: CPU workers are
    # checked as a CPU here, GPU workers for what holds on any device
    if job.cluster.gpus:
        replace(job.scorer, device="cpu", dtype="auto", runtime="torch").check_placement()
    else:
        replace(job.scorer, device="cpu").check_placement()
    chunk_rows = check_chunk_rows(RAY_BATCH_ROWS if job.chunk_rows is None else job.chunk_rows)
    spec = job.scorer.with_absolute_paths()
    require_ray()
    input_files(job.input, job.fmt)
    with OutputLock(Path(job.out)):  # the same lock a local run on this --out takes
        check_target(job.out, job.force)
        scorer = scorer_for(replace(spec, device="cpu", dtype="auto", quantize="none", runtime="torch"), given)
        label_set, lexicon_note = label_set_for(scorer, job.labels, job.lexicon)
        info(on_event, f"{scorer.backbone.name}, {scorer.prompt_note}{lexicon_note}, {len(label_set)} labels; "
                       f"{scorer.calibration.note}; starting Ray workers")
        del scorer
        result = label_with_ray(job.input, job.out, job.fmt, spec, label_set, job.options, job.cluster, chunk_rows,
                                job.force)
    rate = result.rows / result.seconds if result.seconds > 0 else 0.0
    info(on_event, f"{result.rows:,} rows from {result.files} file(s) -> {result.output} ({result.labelled:,} "
                   f"labelled, {result.empty_text:,} with empty text) in {result.seconds:.1f}s, {rate:,.0f} rows/s "
                   f"on {result.workers} worker(s)")
    return summaries.ray_summary(result, job.input)
