"""`rosprompt label`: add predicted labels to every row of a table."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache, partial
from pathlib import Path
from typing import Annotated

import typer

from rosprompt_cli.backbone import check_placement
from rosprompt_cli.commands import common
from rosprompt_cli.errors import RosPromptError
from rosprompt_cli.interrupt import Interrupted
from rosprompt_cli.label_run import LabelRun, RunRequest, describe_rejects
from rosprompt_cli.labeling import LabelOptions
from rosprompt_cli.labels import LabelSet, resolve_label_set
from rosprompt_cli.output import STDIO
from rosprompt_cli.paths import write_json_atomically
from rosprompt_cli.ray_engine import RayRequest, RayResult, ScorerSpec, as_summary, check_target, label_with_ray, require_ray
from rosprompt_cli.scorers import Scorer, build_scorer, check_choices
from rosprompt_cli.shards import FileJob, combined_summary, input_files, is_multi_file, output_folder, per_file_outputs, plan_jobs

ENGINES = ("local", "ray")
LOCAL_CHUNK_ROWS = 2048
# Ray Data packs small blocks together up to a batch; 2048 rows would hand a small input to one
# worker. 256 rows is seconds of work per batch on a CPU worker: small next to the scoring.
RAY_BATCH_ROWS = 256

HELP = (
    "Label every row of INPUT (CSV, TSV, JSONL, Parquet, - for stdin, or a folder or glob of such files) with "
    "one of the given labels. "
    "The output keeps all input columns in order and adds 'label' and 'score'. Exit codes: 0 ok, 1 error "
    "(nothing published), 4 published but some rows were set aside (--on-error skip), 5 another run holds "
    "the output, 130/143 interrupted (resumable with --resume)."
)


def label(
    input: Annotated[str, typer.Argument(help="Input file, - for stdin, or a folder or quoted glob of files (one format).", show_default=False)],
    labels: common.Labels = None,
    labels_file: common.LabelsFile = None,
    lexicon: common.Lexicon = None,
    text_col: common.TextCol = "text",
    prompt: common.PromptPath = None,
    no_prompt: common.NoPrompt = False,
    out: Annotated[str, typer.Option("--out", "-o", help="Output file (format from its extension), or - for stdout.")] = STDIO,
    fmt: common.Format = None,
    out_format: Annotated[
        str | None,
        typer.Option("--out-format", help="Output format. Default: from --out's extension; on stdout the input's text format.", show_default=False),
    ] = None,
    all_scores: Annotated[bool, typer.Option("--all-scores", help="Add a score_<label> column per label.")] = False,
    top_k: Annotated[int, typer.Option("--top-k", help="Also add label_2/score_2 … up to rank K.")] = 1,
    multi_label: Annotated[bool, typer.Option("--multi-label", help="Add a 'labels' column: every label scoring ≥ --threshold, joined by '|'.")] = False,
    threshold: Annotated[float, typer.Option("--threshold", help="Score threshold for --multi-label (scores are softmax probabilities).")] = 0.3,
    out_label_col: Annotated[str, typer.Option("--out-label-col", help="Name of the added label column.")] = "label",
    out_score_col: Annotated[str, typer.Option("--out-score-col", help="Name of the added score column.")] = "score",
    on_error: Annotated[
        str | None,
        typer.Option(
            "--on-error",
            help="A row that cannot be read (bad JSON, wrong number of CSV fields, bytes that are not UTF-8): "
            "'skip' sets it aside in the rejects file and labels the rest (exit code 4); 'fail' stops at the "
            "first one, before any labelling, naming its line. Default: skip (--engine ray: fail, its only mode).",
            show_default=False,
        ),
    ] = None,
    rejects: Annotated[
        str | None,
        typer.Option(
            "--rejects",
            help="Where --on-error skip writes the rows it set aside (JSONL: line, column, reason, raw text). "
            f"Default: OUT's name with .rejects.jsonl, or ./{'rosprompt-rejects.jsonl'} when writing to stdout; "
            "only created when a row is set aside.",
            show_default=False,
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Continue an interrupted run on the same --out from its last saved chunk; refused if the input, model, prompt, labels or options changed."),
    ] = False,
    chunk_rows: Annotated[
        int | None,
        typer.Option(
            "--chunk-rows",
            help="Rows read, labelled and saved per chunk: the memory bound, and the unit --resume continues from. "
            "With --engine ray: the rows of one batch handed to a worker (smaller batches spread a small input "
            "over more workers). Default: 2048 (--engine ray: 256).",
            show_default=False,
        ),
    ] = None,
    summary_path: Annotated[
        str | None,
        typer.Option("--summary", help="Write a JSON run summary here (rows read, labelled, rejected by reason, time, throughput, label counts, model, prompt, versions), also when the run fails. Default: none.", show_default=False),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing output (and rejects) file.")] = False,
    model: common.Model = None,
    device: common.Device = "auto",
    batch_size: common.ScoreBatchSize = None,
    max_length: common.MaxLength = None,
    dtype: common.Dtype = "auto",
    quantize: common.Quantize = "none",
    verbalizer: common.Verbalizer = "auto",
    mlm_template: common.MlmTemplate = None,
    neighbours: common.Neighbours = None,
    aggregate: common.Aggregate = None,
    word_pieces: common.WordPieces = None,
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            help="local: label in this process (a folder or glob INPUT writes one output per file into the --out "
            "folder). ray: Ray Data workers, each loading the model once, on a local Ray instance or the cluster at "
            "--ray-address; reads a file, folder or glob and writes Parquet (a folder of shards, or one .parquet "
            "file). Needs pip install 'rosprompt[ray]'.",
        ),
    ] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option("--ray-address", help="--engine ray: the cluster to join (auto, or HOST:PORT). Default: start a local Ray instance on this machine.", show_default=False),
    ] = None,
    num_workers: Annotated[
        int | None,
        typer.Option("--num-workers", help="--engine ray: labelling workers (each holds one copy of the model). Default: as many as the cluster's CPUs (GPUs with --gpus-per-worker) fit.", show_default=False),
    ] = None,
    gpus_per_worker: Annotated[
        float | None,
        typer.Option("--gpus-per-worker", help="--engine ray: GPUs each worker reserves (fractions share a GPU, e.g. 0.5). Default: 0 (CPU workers).", show_default=False),
    ] = None,
    cpus_per_worker: Annotated[
        float | None,
        typer.Option("--cpus-per-worker", help="--engine ray: CPUs each worker reserves, and its torch threads. Default: 1.", show_default=False),
    ] = None,
) -> None:
    if engine not in ENGINES:
        raise RosPromptError(f"--engine {engine!r}: expected one of {', '.join(ENGINES)}")
    ray_options = {"--ray-address": ray_address, "--num-workers": num_workers, "--gpus-per-worker": gpus_per_worker,
                   "--cpus-per-worker": cpus_per_worker}
    if engine == "local" and any(value is not None for value in ray_options.values()):
        given = next(name for name, value in ray_options.items() if value is not None)
        raise RosPromptError(f"{given} is an option of --engine ray")
    if summary_path and not Path(summary_path).resolve().parent.is_dir():
        raise RosPromptError(f"--summary {summary_path}: folder {Path(summary_path).parent} does not exist")
    label_set = resolve_label_set(labels, labels_file)
    # before the input pre-pass, which may take a while; a Ray worker's device is its own, and the
    # driver may have no GPU at all
    check_placement(device if engine == "local" else "cpu", dtype if engine == "local" else "auto", quantize)
    mlm_options = common.mlm_options(mlm_template, neighbours, aggregate, word_pieces)
    check_choices(verbalizer, mlm_options)
    options = LabelOptions(
        text_col=text_col,
        batch_size=batch_size,
        top_k=top_k,
        multi_label=multi_label,
        threshold=threshold,
        all_scores=all_scores,
        label_col=out_label_col,
        score_col=out_score_col,
    )
    if engine == "ray":
        _refuse_for_ray(input, out, out_format, on_error, rejects, resume, device, quantize, gpus_per_worker)
        chunk_rows = RAY_BATCH_ROWS if chunk_rows is None else chunk_rows
        if chunk_rows < 1:
            raise RosPromptError("--chunk-rows must be at least 1")
        spec = ScorerSpec(ScorerSpec.absolute(model), device, ScorerSpec.absolute(prompt), not no_prompt, max_length,
                          dtype, quantize, verbalizer, mlm_options)
        cluster = RayRequest(ray_address, num_workers, gpus_per_worker or 0.0, cpus_per_worker or 1.0)
        _label_on_ray(input, out, fmt, spec, cluster, label_set, options, lexicon, chunk_rows, force, summary_path)
        return
    chunk_rows = LOCAL_CHUNK_ROWS if chunk_rows is None else chunk_rows
    load_scorer = partial(build_scorer, model, device, prompt, not no_prompt, max_length, dtype, quantize,
                          verbalizer, mlm_options)
    if is_multi_file(input):
        if rejects:
            raise RosPromptError("--rejects names one file; with a folder or glob input each output gets its own NAME.rejects.jsonl")
        requests = [
            RunRequest(input=str(job.input), out=str(job.output), fmt=fmt, out_format=out_format,
                       on_error=on_error or "skip", force=force, resume=job.resume, chunk_rows=chunk_rows)
            for job in _plan_files(input, out, fmt, out_format, force, resume)
        ]
        if _label_files(requests, options, label_set, load_scorer, lexicon, summary_path):
            raise typer.Exit(4)
        return
    request = RunRequest(
        input=input, out=out, fmt=fmt, out_format=out_format, on_error=on_error or "skip", rejects=rejects,
        force=force, resume=resume, chunk_rows=chunk_rows,
    )
    with LabelRun(request, options, list(label_set.names)) as run:
        try:
            _run(run, label_set, load_scorer, lexicon)
        except (RosPromptError, Interrupted, Exception) as exc:
            if summary_path:
                run.summary.status, run.summary.error = _failure(exc)
                run.summary.write(summary_path)
            raise
        if summary_path:
            run.summary.write(summary_path)
    if run.summary.rejected:
        raise typer.Exit(4)


def _failure(exc: BaseException) -> tuple[str, str]:
    """The --summary status and error of a run that stopped on `exc`."""
    return ("interrupted" if isinstance(exc, Interrupted) else "failed"), getattr(exc, "message", None) or str(exc)


def _run(
    run: LabelRun, label_set: LabelSet, load_scorer: Callable[[], tuple[Scorer, str]], lexicon: bool | None,
    announce: bool = True,
) -> None:
    """Check the input first (no model needed), then load the model and label."""
    report = run.prepare()
    source = run.source.display
    if not report.columns:
        common.warn(f"{source}: the input is empty (no header, no rows); the output will be empty")
    if report.empty_text:
        lines = ", ".join(map(str, report.empty_text_lines)) + (", …" if report.empty_text > len(report.empty_text_lines) else "")
        where = "rows" if run.source.fmt == "parquet" else "lines"
        common.warn(
            f"{source}: {report.empty_text:,} rows have empty or missing text ({where} {lines}); "
            f"they are kept in the output with an empty label"
        )
    scorer, note = load_scorer()
    label_set, lexicon_note = common.apply_lexicon(label_set, lexicon, scorer.prompt is not None)
    run.summary.prompt = note + lexicon_note
    if announce:
        common.info(f"{scorer.backbone.name} ({scorer.backbone.precision}), {note}{lexicon_note}, {len(label_set)} labels")
    with common.row_progress("labelling", total=report.rows) as advance:
        summary = run.execute(scorer, label_set, on_rows=advance)
    where = "stdout" if summary.output == "<stdout>" else summary.output
    resumed = f", resumed at row {summary.resumed_from_row:,}" if summary.resumed_from_row else ""
    common.info(
        f"{summary.rows:,} rows -> {where} ({summary.labelled:,} labelled, {summary.empty_text:,} with empty text"
        f"{resumed}) in {summary.seconds:.1f}s"
    )
    if summary.rejected:
        common.warn(describe_rejects(run.sink, source, run.rejects_path))


def _plan_files(input: str, out: str, fmt: str | None, out_format: str | None, force: bool, resume: bool) -> list[FileJob]:
    """A folder or glob input: one output per file in the --out folder; all checked up front."""
    files, _ = input_files(input, fmt)
    folder = output_folder(out)
    jobs, done = plan_jobs(files, per_file_outputs(files, folder, out_format), force, resume)
    if done:
        common.info(f"--resume: {len(done)} of {len(files)} outputs are complete already and kept")
    folder.mkdir(exist_ok=True)
    return jobs


def _label_files(
    requests: list[RunRequest], options: LabelOptions, label_set: LabelSet,
    load_scorer: Callable[[], tuple[Scorer, str]], lexicon: bool | None, summary_path: str | None,
) -> bool:
    """Label file after file with one loaded model; True when some rows were set aside."""
    load_once = cache(load_scorer)
    summaries: list[dict] = []
    rejected = False
    try:
        for number, request in enumerate(requests):
            with LabelRun(request, options, list(label_set.names)) as run:
                try:
                    _run(run, label_set, load_once, lexicon, announce=number == 0)
                finally:
                    summaries.append(run.summary.as_dict())
                rejected = rejected or run.summary.rejected > 0
    except (RosPromptError, Interrupted, Exception) as exc:
        if summary_path:
            status, error = _failure(exc)
            write_json_atomically(Path(summary_path), combined_summary(summaries, status, error, []), indent=2)
        raise
    if summary_path:
        status = "partial" if rejected else "ok"
        write_json_atomically(Path(summary_path), combined_summary(summaries, status, None, []), indent=2)
    return rejected


def _refuse_for_ray(input: str, out: str, out_format: str | None, on_error: str | None, rejects: str | None,
                    resume: bool, device: str, quantize: str, gpus_per_worker: float | None) -> None:
    """The local engine's options that --engine ray cannot honour, each refused in one line."""
    if input == STDIO:
        raise RosPromptError("--engine ray reads files (a file, folder or glob), not stdin")
    if out == STDIO:
        raise RosPromptError("--engine ray writes Parquet files: give --out FOLDER (shards) or --out FILE.parquet, not stdout")
    if out_format not in (None, "parquet"):
        raise RosPromptError(f"--out-format {out_format}: --engine ray writes Parquet only")
    if on_error == "skip" or rejects:
        raise RosPromptError("--engine ray stops at the first unreadable row; to set bad rows aside use --engine local --on-error skip")
    if resume:
        raise RosPromptError("--resume is for --engine local; a failed Ray run publishes nothing: run it again")
    if device.startswith("cuda") and not gpus_per_worker:
        raise RosPromptError(f"--device {device} with --engine ray needs --gpus-per-worker (a worker sees only the GPUs it reserves)")
    if quantize == "int8" and gpus_per_worker:
        raise RosPromptError("--quantize int8 is for CPU workers; GPU workers use --dtype float16 or bfloat16 instead")


