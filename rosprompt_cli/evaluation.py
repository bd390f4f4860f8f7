"""`eval`: label gold-labelled examples and compare.

`evaluate` scores labelled data with a scorer under the same rules as the CLI: every gold label
must be in the label set, and the lexicon default of spec.label_set_for applies. `run_eval` is
the whole `rosprompt eval` (load the data, build the scorer, evaluate, write the metrics).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rosprompt_cli.adapt import AdaptOptions, Centres, estimate_centres, refuse_adapt
from rosprompt_cli.batching import Batching
from rosprompt_cli.errors import RosPromptError, write_failed
from rosprompt_cli.events import OnEvent, RowsDone, RowsFinished, RowsStarted, ignore, info
from rosprompt_cli.examples import LabelledData, load_labelled
from rosprompt_cli.calibration import NONE as NO_CALIBRATION
from rosprompt_cli.calibration import Calibration, check_rows_to_fit
from rosprompt_cli.calibration import fit as fit_calibration
from rosprompt_cli.frames import batching_for, text_vectors_in_order
from rosprompt_cli.labels import LabelSet
from rosprompt_cli.metrics import Report, evaluate_predictions
from rosprompt_cli.paths import check_file_to_write, refuse_shared_paths, write_text_atomically
from rosprompt_cli.pipeline import ChunkScores, score_chunk, scores_of
from rosprompt_cli.prompt import SoftPrompt
from rosprompt_cli.report import ReportContext, render_report
from rosprompt_cli.spec import ScorerFactory, ScorerSpec, label_set_for, scorer_for

if TYPE_CHECKING:
    import torch

    from rosprompt_cli.verbalizers.base import Scorer

EVAL_SPLITS = ("test", "validation", "dev")  # a dataset's split to evaluate on, in order of preference


def predict(
    scorer: Scorer, texts: list[str], label_set: LabelSet, batch_size: int | None = None,
    max_batch_tokens: int | None = None,
) -> list[str]:
    """The best label of each text, scored with exactly the names of `label_set`."""
    return predict_with_scores(scorer, texts, label_set, batch_size, max_batch_tokens)[0]


def predict_with_scores(
    scorer: Scorer, texts: list[str], label_set: LabelSet, batch_size: int | None = None,
    max_batch_tokens: int | None = None, on_rows: Callable[[int], None] | None = None,
) -> tuple[list[str], list[float]]:
    """The best label of each text and its score (the `score` column `label` writes)."""
    scores = score_chunk(scorer, scorer.encode(texts), scorer.label_vectors(label_set),
                         batching_for(scorer, batch_size, max_batch_tokens), on_batch=on_rows)
    return _best(scores, label_set)


def _best(scores: ChunkScores, label_set: LabelSet) -> tuple[list[str], list[float]]:
    names = label_set.names
    return [names[j] for j in scores.top_i[:, 0].tolist()], scores.top_p[:, 0].tolist()


def check_gold_labels(data: LabelledData, label_set: LabelSet) -> None:
    missing = sorted(set(data.labels) - set(label_set.names))
    if missing:
        raise RosPromptError(
            f"{data.source}: gold labels {missing} are not among the labels to score ({', '.join(label_set.names)})"
        )


def evaluate(
    scorer: Scorer, data: LabelledData, label_set: LabelSet, batch_size: int | None = None,
    lexicon: bool | None = None, adapt: AdaptOptions | None = None, groups: Sequence[str] | None = None,
    max_batch_tokens: int | None = None,
) -> Report:
    """Accuracy, macro-F1, per-label and per-language metrics of `scorer` on `data`. `lexicon`:
    None for the default (lexicon names only without a prompt), as the CLI. `adapt`: centre the
    text vectors on `data` (adapt.py), per value of `groups` (one per row) when adapt.by is set."""
    check_gold_labels(data, label_set)
    scored, _ = label_set_for(scorer, label_set, lexicon)
    return _report(scorer, data, scored, batching_for(scorer, batch_size, max_batch_tokens), adapt, groups)[0]


def _report(
    scorer: Scorer, data: LabelledData, scored: LabelSet, batching: Batching,
    adapt: AdaptOptions | None = None, groups: Sequence[str] | None = None,
    on_rows: Callable[[int], None] | None = None,
) -> tuple[Report, Centres | None, np.ndarray]:
    """The metrics, the --adapt centres (None without --adapt), and the rows' logits before
    calibration (what eval --calibrate fits on)."""
    if adapt is None:
        scores = score_chunk(scorer, scorer.encode(data.texts), scorer.label_vectors(scored), batching,
                             on_batch=on_rows)
        return _report_of(scores, data, scored), None, scores.logits
    refuse_adapt(scorer)
    vectors = text_vectors_in_order(scorer, data.texts, batching, on_rows)
    scores, centres = _adapted_scores(scorer, vectors, data, scored, adapt, groups)
    return _report_of(scores, data, scored), centres, scores.logits


def _report_of(scores: ChunkScores, data: LabelledData, scored: LabelSet) -> Report:
    predictions, best = _best(scores, scored)
    return evaluate_predictions(data.labels, predictions, scored.names, data.languages, best)


def _adapted_scores(
    scorer: Scorer, vectors: torch.Tensor, data: LabelledData, scored: LabelSet, adapt: AdaptOptions,
    groups: Sequence[str] | None = None,
) -> tuple[ChunkScores, Centres]:
    import torch  # here, not at the top: EvalJob reads without torch (a command's --help)

    if adapt.by is not None and groups is None:
        raise ValueError("adapt.by needs the rows' groups")
    row_groups = [adapt.group_of(g) for g in groups] if adapt.by is not None and groups is not None else (
        [adapt.group_of(None)] * len(data))
    centres = estimate_centres(row_groups, adapt, lambda rows: vectors[rows].numpy())
    label_vectors = scorer.label_vectors(scored)
    centred = centres.centre(vectors, row_groups).to(device=label_vectors.device, dtype=label_vectors.dtype)
    with torch.inference_mode():
        return scores_of(scorer, scorer.logits(centred, label_vectors), centred=centres.moves(row_groups)), centres


def adapted_report(
    scorer: Scorer, vectors: torch.Tensor, data: LabelledData, scored: LabelSet, adapt: AdaptOptions,
    groups: Sequence[str] | None = None,
) -> tuple[Report, Centres]:
    """The metrics with --adapt, from the rows' text vectors [N, H] (text_vectors_in_order), so
    that several adaptations of one corpus need one forward pass (bench/adapt_sib200.py)."""
    scores, centres = _adapted_scores(scorer, vectors, data, scored, adapt, groups)
    return _report_of(scores, data, scored), centres


@dataclass(frozen=True)
class EvalJob:
    """One `rosprompt eval`: labelled input (a table file, a datasets save_to_disk folder, or
    hf:NAME[:split]), its columns, the labels (None: the gold labels), the scorer, where to
    write the metrics as JSON and the HTML report (None: nowhere), and the command line the
    report names."""

    input: str
    text_col: str = "text"
    label_col: str = "label"
    lang_col: str | None = None
    labels: LabelSet | None = None
    scorer: ScorerSpec = field(default_factory=ScorerSpec)
    lexicon: bool | None = None
    batch_size: int | None = None
    max_batch_tokens: int | None = None
    fmt: str | None = None
    split: str | None = None
    output: str | None = None
    report: str | None = None
    command: str = ""
    adapt: AdaptOptions | None = None
    calibrate: str | None = None  # eval --calibrate --out-prompt FILE: the calibrated prompt is written here

    def __post_init__(self) -> None:
        # what eval writes must not replace what it reads, nor one the other
        refuse_shared_paths({"the input": self.input, "--output": self.output, "--report": self.report,
                             "--out-prompt": self.calibrate, "--prompt": self.scorer.prompt})
        if self.calibrate is not None:
            if not self.scorer.use_prompt:
                raise RosPromptError("--calibrate stores the calibration in a prompt file: use it with a prompt "
                                     "(--prompt FILE, or the shipped one), not --no-prompt")
        for option, path, what in (("--output", self.output, "the metrics"), ("--report", self.report, "the report"),
                                   ("--out-prompt", self.calibrate, "the calibrated prompt")):
            if path is not None:
                check_file_to_write(option, path, what)


@dataclass(frozen=True)
class EvalResult:
    report: Report
    source: str  # the input as shown to the user
    note: str  # which prompt, and whether lexicon names were used
    model: str
    calibration: Calibration = NO_CALIBRATION  # how the scores were calibrated
    fitted: Calibration | None = None  # eval --calibrate: the calibration fitted on these rows

    def as_dict(self) -> dict:
        fitted = {} if self.fitted is None else {"fitted_calibration": self.fitted.as_dict()}
        # "calibration" is the report's: how reliable the scores were on these rows
        return self.report.as_dict() | {"input": self.source, "prompt": self.note, "model": self.model,
                                        "score_calibration": self.calibration.as_dict()} | fitted


def run_eval(job: EvalJob, on_event: OnEvent = ignore, scorer: Scorer | ScorerFactory | None = None) -> EvalResult:
    """The whole `rosprompt eval`. `scorer`: a scorer already built (used in place of
    `job.scorer`), or a factory such as a spec.ScorerCache; None builds one after the data and
    labels are checked."""
    data = load_labelled(job.input, job.text_col, job.label_col, job.lang_col, job.fmt, job.split, EVAL_SPLITS)
    label_set = job.labels or LabelSet.from_names(sorted(data.label_names()))
    check_gold_labels(data, label_set)  # before the model loads
    label_set.require_choice("every row would be predicted right (accuracy 1.0); name other labels with --labels")
    if job.calibrate is not None:
        check_rows_to_fit(len(data), data.source)
    groups = None  # the rows' --adapt-by values, read before the model loads
    if job.adapt is not None and job.adapt.by is not None:
        groups = data.languages if job.adapt.by == job.lang_col else load_labelled(
            job.input, job.text_col, job.label_col, job.adapt.by, job.fmt, job.split, EVAL_SPLITS).languages
    scorer = scorer_for(job.scorer, scorer)
    if job.adapt is not None:
        refuse_adapt(scorer)
    scored, lexicon_note = label_set_for(scorer, label_set, job.lexicon)
    note = scorer.prompt_note + lexicon_note
    info(on_event, f"{scorer.backbone.name} ({scorer.backbone.execution}), {note}, {len(scored)} labels, "
                   f"{len(data):,} rows; {scorer.calibration.note}")
    batching = batching_for(scorer, job.batch_size, job.max_batch_tokens)
    on_event(RowsStarted("scoring", len(data)))
    try:
        report, centres, logits = _report(scorer, data, scored, batching, job.adapt, groups,
                                          on_rows=lambda n: on_event(RowsDone(n)))
    finally:
        on_event(RowsFinished())
    if centres is not None:
        note += f", {centres.summary()}"
    fitted = (_calibrate(scorer, logits, data, scored, job.calibrate, job.adapt is not None, report, on_event)
              if job.calibrate else None)
    result = EvalResult(report, data.source, note, scorer.backbone.name, scorer.calibration, fitted)
    if job.output:
        _write(job.output, json.dumps(result.as_dict(), indent=2, ensure_ascii=False) + "\n")
        info(on_event, f"metrics written to {job.output}")
    if job.report:
        context = ReportContext(result.source, result.model, result.note, job.command)
        _write(job.report, render_report(result.report, result.as_dict(), context))
        info(on_event, f"report written to {job.report}")
    return result


def _calibrate(scorer: Scorer, logits: np.ndarray, data: LabelledData, scored: LabelSet, out: str, adapted: bool,
               report: Report, on_event: OnEvent) -> Calibration:
    """eval --calibrate: fit the calibration on these rows and write the prompt with it. With
    --adapt (`adapted`) the logits are of centred vectors: only the --adapt temperature is fitted
    and the prompt's plain one is kept."""
    index = {name: i for i, name in enumerate(scored.names)}
    fitted = fit_calibration(logits, np.array([index[label] for label in data.labels]),
                             f"{data.source}, {len(data):,} rows, {len(scored)} labels")
    assert scorer.prompt is not None  # EvalJob refuses --calibrate with --no-prompt
    stored = (replace(scorer.calibration, adapted_temperature=fitted.temperature) if adapted
              else replace(fitted, adapted_temperature=scorer.calibration.adapted_temperature))
    calibrated = SoftPrompt(scorer.prompt.vectors, replace(scorer.prompt.meta, calibration=stored.as_dict()))
    try:
        calibrated.save(out)
    except OSError as exc:
        raise write_failed(out, exc) from exc
    which = "the --adapt temperature" if adapted else "calibration"
    before = report.calibration.ece if report.calibration is not None else fitted.ece_before
    info(on_event, f"{which} fitted on {fitted.rows:,} rows: T={fitted.temperature:.3f}, expected calibration "
                   f"error {before:.3f} (as the prompt was) -> {fitted.ece_after:.3f}; calibrated prompt written to "
                   f"{out}")
    return fitted


def _write(path: str, text: str) -> None:
    try:
        write_text_atomically(Path(path), text)
    except OSError as exc:
        raise write_failed(path, exc) from exc
