"""Choosing and building the scorer a command asks for: the backbone, the prompt, the verbalizer."""

from __future__ import annotations

from typing import Union

import torch

from rosprompt_cli.backbone import Backbone
from rosprompt_cli.errors import RosPromptError
from rosprompt_cli.expansion import WordExpansion
from rosprompt_cli.mlm import OPTION_FLAGS, MlmOptions, MlmScorer, require_mlm_head
from rosprompt_cli.prompt import SoftPrompt
from rosprompt_cli.scoring import EmbeddingScorer

Scorer = Union[EmbeddingScorer, MlmScorer]
# What a scorer's label_vectors() returns: class vectors [L, H] (embed) or an expansion (mlm).
LabelVectors = Union[torch.Tensor, WordExpansion]
VERBALIZERS = ("auto", "mlm", "embed")


def choose_verbalizer(requested: str, backbone: Backbone, prompt: SoftPrompt | None = None) -> str:
    """`auto`: the prompt's own verbalizer; without a prompt, mlm for a masked LM and embed for
    an encoder without an MLM head. An explicit choice is checked against both."""
    if requested not in VERBALIZERS:
        raise RosPromptError(f"--verbalizer {requested!r}: expected one of {', '.join(VERBALIZERS)}")
    if requested == "auto":
        if prompt is not None:
            return prompt.meta.verbalizer
        return "mlm" if backbone.mlm_head is not None else "embed"
    if requested == "mlm":
        require_mlm_head(backbone)
    if prompt is not None and prompt.meta.verbalizer != requested:
        raise RosPromptError(
            f"--verbalizer {requested}: the prompt was trained with the {prompt.meta.verbalizer} verbalizer; "
            f"drop --verbalizer or train a prompt for {requested}"
        )
    return requested


def check_choices(verbalizer: str, mlm_options: dict[str, object] | None) -> None:
    """Validate --verbalizer and the MLM options' values before any model is loaded."""
    if verbalizer not in VERBALIZERS:
        raise RosPromptError(f"--verbalizer {verbalizer!r}: expected one of {', '.join(VERBALIZERS)}")
    MlmOptions().with_overrides(**(mlm_options or {}))
    if verbalizer == "embed":
        refuse_mlm_options(mlm_options)


def refuse_mlm_options(mlm_options: dict[str, object] | None) -> None:
    """The embedding verbalizer was chosen: an MLM option given with it is a mistake worth naming."""
    given = [k for k, v in (mlm_options or {}).items() if v is not None]
    if given:
        raise RosPromptError(f"{OPTION_FLAGS[given[0]]} is an option of the MLM verbalizer; this run uses the embedding verbalizer")


def make_scorer(
    backbone: Backbone,
    prompt: SoftPrompt | None = None,
    verbalizer: str = "auto",
    max_length: int | None = None,
    mlm_options: dict[str, object] | None = None,
) -> Scorer:
    """A scorer for `backbone` with the chosen verbalizer. `mlm_options`: values (None = the
    prompt's, else the default) for the MLM verbalizer's template, neighbours, aggregate and word pieces."""
    chosen = choose_verbalizer(verbalizer, backbone, prompt)
    if chosen == "mlm":
        options = MlmOptions.from_prompt(prompt).with_overrides(**(mlm_options or {}))
        return MlmScorer(backbone, prompt, options, max_length=max_length)
    refuse_mlm_options(mlm_options)
    return EmbeddingScorer(backbone, prompt, max_length=max_length)


def build_scorer(
    model: str | None,
    device: str = "auto",
    prompt_path: str | None = None,
    use_prompt: bool = True,
    max_length: int | None = None,
    dtype: str = "auto",
    quantize: str = "none",
    verbalizer: str = "auto",
    mlm_options: dict[str, object] | None = None,
) -> tuple[Scorer, str]:
    """Load the backbone and prompt a command asked for; returns the scorer and a note saying
    which prompt is in use.

    Without --model, a given prompt's own backbone is loaded. Without --prompt, the shipped
    default prompt is used when it belongs to the backbone (and the verbalizer), else no prompt:
    plain zero-shot, which with the MLM verbalizer is NPPrompt.
    """
    from rosprompt_cli.backbone import load_backbone
    from rosprompt_cli.prompt import shipped_prompt_path

    check_choices(verbalizer, mlm_options)
    prompt: SoftPrompt | None = None
    if use_prompt and prompt_path:
        prompt = SoftPrompt.load(prompt_path)
        backbone = load_backbone(model or prompt.meta.backbone_source, device, dtype, quantize)
        prompt.check_backbone(backbone.name, backbone.content_hash, backbone.hidden_size, source=prompt_path)
        note = f"prompt {prompt_path}"
    else:
        backbone = load_backbone(model, device, dtype, quantize)
        shipped = shipped_prompt_path() if use_prompt else None
        plain = "no prompt (NPPrompt)" if choose_verbalizer(verbalizer, backbone) == "mlm" else "no prompt (plain zero-shot)"
        note = plain
        if shipped is not None:
            candidate = SoftPrompt.load(shipped)
            if candidate.meta.backbone_hash != backbone.content_hash:
                note = f"{plain}: the shipped prompt is for another backbone"
            elif verbalizer not in ("auto", candidate.meta.verbalizer):
                note = f"{plain}: the shipped prompt is for the {candidate.meta.verbalizer} verbalizer"
            else:
                prompt, note = candidate, f"shipped prompt {shipped.name}"
    return make_scorer(backbone, prompt, verbalizer, max_length, mlm_options), note
