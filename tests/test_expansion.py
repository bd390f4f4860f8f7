"""The NPPrompt expansion and class aggregation on numbers checked by hand."""

from __future__ import annotations

import math

import pytest
import torch

from rosprompt_cli.errors import RosPromptError
from rosprompt_cli.verbalizers.expansion import WordExpansion, aggregate_words, nearest_tokens

# Five tokens in 2-D; the rows have different lengths, so cosine is not the plain dot product.
EMBEDDINGS = torch.tensor([[2.0, 0.0], [0.8, 0.6], [0.0, 3.0], [-1.0, 0.0], [0.6, 0.8]])


def test_neighbours_and_weights_match_the_hand_computation():
    cosines, ids = nearest_tokens(torch.tensor([[5.0, 0.0]]), EMBEDDINGS, k=3)
    # cosines to (1, 0): 1, 0.8, 0, -1, 0.6 -> top 3: tokens 0, 1, 4
    assert ids.tolist() == [[0, 1, 4]]
    assert cosines[0].tolist() == pytest.approx([1.0, 0.8, 0.6])
    weights = torch.softmax(cosines, dim=-1)[0].tolist()
    total = math.e**1.0 + math.e**0.8 + math.e**0.6
    assert weights == pytest.approx([math.e**1.0 / total, math.e**0.8 / total, math.e**0.6 / total])
    assert weights == pytest.approx([0.40176, 0.32893, 0.26931], abs=1e-5)


def test_excluded_tokens_are_never_neighbours():
    _, ids = nearest_tokens(torch.tensor([[1.0, 0.0]]), EMBEDDINGS, k=3, excluded=[0])
    assert ids.tolist() == [[1, 4, 2]]


def test_word_and_class_scores_match_the_hand_computation():
    cosines, ids = nearest_tokens(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.1]]), EMBEDDINGS, k=2)
    # word 0 -> tokens 0 (cos 1), 1 (0.8); word 1 -> 2 (1), 4 (0.8); word 2 -> 3 (~0.995), 2 (~0.0995)
    assert ids.tolist() == [[0, 1], [2, 4], [3, 2]]
    expansion = WordExpansion(ids, torch.softmax(cosines, -1), cosines, torch.tensor([0, 1, 1]), ["eng_Latn"] * 3, 2)
    logits = torch.tensor([[2.0, 1.0, 0.0, 5.0, -1.0]])
    w = 1 / (1 + math.exp(-0.2))  # softmax([1, 0.8]) puts this on the first
    w2 = torch.softmax(cosines[2], -1).tolist()
    word = expansion.word_scores(logits)[0].tolist()
    assert word == pytest.approx([w * 2 + (1 - w) * 1, w * 0 + (1 - w) * -1, w2[0] * 5 + w2[1] * 0], abs=1e-6)
    assert expansion.class_scores(expansion.word_scores(logits))[0].tolist() == pytest.approx([word[0], max(word[1:])])
    expansion.aggregate = "mean"
    assert expansion.class_scores(expansion.word_scores(logits))[0].tolist() == pytest.approx(
        [word[0], (word[1] + word[2]) / 2]
    )


def test_aggregation_with_dropped_words_never_empties_a_class():
    scores = torch.tensor([[1.0, 4.0, 2.0, 3.0]])
    owner = torch.tensor([0, 0, 1, 1])
    keep = torch.tensor([True, False, False, False])  # class 1 lost every word: it keeps them all
    assert aggregate_words(scores, owner, 2, "max", keep).tolist() == [[1.0, 3.0]]
    assert aggregate_words(scores, owner, 2, "mean", keep).tolist() == [[1.0, 2.5]]
    assert aggregate_words(scores, owner, 2, "max").tolist() == [[4.0, 3.0]]


def test_max_aggregation_passes_gradients_to_the_best_word_only():
    scores = torch.tensor([[1.0, 4.0, 2.0]], requires_grad=True)
    aggregate_words(scores, torch.tensor([0, 0, 1]), 2, "max").sum().backward()
    assert scores.grad.tolist() == [[0.0, 1.0, 1.0]]


def test_bad_choices_are_refused():
    with pytest.raises(RosPromptError, match="--aggregate"):
        aggregate_words(torch.zeros(1, 2), torch.tensor([0, 1]), 2, "median")
    with pytest.raises(RosPromptError, match="--neighbours"):
        nearest_tokens(torch.ones(1, 2), EMBEDDINGS, k=6)
