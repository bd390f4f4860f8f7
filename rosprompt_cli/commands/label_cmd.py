"""`rosprompt label`: add predicted labels to every row of a table (job.run_label does the work)."""

from __future__ import annotations

from typing import Annotated

import typer

from rosprompt_cli.input_check import FAIL_ON_UNCLOSED_QUOTE
from rosprompt_cli.adapt import SAMPLE_ROWS
from rosprompt_cli.commands import common
from rosprompt_cli.errors import ExitCode, RosPromptError
from rosprompt_cli.file_run import DEFAULT_CHUNK_ROWS, STDOUT_REJECTS
from rosprompt_cli.formats import STDIO
from rosprompt_cli.frames import MULTI_LABEL_THRESHOLD, LabelOptions
from rosprompt_cli.job import RAY_BATCH_ROWS, LabelJob, files_kept, run_label, write_failed_summary
from rosprompt_cli.labels import resolve_label_set
from rosprompt_cli.ray_engine import RayRequest
from rosprompt_cli.seen import STORE_NAME

_OPTIONS = LabelOptions()  # the library's defaults

HELP = (
    "Label every row of INPUT (CSV, TSV, JSONL, Parquet, - for stdin, or a folder or glob of such files) with "
    "one of the given labels. "
    "The output keeps all input columns in order and adds 'label' and 'score'. Exit codes: 0 ok, 1 error "
    "(nothing published), 4 published but some rows were set aside (--on-error skip), 5 another run holds "
    "the output, 6 published but --summary could not be written, 130/143 interrupted (resumable with --resume)."
)


@common.with_scorer_options()
def label(
    ctx: typer.Context,
    input: Annotated[str, typer.Argument(help="Input file, - for stdin, or a folder or quoted glob of files (one format).", show_default=False)],
    labels: common.Labels = None,
    labels_file: common.LabelsFile = None,
    lexicon: common.Lexicon = None,
    text_col: common.TextCol = _OPTIONS.text_col,
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
    threshold: Annotated[float, typer.Option("--threshold", help="Score threshold for --multi-label (scores are calibrated probabilities).")] = MULTI_LABEL_THRESHOLD,
    min_score: Annotated[
        float | None,
        typer.Option("--min-score", help="A row whose best score is below this keeps its score but gets an empty label "
                     "(null in JSONL and Parquet), to be looked at by a person; --summary counts them. Scores are "
                     "calibrated probabilities: see `eval` for the share of rows kept and their accuracy at each "
                     "threshold. Default: every row gets its best label.", show_default=False),
    ] = None,
    adapt: common.Adapt = False,
    adapt_by: common.AdaptBy = None,
    adapt_sample: common.AdaptSample = SAMPLE_ROWS,
    out_label_col: Annotated[str, typer.Option("--out-label-col", help="Name of the added label column.")] = _OPTIONS.label_col,
    out_score_col: Annotated[str, typer.Option("--out-score-col", help="Name of the added score column.")] = _OPTIONS.score_col,
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
    unclosed_quote: Annotated[
        str,
        typer.Option(
            "--unclosed-quote",
            help="CSV: a quote that is never closed turns every later line into one field. 'fail' stops the run "
            "naming its line; 'reject-line' sets that line aside as a bad row and reads the lines after it as rows.",
        ),
    ] = FAIL_ON_UNCLOSED_QUOTE,
    rejects: Annotated[
        str | None,
        typer.Option(
            "--rejects",
            help="Where --on-error skip writes the rows it set aside (JSONL: line, column, reason, raw text). "
            f"Default: OUT's name with .rejects.jsonl, or ./{STDOUT_REJECTS} when writing to stdout; "
            "only created when a row is set aside.",
            show_default=False,
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Safe to repeat (a cron line): continue an interrupted run on the same --out from its last saved "
            "chunk, start afresh if there is none, do nothing if --out is complete for the same run, label only "
            "the rows added if the input (CSV, TSV, JSONL) grew at its end since; refused if the input changed "
            "otherwise, or the model, prompt, labels or options changed.",
        ),
    ] = False,
    new_only_by: Annotated[
        str | None,
        typer.Option(
            "--new-only-by",
            help="A feed fetched again and again: label only the rows whose key in column COL (an item's URL or "
            "guid) no earlier run has labelled, and write only those; the rows skipped are counted (--summary: "
            "skipped_seen). A row with an empty key is set aside. The keys are kept in an SQLite file shared by "
            f"every output written to the same folder ({STORE_NAME} there) or in --seen-store. Default: every "
            "row is labelled and written.",
            show_default=False, metavar="COL",
        ),
    ] = None,
    seen_store: Annotated[
        str | None,
        typer.Option("--seen-store", help=f"--new-only-by: the SQLite file of keys. Default: {STORE_NAME} in the "
                     "--out folder.", show_default=False, metavar="FILE"),
    ] = None,
    chunk_rows: Annotated[
        int | None,
        typer.Option(
            "--chunk-rows",
            help="Rows read, labelled and saved per chunk: the memory bound, and the unit --resume continues from. "
            "With --engine ray: the rows of one batch handed to a worker (smaller batches spread a small input "
            f"over more workers). Default: {DEFAULT_CHUNK_ROWS} (--engine ray: {RAY_BATCH_ROWS}).",
            show_default=False,
        ),
    ] = None,
    summary_path: Annotated[
        str | None,
        typer.Option("--summary", help="Write a JSON run summary here (rows read, labelled, rejected by reason, time, throughput, label counts, model, prompt, versions), also when the run fails. Default: none.", show_default=False),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing output (and rejects) file.")] = False,
    batch_size: common.ScoreBatchSize = None,
    max_batch_tokens: common.MaxBatchTokens = None,
    max_length: common.MaxLength = None,
    scorer_options: common.ScorerOptions = common.ScorerOptions(),  # --model … --word-pieces (common.py)
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
    progress_every: common.ProgressEvery = None,
) -> None:
    try:
        job = LabelJob(
            input=input,
            labels=resolve_label_set(labels, labels_file),
            out=out,
            scorer=scorer_options.spec(prompt, no_prompt, max_length),
            options=LabelOptions(text_col=text_col, batch_size=batch_size, max_batch_tokens=max_batch_tokens, top_k=top_k, multi_label=multi_label,
                                 threshold=threshold, min_score=min_score, all_scores=all_scores, label_col=out_label_col,
                                 score_col=out_score_col, adapt=common.adapt_options(adapt, adapt_by, adapt_sample)),
            lexicon=lexicon, fmt=fmt, out_format=out_format, on_error=on_error, unclosed_quote=unclosed_quote, rejects=rejects,
            resume=resume,
            force=force, chunk_rows=chunk_rows, summary=summary_path, engine=engine, new_only_by=new_only_by,
            seen_store=seen_store,
            cluster=RayRequest(address=ray_address, num_workers=num_workers, gpus_per_worker=gpus_per_worker,
                               cpus_per_worker=cpus_per_worker),
        )
    except RosPromptError as exc:
        # a monitor reads the failure, never over a file the run reads or keeps
        write_failed_summary(summary_path, input, out, rejects, exc, files_kept(labels_file, prompt, seen_store))
        raise
    result = run_label(job, common.Renderer(progress_every), common.scorer_source(ctx))
    if result.rejected:
        raise typer.Exit(ExitCode.REJECTED)
