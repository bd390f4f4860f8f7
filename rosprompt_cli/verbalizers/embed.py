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
from rosprompt_cli.prompt import SoftPrompt
from rosprompt_cli.verbalizers.base import (
    HeadConfig,
    NamePool,
    ScorerBase,
    TrainingHead,
    clip_texts,
    prompted_hidden,
    text_token_limit,
)
from rosprompt_cli.verbalizers.label_vectors import class_vectors, group_ids
from rosprompt_cli.verbalizers.options import DEFAULT_LABEL_TEMPLATE, DEFAULT_TEMPERATURE


NAME_MEMO_SIZE = 8  # label-name lists kept per backbone (a lexicon-wide list is about 4 MB)


def tokenize(
    backbone: Backbone, texts: Sequence[str], prefix: str, prompt_length: int, max_length: int | None = None
) -> dict:
    """Tokenise prefix+text into padded tensors, leaving room for the prompt inside the position limit."""
    limit = text_token_limit(backbone, prompt_length, max_length)
    return backbone.tokenizer(  # type: ignore[operator]
        clip_texts(texts, prefix, limit),
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
    """L2-normalised sentence vectors [B, H]: the mean over the text positions; differentiable
    with respect to `prompt`."""
    hidden, pool_mask = prompted_hidden(backbone, input_ids, attention_mask, prompt)
    weights = pool_mask.unsqueeze(-1).float()
    pooled = (hidden.float() * weights).sum(1) / weights.sum(1).clamp(min=1.0)
    return F.normalize(pooled, dim=-1)


class EmbeddingScorer(ScorerBase):
    """Scores texts against a label set with the backbone and an optional soft prompt."""

    verbalizer = "embed"
    centres_text_vectors = True  # --adapt: its text vectors are what is centred
    plain_note = "no prompt (plain zero-shot)"

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
        return super().settings() | {"label_template": self.label_template, "temperature": self.temperature}

    @torch.inference_mode()
    def name_vectors(self, names: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """[N, H] embeddings of label names, phrased with the label template, without the prompt.

        Kept on the backbone by the whole list (NAME_MEMO_SIZE lists): the same names again, in
        the same order, give the same batches, so the memo returns exactly what would be
        computed; a run that labels several inputs, or trains again, embeds them once."""
        memo = self.backbone.name_vector_memo
        key = (self.label_template, self.text_prefix, batch_size, tuple(names))
        if key in memo:
            memo.move_to_end(key)
            return memo[key]
        vectors = []
        for start in range(0, len(names), batch_size):
            chunk = [self.label_template.format(n) for n in names[start : start + batch_size]]
            enc = tokenize(self.backbone, chunk, self.text_prefix, 0)
            vectors.append(prompted_embeddings(self.backbone, enc["input_ids"], enc["attention_mask"], None))
        memo[key] = torch.cat(vectors)
        while len(memo) > NAME_MEMO_SIZE:
            memo.popitem(last=False)
        return memo[key]

    @torch.inference_mode()
    def label_vectors(self, label_set: LabelSet) -> torch.Tensor:
        """[L, H] class vectors from each label's name embeddings (label_vectors.class_vectors):
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
        return encode_texts(self.backbone.tokenizer, clip_texts(texts, self.text_prefix, limit), limit)

    @torch.inference_mode()
    def batch_vectors(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Prompted text vectors [B, H] of one padded batch."""
        input_ids, attention_mask = self.to_device(input_ids, attention_mask)
        return prompted_embeddings(self.backbone, input_ids, attention_mask, self._prompt_vectors)

    def label_count(self, label_vectors: torch.Tensor) -> int:
        return int(label_vectors.shape[0])

    def logits(self, text_vectors: torch.Tensor, label_vectors: torch.Tensor) -> torch.Tensor:
        return text_vectors @ label_vectors.T / self.temperature


class EmbedHead(TrainingHead):
    """Training: sentence vectors of prompted texts against class vectors from label-name embeddings."""

    def __init__(self, backbone: Backbone, config: HeadConfig, pool: NamePool) -> None:
        super().__init__(backbone, config, pool)
        # Label names are embedded once, without the prompt, exactly as at inference; clone():
        # leave inference mode so the vectors can enter the autograd graph.
        self.name_vectors = EmbeddingScorer(backbone, None, config.label_template).name_vectors(pool.texts).clone()
        self._set_groups()

    def _set_groups(self) -> None:
        # Language-centred class vectors only if asked for (config.centre_languages).
        centre = self.config.centre_languages and len(set(self.pool.languages)) > 1
        self.groups = group_ids(self.pool.languages, self.name_vectors.device) if centre else None

    def select(self, rows: list[int], pool: NamePool) -> None:
        self.name_vectors, self.pool = self.name_vectors[rows], pool
        self._set_groups()

    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        enc = tokenize(self.backbone, texts, self.backbone.text_prefix, self.config.prompt_length, self.config.max_length)
        return enc["input_ids"], enc["attention_mask"]

    def features(self, ids: torch.Tensor, mask: torch.Tensor, prompt: torch.Tensor | None) -> torch.Tensor:
        return prompted_embeddings(self.backbone, ids, mask, prompt)

    def class_logits(self, features: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        keep = None if keep is None else keep.to(self.name_vectors.device)
        classes = class_vectors(self.name_vectors, self.owner, self.pool.n_classes, keep, self.groups)
        return features @ classes.T / self.config.temperature
