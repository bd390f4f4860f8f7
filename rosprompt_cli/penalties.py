"""The RoSPrompt robustness penalties as small objects with one signature.

Each penalty is built once before training (from what it needs: the zero-shot features, the
label languages, the initial prompt) and then called on every training step with the same
`Step`. `build_penalties` turns `--penalty kl+l2` into a list; the loop adds λ · each. A new
penalty is one class here, one entry in BUILDERS and its name in training_config.PENALTIES.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

from rosprompt_cli.errors import RosPromptError
from rosprompt_cli.objective import kl_to_zero_shot, l2_to_init, language_loss_variance
from rosprompt_cli.training_config import penalty_names
from rosprompt_cli.verbalizers.base import NamePool, TrainingHead


@dataclass
class Step:
    """One training step, as every penalty sees it."""

    rows: torch.Tensor  # [B] indices of the batch's examples in the training set
    features: torch.Tensor  # [B, ...] the head's features of the prompted batch
    logits: torch.Tensor  # [B, C] class logits with this step's label names
    gold: torch.Tensor  # [B] gold class indices
    keep: torch.Tensor | None  # [N] label names used this step (label-language dropout)
    prompt: torch.Tensor  # [n, H] the prompt being trained


class Penalty(Protocol):
    def __call__(self, step: Step) -> torch.Tensor: ...


@dataclass
class KlToZeroShot:
    """KL of the prompted class distribution to the backbone's own prompt-free one."""

    head: TrainingHead
    zero_shot: torch.Tensor  # [N_train, ...] prompt-free features of every training text

    def __call__(self, step: Step) -> torch.Tensor:
        zero_shot = self.zero_shot[step.rows.to(self.zero_shot.device)]
        return kl_to_zero_shot(step.logits, self.head.class_logits(zero_shot, step.keep))


@dataclass
class LanguageVariance:
    """Variance of the cross-entropy across label languages that name every training class."""

    head: TrainingHead
    language_masks: list[torch.Tensor]
    n_train: int

    def __call__(self, step: Step) -> torch.Tensor:
        per_language = torch.stack([self.head.class_logits(step.features, m)[:, : self.n_train]
                                    for m in self.language_masks])
        return language_loss_variance(per_language, step.gold)


@dataclass
class L2ToInit:
    """Distance of the prompt from its initialisation."""

    init: torch.Tensor

    def __call__(self, step: Step) -> torch.Tensor:
        return l2_to_init(step.prompt, self.init)


@dataclass
class PenaltyContext:
    """What building a penalty may need, computed by the training set-up."""

    head: TrainingHead
    pool: NamePool
    n_train: int
    init: torch.Tensor
    zero_shot: Callable[[], torch.Tensor]  # prompt-free features of the training texts (costs a pass)


def _kl(context: PenaltyContext) -> Penalty:
    return KlToZeroShot(context.head, context.zero_shot())


def _variance(context: PenaltyContext) -> Penalty:
    masks = complete_languages(context.pool, context.n_train)
    if len(masks) < 2:
        raise RosPromptError("--penalty variance needs label names in at least two languages for every class")
    return LanguageVariance(context.head, masks, context.n_train)


def _l2(context: PenaltyContext) -> Penalty:
    return L2ToInit(context.init)


# One builder per name of training_config.PENALTIES (the names --penalty takes; test_objective
# checks that the two agree).
BUILDERS: dict[str, Callable[[PenaltyContext], Penalty]] = {"kl": _kl, "variance": _variance, "l2": _l2}


def build_penalties(spec: str, context: PenaltyContext) -> list[Penalty]:
    return [BUILDERS[name](context) for name in penalty_names(spec)]


def complete_languages(pool: NamePool, n_classes: int) -> list[torch.Tensor]:
    """One name mask [N] per label language that names every training class: the variance
    penalty compares like with like."""
    by_language: dict[str, set[int]] = {}
    for language, c in zip(pool.languages, pool.owner):
        if c < n_classes:
            by_language.setdefault(language, set()).add(c)
    complete = sorted(lang for lang, classes in by_language.items() if len(classes) == n_classes)
    return [torch.tensor([lang == language for lang in pool.languages]) for language in complete]
