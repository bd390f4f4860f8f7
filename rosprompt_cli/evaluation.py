"""`eval`: label a gold-labelled table and compare."""

from __future__ import annotations

from rosprompt_cli.labelled import LabelledData
from rosprompt_cli.labeling import score_texts
from rosprompt_cli.labels import LabelSet
from rosprompt_cli.metrics import Report, evaluate_predictions
from rosprompt_cli.scorers import Scorer


def predict(
    scorer: Scorer, texts: list[str], label_set: LabelSet, batch_size: int | None = None
) -> list[str]:
    probs = score_texts(scorer, texts, scorer.label_vectors(label_set), batch_size)
    names = label_set.names
    return [names[j] for j in probs.argmax(-1).tolist()]


def evaluate(
    scorer: Scorer, data: LabelledData, label_set: LabelSet, batch_size: int | None = None
) -> Report:
    """Accuracy, macro-F1, per-label and per-language metrics of `scorer` on `data`."""
    predictions = predict(scorer, data.texts, label_set, batch_size)
    return evaluate_predictions(data.labels, predictions, label_set.names, data.languages)
