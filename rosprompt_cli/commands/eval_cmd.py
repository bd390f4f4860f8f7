"""`rosprompt eval`: accuracy, macro-F1, per-label, per-language and confusion on gold labels."""

from __future__ import annotations

import shlex
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from rosprompt_cli.adapt import SAMPLE_ROWS
from rosprompt_cli.commands import common
from rosprompt_cli.errors import RosPromptError
from rosprompt_cli.evaluation import EvalJob, run_eval
from rosprompt_cli.labels import resolve_label_set
from rosprompt_cli.metrics import Report

_JOB_DEFAULTS = common.field_defaults(EvalJob)

HELP = (
    "Evaluate on gold-labelled INPUT (a table file, a datasets save_to_disk folder, or hf:NAME[:split]); "
    "prints accuracy, macro-F1, per-label and per-language tables and a confusion matrix."
)


def _tables(report: Report, title: str) -> list[Table]:
    summary = Table(title=title)
    summary.add_column("rows", justify="right")
    summary.add_column("accuracy", justify="right")
    summary.add_column("macro-F1", justify="right")
    summary.add_row(str(report.n), f"{report.accuracy:.4f}", f"{report.macro_f1:.4f}")

    per_label = Table(title="per label")
    for col in ("label", "precision", "recall", "F1", "support"):
        per_label.add_column(col, justify="left" if col == "label" else "right")
    for m in report.per_label:
        per_label.add_row(m.label, f"{m.precision:.3f}", f"{m.recall:.3f}", f"{m.f1:.3f}", str(m.support))
    tables = [summary, per_label]

    if report.per_language:
        per_lang = Table(title="per language")
        for col in ("language", "rows", "accuracy", "macro-F1"):
            per_lang.add_column(col, justify="left" if col == "language" else "right")
        for lang, m in report.per_language.items():
            per_lang.add_row(lang or "(empty)", str(int(m["n"])), f"{m['accuracy']:.4f}", f"{m['macro_f1']:.4f}")
        tables.append(per_lang)

    if report.calibration is not None and report.coverage is not None:
        kept = Table(title=f"what --min-score keeps (scores' expected calibration error {report.calibration.ece:.3f})")
        for col in ("--min-score", "rows kept", "accuracy of kept rows"):
            kept.add_column(col, justify="right")
        for row in report.coverage:
            accuracy = "-" if row.accuracy is None else f"{row.accuracy:.3f}"
            kept.add_row(f"{row.threshold:.1f}", f"{row.kept:.1%}", accuracy)
        tables.append(kept)

    confusion = Table(title="confusion (rows: gold, columns: predicted)")
    confusion.add_column("gold \\ pred")
    for label in report.labels:
        confusion.add_column(label, justify="right")
    for gold in report.labels:
        confusion.add_row(gold, *(str(report.confusion[gold][p]) for p in report.labels))
    tables.append(confusion)
    return tables


def _calibrate_to(calibrate: bool, out_prompt: str | None) -> str | None:
    if calibrate and out_prompt is None:
        raise RosPromptError("--calibrate writes the calibrated prompt: give --out-prompt FILE.safetensors")
    if out_prompt is not None and not calibrate:
        raise RosPromptError("--out-prompt is where --calibrate writes the calibrated prompt: add --calibrate")
    return out_prompt if calibrate else None


@common.with_scorer_options()
def evaluate(
    ctx: typer.Context,
    input: Annotated[str, typer.Argument(help="Labelled input: file, datasets folder, or hf:NAME[:split].", show_default=False)],
    labels: common.Labels = None,
    labels_file: common.LabelsFile = None,
    lexicon: common.Lexicon = None,
    text_col: common.TextCol = _JOB_DEFAULTS["text_col"],
    label_col: Annotated[str, typer.Option("--label-col", help="Column holding the gold label.")] = _JOB_DEFAULTS["label_col"],
    lang_col: Annotated[
        str | None, typer.Option("--lang-col", help="Column holding the language, for per-language accuracy. Default: none.", show_default=False)
    ] = None,
    prompt: common.PromptPath = None,
    no_prompt: common.NoPrompt = False,
    output: Annotated[
        str | None, typer.Option("--output", help="Also write the metrics as JSON to this file. Default: tables only.", show_default=False)
    ] = None,
    report: Annotated[
        str | None,
        typer.Option(
            "--report",
            help="Also write a self-contained HTML report to this file (opens offline): headline numbers, accuracy "
            "per language by family, per-label precision/recall/F1, the confusion matrix and the score's "
            "reliability. Default: none.",
            show_default=False,
        ),
    ] = None,
    calibrate: Annotated[
        bool,
        typer.Option("--calibrate", help="Fit the calibration of the scores on these labelled rows (their label set "
                     "and texts; at least 50 rows) and write the prompt with it to --out-prompt; prints the expected "
                     "calibration error before and after."),
    ] = False,
    out_prompt: Annotated[
        str | None,
        typer.Option("--out-prompt", help="With --calibrate: where to write the calibrated prompt (.safetensors). "
                     "Default: none.", show_default=False),
    ] = None,
    adapt: common.Adapt = False,
    adapt_by: common.AdaptBy = None,
    adapt_sample: common.AdaptSample = SAMPLE_ROWS,
    fmt: common.Format = None,
    split: common.Split = None,
    batch_size: common.ScoreBatchSize = None,
    max_batch_tokens: common.MaxBatchTokens = None,
    max_length: common.MaxLength = None,
    scorer_options: common.ScorerOptions = common.ScorerOptions(),  # --model … --word-pieces (common.py)
    progress_every: common.ProgressEvery = None,
) -> None:
    job = EvalJob(
        input=input, text_col=text_col, label_col=label_col, lang_col=lang_col,
        labels=resolve_label_set(labels, labels_file) if labels or labels_file else None,
        scorer=scorer_options.spec(prompt, no_prompt, max_length),
        lexicon=lexicon, batch_size=batch_size, max_batch_tokens=max_batch_tokens, fmt=fmt, split=split, output=output, report=report,
        command=shlex.join(["rosprompt", *sys.argv[1:]]),
        adapt=common.adapt_options(adapt, adapt_by, adapt_sample),
        calibrate=_calibrate_to(calibrate, out_prompt),
    )
    result = run_eval(job, common.Renderer(progress_every), common.scorer_source(ctx))
    console = Console()
    for table in _tables(result.report, f"{result.source} ({result.note})"):
        console.print(table)
