"""Classification metrics: accuracy, macro-F1, per-label P/R/F1, per-language, confusion, and
the calibration of the predicted label's score."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass


@dataclass
class LabelMetrics:
    label: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass
class ScoreBin:
    """The rows whose predicted label scored in [low, high) (the last bin includes 1.0)."""

    low: float
    high: float
    n: int
    accuracy: float  # of the rows in the bin (0 when empty)
    mean_score: float


@dataclass
class Calibration:
    """Reliability of `score` (the predicted label's probability): accuracy per score bin, and the
    expected calibration error, the row-weighted mean |accuracy - mean score| over the bins."""

    bins: list[ScoreBin]
    ece: float


CALIBRATION_BINS = 10
COVERAGE_THRESHOLDS = tuple(k / 10 for k in range(1, 10))  # the --min-score values eval reports


@dataclass
class CoverageRow:
    """What `label --min-score threshold` would do on these rows: the share of rows that keep a
    label, and how many of those are right."""

    threshold: float
    kept: float
    accuracy: float | None  # None when no row is kept


def coverage(correct: Sequence[bool], scores: Sequence[float],
             thresholds: Sequence[float] = COVERAGE_THRESHOLDS) -> list[CoverageRow]:
    """Risk against coverage: for each threshold on the predicted label's score, the rows kept
    (score >= threshold, as rounded in the output) and their accuracy."""
    rounded = [round(score, 6) for score in scores]
    rows = []
    for threshold in thresholds:
        kept = [ok for ok, score in zip(correct, rounded) if score >= threshold]
        rows.append(CoverageRow(threshold, _safe_div(len(kept), len(correct)),
                                _safe_div(sum(kept), len(kept)) if kept else None))
    return rows


def calibration(correct: Sequence[bool], scores: Sequence[float], bins: int = CALIBRATION_BINS) -> Calibration:
    members: list[list[int]] = [[] for _ in range(bins)]
    for i, score in enumerate(scores):
        members[min(int(score * bins), bins - 1)].append(i)
    out = []
    for b, rows in enumerate(members):
        n = len(rows)
        out.append(ScoreBin(b / bins, (b + 1) / bins, n, _safe_div(sum(correct[i] for i in rows), n),
                            _safe_div(sum(scores[i] for i in rows), n)))
    ece = _safe_div(sum(b.n * abs(b.accuracy - b.mean_score) for b in out), len(scores))
    return Calibration(out, ece)


@dataclass
class Report:
    n: int
    accuracy: float
    macro_f1: float
    per_label: list[LabelMetrics]
    per_language: dict[str, dict[str, float]]
    confusion: dict[str, dict[str, int]]  # gold -> predicted -> count
    labels: list[str]
    calibration: Calibration | None = None  # when the scores are known
    coverage: list[CoverageRow] | None = None  # when the scores are known: what --min-score would keep

    def as_dict(self) -> dict:
        return asdict(self)


def _safe_div(a: float, b: float) -> float:
    return a / b if b else 0.0


def per_label_metrics(gold: Sequence[str], pred: Sequence[str | None], labels: Sequence[str]) -> list[LabelMetrics]:
    tp: Counter = Counter()
    fp: Counter = Counter()
    fn: Counter = Counter()
    for g, p in zip(gold, pred):
        if g == p:
            tp[g] += 1
        else:
            fn[g] += 1
            if p is not None:
                fp[p] += 1
    out = []
    for label in labels:
        precision = _safe_div(tp[label], tp[label] + fp[label])
        recall = _safe_div(tp[label], tp[label] + fn[label])
        f1 = _safe_div(2 * precision * recall, precision + recall)
        out.append(LabelMetrics(label, precision, recall, f1, tp[label] + fn[label]))
    return out


def macro_f1(gold: Sequence[str], pred: Sequence[str | None], labels: Sequence[str]) -> float:
    """Mean F1 over the labels that occur in the gold data (labels never seen gold are skipped)."""
    rows = [m for m in per_label_metrics(gold, pred, labels) if m.support > 0]
    return _safe_div(sum(m.f1 for m in rows), len(rows))


def accuracy(gold: Sequence[str], pred: Sequence[str | None]) -> float:
    return _safe_div(sum(g == p for g, p in zip(gold, pred)), len(gold))


def evaluate_predictions(
    gold: Sequence[str],
    pred: Sequence[str | None],
    labels: Sequence[str],
    languages: Sequence[str] | None = None,
    scores: Sequence[float] | None = None,
) -> Report:
    """`scores`: each row's score of its predicted label, for the calibration."""
    if len(gold) != len(pred):
        raise ValueError("gold and predictions differ in length")
    confusion: dict[str, dict[str, int]] = {g: {p: 0 for p in labels} for g in labels}
    for g, p in zip(gold, pred):
        if g in confusion and p in confusion[g]:
            confusion[g][p] += 1
    per_language: dict[str, dict[str, float]] = {}
    if languages is not None:
        groups: dict[str, list[int]] = defaultdict(list)
        for i, lang in enumerate(languages):
            groups[str(lang)].append(i)
        for lang in sorted(groups):
            g = [gold[i] for i in groups[lang]]
            p = [pred[i] for i in groups[lang]]
            per_language[lang] = {"n": len(g), "accuracy": accuracy(g, p), "macro_f1": macro_f1(g, p, labels)}
    return Report(
        n=len(gold),
        accuracy=accuracy(gold, pred),
        macro_f1=macro_f1(gold, pred, labels),
        per_label=per_label_metrics(gold, pred, labels),
        per_language=per_language,
        confusion=confusion,
        labels=list(labels),
        calibration=None if scores is None else calibration([g == p for g, p in zip(gold, pred)], scores),
        coverage=None if scores is None else coverage([g == p for g, p in zip(gold, pred)], scores),
    )
