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


def text_token_limit(backbone: Backbone, prompt_length: int, max_length: int | None = None) -> int:
    """Tokens left for prefix+text once the prompt has its positions: truncation cuts the text,
    never the prompt."""
    limit = min(max_length or backbone.max_length, backbone.max_length) - prompt_length
    if limit < 3:
        from rosprompt_cli.errors import RosPromptError

        raise RosPromptError(
            f"--max-length {max_length}: leaves {limit} tokens for the text after the {prompt_length}-token "
            f"prompt; give at least {prompt_length + 3}"
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


def prompted_embeddings(
    backbone: Backbone,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    prompt: torch.Tensor | None,
) -> torch.Tensor:
    """L2-normalised sentence vectors [B, H]; differentiable with respect to `prompt`."""
    input_ids = input_ids.to(backbone.device)
    attention_mask = attention_mask.to(backbone.device)
    if prompt is None or prompt.shape[0] == 0:
        hidden = backbone.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        pool_mask = attention_mask
    else:
        batch = input_ids.shape[0]
        n = prompt.shape[0]
        token_embeds = backbone.word_embeddings(input_ids)
        prompt_embeds = prompt.to(token_embeds.dtype).unsqueeze(0).expand(batch, n, -1)
        inputs_embeds = torch.cat([token_embeds[:, :1], prompt_embeds, token_embeds[:, 1:]], dim=1)
        ones = attention_mask.new_ones(batch, n)
        full_mask = torch.cat([attention_mask[:, :1], ones, attention_mask[:, 1:]], dim=1)
        hidden = backbone.model(inputs_embeds=inputs_embeds, attention_mask=full_mask).last_hidden_state
        pool_mask = torch.cat([attention_mask[:, :1], ones * 0, attention_mask[:, 1:]], dim=1)
    weights = pool_mask.unsqueeze(-1).float()
    pooled = (hidden.float() * weights).sum(1) / weights.sum(1).clamp(min=1.0)
    return F.normalize(pooled, dim=-1)


class EmbeddingScorer:
    """Scores texts against a label set with the backbone and an optional soft prompt."""

    def __init__(
        self,
        backbone: Backbone,
        prompt: SoftPrompt | None = None,
        label_template: str | None = None,
        temperature: float | None = None,
        max_length: int | None = None,
    ) -> None:
        self.backbone = backbone
        self.prompt = prompt
        if prompt is not None:
            prompt.check_backbone(backbone.name, backbone.content_hash, backbone.hidden_size)
        self.text_prefix = prompt.meta.text_prefix if prompt is not None else backbone.text_prefix
        self.label_template = label_template or (prompt.meta.label_template if prompt else DEFAULT_LABEL_TEMPLATE)
        self.temperature = temperature or (prompt.meta.temperature if prompt else DEFAULT_TEMPERATURE)
        self.max_length = max_length
        self._prompt_vectors = prompt.vectors.to(backbone.device) if prompt is not None else None

    @property
    def default_batch_size(self) -> int:
        return DEFAULT_BATCH_SIZE.get(self.backbone.device.type, DEFAULT_BATCH_SIZE["cpu"])

    @property
    def prompt_length(self) -> int:
        return 0 if self.prompt is None else self.prompt.meta.prompt_length

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
        if self.backbone.device.type == "cuda":  # page-locked copies overlap the transfer with compute
            input_ids = input_ids.pin_memory().to(self.backbone.device, non_blocking=True)
            attention_mask = attention_mask.pin_memory().to(self.backbone.device, non_blocking=True)
        return prompted_embeddings(self.backbone, input_ids, attention_mask, self._prompt_vectors)

    def logits(self, text_vectors: torch.Tensor, label_vectors: torch.Tensor) -> torch.Tensor:
        return text_vectors @ label_vectors.T / self.temperature


def build_scorer(
    model: str | None,
    device: str = "auto",
    prompt_path: str | None = None,
    use_prompt: bool = True,
    max_length: int | None = None,
    dtype: str = "auto",
    quantize: str = "none",
) -> tuple[EmbeddingScorer, str]:
    """Load the backbone and prompt a command asked for; returns the scorer and a note saying
    which prompt is in use.

    Without --model, a given prompt's own backbone is loaded. Without --prompt, the shipped
    default prompt is used when it belongs to the backbone, else plain zero-shot.
    """
    from rosprompt_cli.backbone import load_backbone
    from rosprompt_cli.prompt import shipped_prompt_path

    prompt: SoftPrompt | None = None
    if use_prompt and prompt_path:
        prompt = SoftPrompt.load(prompt_path)
        backbone = load_backbone(model or prompt.meta.backbone_source, device, dtype, quantize)
        prompt.check_backbone(backbone.name, backbone.content_hash, backbone.hidden_size, source=prompt_path)
        note = f"prompt {prompt_path}"
    else:
        backbone = load_backbone(model, device, dtype, quantize)
        shipped = shipped_prompt_path() if use_prompt else None
        note = "no prompt (plain zero-shot)"
        if shipped is not None:
            candidate = SoftPrompt.load(shipped)
            if candidate.meta.backbone_hash == backbone.content_hash:
                prompt, note = candidate, f"shipped prompt {shipped.name}"
            else:
                note = "no prompt (the shipped prompt is for another backbone): plain zero-shot"
    return EmbeddingScorer(backbone, prompt, max_length=max_length), note
