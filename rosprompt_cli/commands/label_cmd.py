"""`rosprompt label`: add predicted labels to every row of a table."""

from __future__ import annotations

from typing import Annotated

import typer

from rosprompt_cli.commands import common
from rosprompt_cli.io import STDIO, TableWriter, format_from_path, open_source
from rosprompt_cli.labeling import LabelOptions, label_table
from rosprompt_cli.labels import resolve_label_set
from rosprompt_cli.scoring import build_scorer

HELP = (
    "Label every row of INPUT (CSV, TSV, JSONL, Parquet, or - for stdin) with one of the given labels. "
    "The output keeps all input columns in order and adds 'label' and 'score'."
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
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing output file.")] = False,
    model: common.Model = None,
    device: common.Device = "auto",
    batch_size: common.BatchSize = 32,
    max_length: common.MaxLength = None,
) -> None:
    label_set = resolve_label_set(labels, labels_file)
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
    with open_source(input, fmt) as source:
        if out == STDIO:
            out_fmt = out_format or (source.fmt if source.fmt != "parquet" else "jsonl")
            out_fmt = format_from_path(out, out_fmt, what="output")
        else:
            out_fmt = format_from_path(out, out_format, what="output")
        writer = TableWriter(out, out_fmt, force=force)
        try:
            scorer, note = build_scorer(model, device, prompt, not no_prompt, max_length)
            label_set, lexicon_note = common.apply_lexicon(label_set, lexicon, scorer.prompt is not None)
            note += lexicon_note
            common.info(f"{scorer.backbone.name}, {note}, {len(label_set)} labels")
            with common.row_progress("labelling") as advance:
                summary = label_table(source, writer, scorer, label_set, options, on_rows=advance)
        except BaseException:
            writer.abort()
            raise
        writer.commit()
    where = "stdout" if out == STDIO else out
    common.info(
        f"{summary.rows:,} rows -> {where} ({summary.labelled:,} labelled, {summary.empty_text:,} with empty text) "
        f"in {summary.seconds:.1f}s"
    )
