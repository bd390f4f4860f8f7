"""The embedding verbalizer: one prompted forward pass per text scores every label.

Input layout: `<s> P1 … Pn prefix+text </s>`; the text is truncated, never the prompt. The text
vector is the mean of the last hidden states over every non-prompt, non-padding position, so
with no prompt it is exactly the backbone's own sentence embedding. A class vector is the
normalised mean of the embeddings of the label's names, encoded without the prompt, so unseen
labels are embedded at inference exactly as in training. Score = cosine / temperature.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from rosprompt_cli.backbone import Backbone
from rosprompt_cli.batching import EncodedTexts, encode_texts
from rosprompt_cli.errors import RosPromptError
from rosprompt_cli.labels import LabelSet
from rosprompt_cli.objective import class_vectors, group_ids
from rosprompt_cli.prompt import SoftPrompt

DEFAULT_LABEL_TEMPLATE = "This text is about {}"  # chosen on SIB-200 dev (see CHANGELOG)
DEFAULT_TEMPERATURE = 0.05
# Texts per forward pass when none is given. CPU: the fastest of 4-64 in bench/throughput.py
# (length-bucketed batches leave little padding, and larger ones gain nothing on a few cores).
# CUDA: large batches keep the device busy (not measured here: no GPU on the bench machine).
DEFAULT_BATCH_SIZE = {"cpu": 8, "cuda": 128}
MAX_CHARS_PER_TOKEN = 64


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


def _prefixed(texts: Sequence[str], prefix: str, limit: int) -> list[str]:
    # Cut very long texts before the tokenizer sees them (a 10 MB row would cost seconds): no
    # subword is anywhere near MAX_CHARS_PER_TOKEN characters, so the tokens kept are the same.
    keep = limit * MAX_CHARS_PER_TOKEN
    return [prefix + t[:keep] for t in texts]


def tokenize(
    backbone: Backbone, texts: Sequence[str], prefix: str, prompt_length: int, max_length: int | None = None
) -> dict:
    """Tokenise prefix+text into padded tensors, leaving room for the prompt inside the position limit."""
    limit = text_token_limit(backbone, prompt_length, max_length)
    return backbone.tokenizer(
        _prefixed(texts, prefix, limit),
        padding=True,
        truncation=True,
        max_length=limit,
        return_tensors="pt",
    )


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


def prompted_embeddings(
    backbone: Backbone,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    prompt: torch.Tensor | None,
) -> torch.Tensor:
    """L2-normalised sentence vectors [B, H]: the mean over the text positions; differentiable
    with respect to `prompt`."""
    hidden, pool_mask = prompted_hidden(backbone, input_ids, attention_mask, prompt)
    weights = pool_mask.unsqueeze(-1).float()
    pooled = (hidden.float() * weights).sum(1) / weights.sum(1).clamp(min=1.0)
    return F.normalize(pooled, dim=-1)


class ScorerBase:
    """What both verbalizers share: the backbone, the optional prompt, batch placement."""

    verbalizer = ""

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
        self._prompt_vectors = prompt.vectors.to(backbone.device) if prompt is not None else None

    @property
    def default_batch_size(self) -> int:
        return DEFAULT_BATCH_SIZE.get(self.backbone.device.type, DEFAULT_BATCH_SIZE["cpu"])

    @property
    def prompt_length(self) -> int:
        return 0 if self.prompt is None else self.prompt.meta.prompt_length

    def settings(self) -> dict[str, object]:
        """What, beyond the model and prompt, decides the scores (for the resume fingerprint)."""
        return {"verbalizer": self.verbalizer}

    def to_device(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.backbone.device.type == "cuda":  # page-locked copies overlap the transfer with compute
            input_ids = input_ids.pin_memory().to(self.backbone.device, non_blocking=True)
            attention_mask = attention_mask.pin_memory().to(self.backbone.device, non_blocking=True)
        return input_ids, attention_mask


class EmbeddingScorer(ScorerBase):
    """Scores texts against a label set with the backbone and an optional soft prompt."""

    verbalizer = "embed"

    def __init__(
        self,
        backbone: Backbone,
        prompt: SoftPrompt | None = None,
        label_template: str | None = None,
        temperature: float | None = None,
        max_length: int | None = None,
    ) -> None:
        super().__init__(backbone, prompt, max_length)
        self.label_template = label_template or (prompt.meta.label_template if prompt else DEFAULT_LABEL_TEMPLATE)
        self.temperature = temperature or (prompt.meta.temperature if prompt else DEFAULT_TEMPERATURE)

    def settings(self) -> dict[str, object]:
        return {"verbalizer": self.verbalizer, "label_template": self.label_template, "temperature": self.temperature}

    @torch.inference_mode()
    def name_vectors(self, names: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """[N, H] embeddings of label names, phrased with the label template, without the prompt."""
        vectors = []
        for start in range(0, len(names), batch_size):
            chunk = [self.label_template.format(n) for n in names[start : start + batch_size]]
            enc = tokenize(self.backbone, chunk, self.text_prefix, 0)
            vectors.append(prompted_embeddings(self.backbone, enc["input_ids"], enc["attention_mask"], None))
        return torch.cat(vectors)

    @torch.inference_mode()
    def label_vectors(self, label_set: LabelSet) -> torch.Tensor:
        """[L, H] class vectors from each label's name embeddings (objective.class_vectors):
        language-centred when the names come in several label languages."""
        names, owner, languages = label_set.name_table()
        vectors = self.name_vectors(names)
        groups = group_ids(languages, vectors.device) if len(set(languages)) > 1 else None
        return class_vectors(vectors, torch.tensor(owner, device=vectors.device), len(label_set), groups=groups)

    @torch.inference_mode()
    def text_vectors(self, texts: Sequence[str]) -> torch.Tensor:
        enc = tokenize(self.backbone, texts, self.text_prefix, self.prompt_length, self.max_length)
        return self.batch_vectors(enc["input_ids"], enc["attention_mask"])

    def encode(self, texts: Sequence[str]) -> EncodedTexts:
        """Token ids of prefix+text for `batch_vectors`, truncated to leave room for the prompt."""
        limit = text_token_limit(self.backbone, self.prompt_length, self.max_length)
        return encode_texts(self.backbone.tokenizer, _prefixed(texts, self.text_prefix, limit), limit)

    @torch.inference_mode()
    def batch_vectors(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Prompted text vectors [B, H] of one padded batch."""
        input_ids, attention_mask = self.to_device(input_ids, attention_mask)
        return prompted_embeddings(self.backbone, input_ids, attention_mask, self._prompt_vectors)

    def label_count(self, label_vectors: torch.Tensor) -> int:
        return int(label_vectors.shape[0])

    def logits(self, text_vectors: torch.Tensor, label_vectors: torch.Tensor) -> torch.Tensor:
        return text_vectors @ label_vectors.T / self.temperature
