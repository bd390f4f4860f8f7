"""What every verbalizer shares: the `Scorer` protocol (inference) and the `TrainingHead` base
(training), the prompted forward pass, and the room the text gets beside the prompt.

A verbalizer turns one prompted forward pass per text into a score for every label. It has two
sides: the text side (`encode` a chunk once, then `batch_vectors` per padded batch) and the
label side (`label_vectors`, built once per label set). `logits` combines them. Training uses
the same two sides through a `TrainingHead`, whose features are differentiable in the prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import torch

from rosprompt_cli.backbone import Backbone
from rosprompt_cli.batching import DEFAULT_BATCHING, Batching, EncodedTexts
from rosprompt_cli.calibration import Calibration, default_calibration
from rosprompt_cli.errors import RosPromptError
from rosprompt_cli.labels import LabelSet
from rosprompt_cli.prompt import SoftPrompt
from rosprompt_cli.verbalizers.label_vectors import class_vectors
from rosprompt_cli.verbalizers.options import HeadConfig


MAX_CHARS_PER_TOKEN = 64
# A label set's side of a verbalizer, built once per label set and opaque to its callers: class
# vectors [L, H] for embed, a WordExpansion for mlm.
LabelVectors = Any


@runtime_checkable
class Scorer(Protocol):
    """A verbalizer at inference: what labelling, evaluation and the Ray workers call.

    One chunk of texts is `encode`d once (token ids, truncated so the prompt always fits);
    `batch_vectors` runs the prompted backbone on one padded batch of it; `label_vectors` is the
    label side, built once per label set; `logits` scores a batch against every label at once.
    """

    verbalizer: ClassVar[str]
    backbone: Backbone
    prompt: SoftPrompt | None
    max_length: int | None
    prompt_note: str  # which prompt is in use, for status lines and summaries ("shipped prompt …")
    calibration: Calibration  # applied by `probabilities`

    @property
    def default_batching(self) -> Batching: ...

    def settings(self) -> dict[str, object]: ...

    def encode(self, texts: Sequence[str]) -> EncodedTexts: ...

    def batch_vectors(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor: ...

    def label_vectors(self, label_set: LabelSet) -> LabelVectors: ...

    def label_count(self, label_vectors: LabelVectors) -> int: ...

    def logits(self, text_vectors: torch.Tensor, label_vectors: LabelVectors) -> torch.Tensor: ...

    def probabilities(self, logits: torch.Tensor, centred: np.ndarray | bool = False) -> torch.Tensor: ...


def text_token_limit(
    backbone: Backbone, prompt_length: int, max_length: int | None = None, template_tokens: int = 0
) -> int:
    """Tokens left for the text once the prompt (and an MLM template's `template_tokens`) have
    their positions: truncation cuts the text, never the prompt or the template."""
    limit = min(max_length or backbone.max_length, backbone.max_length) - prompt_length - template_tokens
    if limit < 3:
        template = f" and the {template_tokens}-token template" if template_tokens else ""
        raise RosPromptError(
            f"--max-length {max_length}: leaves {limit} tokens for the text after the {prompt_length}-token "
            f"prompt{template}; give at least {prompt_length + template_tokens + 3}"
        )
    return limit


def clip_texts(texts: Sequence[str], prefix: str, limit: int) -> list[str]:
    """prefix + text, each text cut before the tokenizer sees it (a 10 MB row would cost
    seconds): no subword is anywhere near MAX_CHARS_PER_TOKEN characters, so the tokens kept
    within `limit` are the same."""
    keep = limit * MAX_CHARS_PER_TOKEN
    return [prefix + t[:keep] for t in texts]


def prompted_hidden(
    backbone: Backbone,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    prompt: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Last hidden states [B, n+T, H] of `<s> P1 … Pn rest`, and the mask of the non-prompt,
    non-padding positions [B, n+T]. Right-padded input; differentiable with respect to `prompt`."""
    input_ids = input_ids.to(backbone.device)
    attention_mask = attention_mask.to(backbone.device)
    if prompt is None or prompt.shape[0] == 0:
        hidden = backbone.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return hidden, attention_mask
    batch = input_ids.shape[0]
    n = prompt.shape[0]
    token_embeds = backbone.word_embeddings(input_ids)
    prompt_embeds = prompt.to(token_embeds.dtype).unsqueeze(0).expand(batch, n, -1)
    inputs_embeds = torch.cat([token_embeds[:, :1], prompt_embeds, token_embeds[:, 1:]], dim=1)
    ones = attention_mask.new_ones(batch, n)
    full_mask = torch.cat([attention_mask[:, :1], ones, attention_mask[:, 1:]], dim=1)
    hidden = backbone.model(inputs_embeds=inputs_embeds, attention_mask=full_mask).last_hidden_state
    return hidden, torch.cat([attention_mask[:, :1], ones * 0, attention_mask[:, 1:]], dim=1)


class ScorerBase:
    """What both verbalizers' scorers share: the backbone, the optional prompt, batch placement."""

    verbalizer: ClassVar[str] = ""
    plain_note: ClassVar[str] = "no prompt"  # what running without a prompt amounts to

    def __init__(self, backbone: Backbone, prompt: SoftPrompt | None = None, max_length: int | None = None) -> None:
        self.backbone = backbone
        self.prompt = prompt
        if prompt is not None:
            prompt.check_backbone(backbone.name, backbone.content_hash, backbone.hidden_size)
            if prompt.meta.verbalizer != self.verbalizer:
                raise RosPromptError(
                    f"the prompt was trained with the {prompt.meta.verbalizer} verbalizer; it cannot be used with "
                    f"--verbalizer {self.verbalizer}"
                )
        self.text_prefix = prompt.meta.text_prefix if prompt is not None else backbone.text_prefix
        self.max_length = max_length
        # Which prompt is in use, for status lines and summaries; spec.build_scorer names the file.
        self.prompt_note = self.plain_note if prompt is None else "a given prompt"
        self._prompt_vectors = prompt.vectors.to(backbone.device) if prompt is not None else None
        self.calibration = self._stored_calibration()

    def _stored_calibration(self) -> Calibration:
        """The prompt file's calibration; else (a file from before calibration, or no prompt)
        the backbone's default for this verbalizer, if one was fitted."""
        default = default_calibration(self.backbone.content_hash, self.verbalizer, self.prompt is not None)
        if self.prompt is not None and self.prompt.meta.calibration is not None:
            stored = Calibration.from_dict(self.prompt.meta.calibration)
            if stored.adapted_temperature is None:  # train fits no --adapt T: the backbone's default one
                stored = replace(stored, adapted_temperature=default.adapted_temperature)
            return stored
        if self.prompt is not None and default.fitted_on:
            return replace(default, fitted_on=f"the prompt stores none: the default, {default.fitted_on}")
        return default

    def probabilities(self, logits: torch.Tensor, centred: np.ndarray | bool = False) -> torch.Tensor:
        """The calibrated softmax over the labels: logits divided by the calibration's temperature
        (each row's order of labels, and so its label, is the uncalibrated one). `centred`: which
        rows' logits are of --adapt's centred text vectors (all, none, or [M] bool): they take the
        --adapt temperature."""
        if isinstance(centred, np.ndarray):
            if centred.all() or not centred.any():
                centred = bool(centred.all()) if len(centred) else False
            else:
                plain, adapted = (self.calibration.temperature_for(c) for c in (False, True))
                temperature = torch.where(torch.from_numpy(centred).to(logits.device), adapted, plain)
                return torch.softmax(logits.float() / temperature.unsqueeze(-1), dim=-1)
        return torch.softmax(logits.float() / self.calibration.temperature_for(bool(centred)), dim=-1)

    @property
    def default_batching(self) -> Batching:
        return DEFAULT_BATCHING.get(self.backbone.device.type, DEFAULT_BATCHING["cpu"])

    @property
    def prompt_length(self) -> int:
        return 0 if self.prompt is None else self.prompt.meta.prompt_length

    def settings(self) -> dict[str, object]:
        """What, beyond the model and prompt, decides the scores (for the resume fingerprint)."""
        return {"verbalizer": self.verbalizer, "calibration": self.calibration.temperature,
                "adapted_calibration": self.calibration.adapted_temperature}

    def to_device(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch on the backbone's device; batches.EncodedTexts.device_batches puts a whole chunk
        there at once, and its slices are used as they are."""
        if self.backbone.device.type == "cuda" and input_ids.device.type == "cpu":
            # page-locked copies overlap the transfer with compute
            input_ids = input_ids.pin_memory().to(self.backbone.device, non_blocking=True)
            attention_mask = attention_mask.pin_memory().to(self.backbone.device, non_blocking=True)
        return input_ids, attention_mask


@dataclass
class NamePool:
    """Every label name a training head verbalises: its text, its class, its label language
    (for dropout and the variance penalty). Training classes come first, then any open-world
    negative classes."""

    texts: list[str]
    owner: list[int]
    languages: list[str]

    @classmethod
    def build(
        cls, label_set: LabelSet, extra: dict[str, dict[str, list[str]]] | None,
        negatives: dict[str, dict[str, list[str]]] | None,
    ) -> NamePool:
        """The label set's names plus `extra` names (label -> language -> names), then the
        names of each negative class (topic -> language -> names)."""
        texts, owner, languages = label_set.with_names(extra or {}).name_table()
        for k, by_language in enumerate((negatives or {}).values()):
            for language, names in by_language.items():
                for name in names:
                    texts.append(name)
                    owner.append(len(label_set) + k)
                    languages.append(language)
        return cls(texts, owner, languages)

    @property
    def n_classes(self) -> int:
        return max(self.owner) + 1

    def subset(self, rows: list[int], new_class: dict[int, int]) -> NamePool:
        """Only these rows, their classes renumbered by `new_class`."""
        return NamePool([self.texts[i] for i in rows], [new_class[self.owner[i]] for i in rows],
                        [self.languages[i] for i in rows])


class TrainingHead:
    """A verbalizer in training: text features (differentiable in the prompt), class logits from
    them with a subset of label names, and one vector per label name for label-to-label
    similarity. A verbalizer's head lives in its module beside its scorer."""

    name_vectors: torch.Tensor  # [N, H]
    pool: NamePool
    groups: torch.Tensor | None = None  # label-language ids, for language-centred class vectors

    def __init__(self, backbone: Backbone, config: HeadConfig, pool: NamePool) -> None:
        self.backbone, self.config, self.pool = backbone, config, pool

    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def features(self, ids: torch.Tensor, mask: torch.Tensor, prompt: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def class_logits(self, features: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """[B, C] over every class of the pool (training classes first); keep [N]: names used."""
        raise NotImplementedError

    def select(self, rows: list[int], pool: NamePool) -> None:
        """Keep only these rows of the name pool (after open-world negatives are filtered)."""
        raise NotImplementedError

    @property
    def owner(self) -> torch.Tensor:
        return torch.tensor(self.pool.owner, device=self.name_vectors.device)

    def class_similarity(self) -> torch.Tensor:
        vectors = class_vectors(self.name_vectors, self.owner, self.pool.n_classes, groups=self.groups)
        return vectors @ vectors.T