def _label_on_ray(
    input: str, out: str, fmt: str | None, spec: ScorerSpec, cluster: RayRequest, label_set: LabelSet,
    options: LabelOptions, lexicon: bool | None, chunk_rows: int, force: bool, summary_path: str | None,
) -> None:
    """Check the model, prompt and labels here (one line on error, before any cluster work), then
    let the workers label."""
    require_ray()
    input_files(input, fmt)
    check_target(out, force)
    scorer, note = build_scorer(spec.model, "cpu", spec.prompt, spec.use_prompt, spec.max_length, "auto", "none",
                                spec.verbalizer, spec.mlm_options)
    label_set, lexicon_note = common.apply_lexicon(label_set, lexicon, scorer.prompt is not None)
    common.info(f"{scorer.backbone.name}, {note}{lexicon_note}, {len(label_set)} labels; starting Ray workers")
    del scorer
    try:
        result = label_with_ray(input, out, fmt, spec, label_set, options, cluster, chunk_rows, force)
    except (RosPromptError, Interrupted, Exception) as exc:
        if summary_path:
            status, error = _failure(exc)
            failed = RayResult(output=out, files=0, workers=0)
            write_json_atomically(Path(summary_path), as_summary(failed, input, status, error), indent=2)
        raise
    if summary_path:
        write_json_atomically(Path(summary_path), as_summary(result, input), indent=2)
    rate = result.rows / result.seconds if result.seconds > 0 else 0.0
    common.info(
        f"{result.rows:,} rows from {result.files} file(s) -> {result.output} ({result.labelled:,} labelled, "
        f"{result.empty_text:,} with empty text) in {result.seconds:.1f}s, {rate:,.0f} rows/s on {result.workers} worker(s)"
    )
