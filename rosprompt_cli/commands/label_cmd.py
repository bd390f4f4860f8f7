"""`rosprompt label`: add predicted labels to every row of a table."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
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
from rosprompt_cli.scorers import Scorer, build_scorer, check_choices

HELP = (
    "Label every row of INPUT (CSV, TSV, JSONL, Parquet, or - for stdin) with one of the given labels. "
    "The output keeps all input columns in order and adds 'label' and 'score'. Exit codes: 0 ok, 1 error "
    "(nothing published), 4 published but some rows were set aside (--on-error skip), 5 another run holds "
    "the output, 130/143 interrupted (resumable with --resume)."
)


def label(
    input: Annotated[str, typer.Argument(help="Input file, or - for stdin.", show_default=False)],
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
        str,
        typer.Option(
            "--on-error",
            help="A row that cannot be read (bad JSON, wrong number of CSV fields, bytes that are not UTF-8): "
            "'skip' sets it aside in the rejects file and labels the rest (exit code 4); 'fail' stops at the "
            "first one, before any labelling, naming its line.",
        ),
    ] = "skip",
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
        int, typer.Option("--chunk-rows", help="Rows read, labelled and saved per chunk: the memory bound, and the unit --resume continues from.")
    ] = 2048,
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
) -> None:
    if summary_path and not Path(summary_path).resolve().parent.is_dir():
        raise RosPromptError(f"--summary {summary_path}: folder {Path(summary_path).parent} does not exist")
    label_set = resolve_label_set(labels, labels_file)
    # before the input pre-pass, which may take a while
    check_placement(device, dtype, quantize)
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
    request = RunRequest(
        input=input, out=out, fmt=fmt, out_format=out_format, on_error=on_error, rejects=rejects, force=force,
        resume=resume, chunk_rows=chunk_rows,
    )
    with LabelRun(request, options, list(label_set.names)) as run:
        try:
            load_scorer = partial(build_scorer, model, device, prompt, not no_prompt, max_length, dtype, quantize,
                                  verbalizer, mlm_options)
            _run(run, label_set, load_scorer, lexicon)
        except (RosPromptError, Interrupted, Exception) as exc:
            if summary_path:
                run.summary.status = "interrupted" if isinstance(exc, Interrupted) else "failed"
                run.summary.error = getattr(exc, "message", None) or str(exc)
                run.summary.write(summary_path)
            raise
        if summary_path:
            run.summary.write(summary_path)
    if run.summary.rejected:
        raise typer.Exit(4)


def _run(
    run: LabelRun, label_set: LabelSet, load_scorer: Callable[[], tuple[Scorer, str]], lexicon: bool | None
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
