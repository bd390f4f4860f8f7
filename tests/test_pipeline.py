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
    reference = json.loads((DATA / "mixed_corpus.reference.json").read_text(encoding="utf-8"))
    out = tmp_path / "out.jsonl"
    args = ["--no-prompt"] if setting == "no-prompt" else []
    cli("label", DATA / "mixed_corpus.jsonl", "--labels", SIB_LABELS, "--all-scores", "--top-k", "2",
        "--chunk-rows", "64", "--out", out, *args)
    got = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    expected = reference[setting]
    assert [row["id"] for row in got] == [row["id"] for row in expected]
    for new, old in zip(got, expected):
        assert (new["label"], new["label_2"]) == (old["label"], old["label_2"]), new["id"]
        for column, value in old.items():
            if column.startswith("score"):
                if value is None:
                    assert new[column] is None
                else:
                    assert abs(new[column] - value) <= SCORE_TOLERANCE, (new["id"], column, new[column], value)
