"""Each RoSPrompt loss term on tiny examples checked by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from rosprompt_cli.objective import (
    kl_to_zero_shot,
    l2_to_init,
    language_dropout_mask,
    language_loss_variance,
    smoothed_targets,
    soft_cross_entropy,
)
from rosprompt_cli.verbalizers.label_vectors import class_vectors, group_ids

SIM = torch.tensor([[1.0, 0.6, 0.2], [0.6, 1.0, -0.1], [0.2, -0.1, 1.0]])


def test_smoothing_mass_follows_label_similarity():
    q = smoothed_targets(torch.tensor([0, 1]), SIM, epsilon=0.2)
    # gold 0: others .6 and .2 -> shares .75/.25 of ε=.2; gold 1: only class 0 is similar (-.1 -> 0)
    assert torch.allclose(q, torch.tensor([[0.8, 0.15, 0.05], [0.2, 0.8, 0.0]]))
    assert torch.allclose(q.sum(1), torch.ones(2))


def test_smoothing_never_feeds_open_world_negatives_and_falls_back_to_uniform():
    q = smoothed_targets(torch.tensor([0]), SIM, epsilon=0.2, n_targets=2)
    assert torch.allclose(q, torch.tensor([[0.8, 0.2, 0.0]]))
    dissimilar = torch.tensor([[1.0, -0.5, -0.1], [-0.5, 1.0, 0.0], [-0.1, 0.0, 1.0]])
    q = smoothed_targets(torch.tensor([0]), dissimilar, epsilon=0.2)
    assert torch.allclose(q, torch.tensor([[0.8, 0.1, 0.1]]))


def test_soft_cross_entropy_with_one_hot_is_cross_entropy():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]])
    gold = torch.tensor([0, 2])
    one_hot = F.one_hot(gold, 3).float()
    assert soft_cross_entropy(logits, one_hot).item() == pytest.approx(F.cross_entropy(logits, gold).item())


def test_kl_to_zero_shot():
    # p = [.5, .5], q = [.75, .25]: KL = .5 ln(.5/.75) + .5 ln(.5/.25) = .5 ln(4/3)
    value = kl_to_zero_shot(torch.tensor([[0.0, 0.0]]), torch.tensor([[math.log(3.0), 0.0]]))
    assert value.item() == pytest.approx(0.5 * math.log(4 / 3), abs=1e-6)
    assert kl_to_zero_shot(torch.tensor([[1.0, 2.0]]), torch.tensor([[1.0, 2.0]])).item() == pytest.approx(0.0, abs=1e-7)


def test_variance_of_the_loss_across_label_languages():
    # language A scores [0, 0] (CE ln 2); language B scores [ln 3, 0] (CE -ln .75); gold 0
    logits = torch.tensor([[[0.0, 0.0]], [[math.log(3.0), 0.0]]])
    expected = ((math.log(2) + math.log(0.75)) / 2) ** 2
    assert language_loss_variance(logits, torch.tensor([0])).item() == pytest.approx(expected, abs=1e-6)


def test_class_vectors_with_language_dropout():
    names = torch.eye(3)
    owner = torch.tensor([0, 0, 1])
    full = class_vectors(names, owner, 2)
    assert torch.allclose(full, torch.tensor([[0.70710677, 0.70710677, 0.0], [0.0, 0.0, 1.0]]))
    # class 1's only name is dropped: it keeps it rather than vanish
    dropped = class_vectors(names, owner, 2, keep=torch.tensor([True, False, False]))
    assert torch.allclose(dropped, torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))


def test_language_centred_class_vectors():
    # Two classes named in language A (rows 0, 1) and B (rows 2, 3); each language adds its own
    # offset (dimension 2 for A, 3 for B), which centring removes exactly.
    names = torch.tensor([
        [1.0, 0.0, 1.0, 0.0],  # class 0, language A
        [0.0, 1.0, 1.0, 0.0],  # class 1, language A
        [1.0, 0.0, 0.0, 3.0],  # class 0, language B
        [0.0, 1.0, 0.0, 3.0],  # class 1, language B
    ])
    owner = torch.tensor([0, 1, 0, 1])
    groups = group_ids(["A", "A", "B", "B"])
    assert groups.tolist() == [0, 0, 1, 1]
    centred = class_vectors(names, owner, 2, groups=groups)
    # per language: class 0 = [.5, -.5, 0, 0], class 1 = [-.5, .5, 0, 0]; same in both languages
    expected = torch.tensor([[1.0, -1.0, 0.0, 0.0], [-1.0, 1.0, 0.0, 0.0]]) / math.sqrt(2)
    assert torch.allclose(centred, expected, atol=1e-6)
    plain = class_vectors(names, owner, 2)
    assert plain[0, 3] > 0.5, "without centring, language B's offset dominates"


def test_centring_skips_a_language_that_names_one_class():
    names = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    owner = torch.tensor([0, 1, 0])
    groups = group_ids(["A", "A", "C"])  # language C names only class 0: nothing to centre against
    centred = class_vectors(names, owner, 2, groups=groups)
    expected = torch.tensor([[1.0, -1.0, 0.0], [-1.0, 1.0, 0.0]]) / math.sqrt(2)
    assert torch.allclose(centred, expected, atol=1e-6)
    # a class whose only names are in such languages falls back to its plain mean
    lonely = class_vectors(names, torch.tensor([0, 0, 1]), 2, groups=group_ids(["A", "A", "C"]))
    assert torch.allclose(lonely[1], torch.tensor([0.0, 0.0, 1.0]))


def test_language_dropout_is_per_language_and_seeded():
    langs = ["eng", "fra", "eng", "swh", "fra"]
    a = language_dropout_mask(langs, 0.5, torch.Generator().manual_seed(3))
    b = language_dropout_mask(langs, 0.5, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert a[0] == a[2] and a[1] == a[4], "a language is kept or dropped as a whole"
    assert language_dropout_mask(langs, 1.0, torch.Generator()).all()


def test_l2_to_init():
    assert l2_to_init(torch.tensor([[1.0, 2.0], [0.0, 0.0]]), torch.zeros(2, 2)).item() == pytest.approx(2.5)


def test_every_penalty_name_has_a_builder_and_every_builder_a_name():
    """--penalty's names are stated in training_config.py (checked without torch) and built in
    penalties.py: the two lists are the same, in the same order."""
    from rosprompt_cli.penalties import BUILDERS
    from rosprompt_cli.training_config import PENALTIES, penalty_names

    assert tuple(BUILDERS) == PENALTIES
    assert penalty_names("kl+l2") == ["kl", "l2"] and penalty_names("none") == []
    with pytest.raises(Exception, match="--penalty"):
        penalty_names("kl+dropout")
