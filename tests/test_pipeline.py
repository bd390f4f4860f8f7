"""The label pipeline (issue 34): the same labels and scores as before it, on a corpus of mixed
lengths and languages (blank rows, one-word rows, rows past the model's limit), in chunks."""

from __future__ import annotations

import json

import pytest

from conftest import REPO, SIB_LABELS

DATA = REPO / "tests" / "data"
# Scores may move in the last float bits (batches are cut by tokens, and scored a chunk at a time);
# the labels may not move at all.
SCORE_TOLERANCE = 1e-5


@pytest.mark.parametrize("setting", ["shipped-prompt", "no-prompt"])
def test_labels_and_scores_are_those_of_the_code_before_the_pipeline(cli, tmp_path, setting):
    """The reference predates calibration (issue 30): its scores are the plain softmax p. The
    run's are softmax(logits / T) with the T it reports, which is p ** (1 / T), normalised over
    the labels: the reference's --all-scores give the expected calibrated scores."""
    reference = json.loads((DATA / "mixed_corpus.reference.json").read_text(encoding="utf-8"))
    out, summary = tmp_path / "out.jsonl", tmp_path / "run.json"
    args = ["--no-prompt"] if setting == "no-prompt" else []
    cli("label", DATA / "mixed_corpus.jsonl", "--labels", SIB_LABELS, "--all-scores", "--top-k", "2",
        "--chunk-rows", "64", "--out", out, "--summary", summary, *args)
    got = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    temperature = json.loads(summary.read_text())["calibration"]["temperature"]
    expected = [_calibrated(row, temperature) for row in reference[setting]]
    assert [row["id"] for row in got] == [row["id"] for row in expected]
    for new, old in zip(got, expected):
        assert (new["label"], new["label_2"]) == (old["label"], old["label_2"]), new["id"]
        for column, value in old.items():
            if column.startswith("score"):
                if value is None:
                    assert new[column] is None
                else:
                    assert abs(new[column] - value) <= SCORE_TOLERANCE, (new["id"], column, new[column], value)


def _calibrated(row: dict, temperature: float) -> dict:
    """A reference row's scores as the calibration with `temperature` makes them."""
    names = [f"score_{name}" for name in SIB_LABELS.split(",")]
    if row[names[0]] is None:
        return row
    powered = {name: row[name] ** (1 / temperature) for name in names}
    total = sum(powered.values())
    out = row | {name: value / total for name, value in powered.items()}
    ranked = sorted(names, key=lambda name: -out[name])
    out["score"], out["score_2"] = out[ranked[0]], out[ranked[1]]
    return out
