"""The masked-LM verbalizer: the class is read from the MLM logits at a `<mask>` token.

Input layout: `<s> P1 … Pn before text after </s>`, where the template (default NPPrompt's news
template "A {mask} news: {text}") gives `before` and `after`, one of which holds the mask. Only
the text is truncated, never the prompt, the template or the mask. Label words are expanded
NPPrompt-style (expansion.py) once per label set; one forward pass per text scores every label.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from rosprompt_cli.backbone import Backbone
from rosprompt_cli.batching import EncodedTexts
from rosprompt_cli.errors import RosPromptError
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
from rosprompt_cli.verbalizers.expansion import WordExpansion, expand_words
from rosprompt_cli.verbalizers.options import MlmOptions


@dataclass(frozen=True)
class TemplateIds:
    """Token ids around the text: specials first and last, the template's own before and after."""

    start: tuple[int, ...]
    before: tuple[int, ...]
    after: tuple[int, ...]
    end: tuple[int, ...]

    @property
    def fixed(self) -> int:
        return len(self.start) + len(self.before) + len(self.after) + len(self.end)


def template_ids(tokenizer: object, template: str) -> TemplateIds:
    """Tokenise the template around {text}, with the tokenizer's mask id in place of {mask}."""
    mask_id = tokenizer.mask_token_id  # type: ignore[attr-defined]

    def fragment(text: str) -> list[int]:
        ids: list[int] = []
        for i, piece in enumerate(text.split("{mask}")):
            if i:
                ids.append(mask_id)
            if piece.strip():
                ids += tokenizer(piece.strip(), add_special_tokens=False)["input_ids"]  # type: ignore[operator]
        return ids

    before, after = template.split("{text}")
    start, end = _special_layout(tokenizer)
    return TemplateIds(tuple(start), tuple(fragment(before)), tuple(fragment(after)), tuple(end))


def _special_layout(tokenizer: object) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after a text (`<s>`, `</s>`; `[CLS]`, `[SEP]`)."""
    core = tokenizer("a", add_special_tokens=False)["input_ids"]  # type: ignore[operator]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]  # type: ignore[operator]
    for i in range(len(full) - len(core) + 1):
        if full[i : i + len(core)] == core:
            return full[:i], full[i + len(core) :]
    raise RosPromptError("cannot tell where this tokenizer puts its special tokens")


def encode_with_template(
    tokenizer: object, texts: Sequence[str], template: TemplateIds, text_limit: int
) -> EncodedTexts:
    """Right-padded ids of `start before text after end` for every text, the text cut to
    `text_limit` tokens. A mask token inside a text is replaced by the unknown token, so each
    row holds exactly one mask: the template's."""
    pad_id = int(getattr(tokenizer, "pad_token_id", None) or 0)
    head = np.array(template.start + template.before, dtype=np.int64)
    tail = np.array(template.after + template.end, dtype=np.int64)
    n = len(texts)
    if n == 0:
        return EncodedTexts(np.zeros((0, 0), dtype=np.int64), np.zeros(0, dtype=np.int64), pad_id)
    enc = tokenizer(  # type: ignore[operator]
        list(texts), add_special_tokens=False, padding=True, padding_side="right",
        truncation=True, max_length=text_limit, return_tensors="np",
    )
    text_ids = enc["input_ids"].astype(np.int64, copy=False)
    text_lengths = enc["attention_mask"].sum(axis=1).astype(np.int64)
    mask_id, unk_id = tokenizer.mask_token_id, tokenizer.unk_token_id  # type: ignore[attr-defined]
    text_ids = np.where(text_ids == mask_id, unk_id, text_ids)
    width = len(head) + text_ids.shape[1] + len(tail)
    ids = np.full((n, width), pad_id, dtype=np.int64)
    ids[:, : len(head)] = head
    ids[:, len(head) : len(head) + text_ids.shape[1]] = np.where(enc["attention_mask"] > 0, text_ids, pad_id)
    if len(tail):
        columns = (len(head) + text_lengths)[:, None] + np.arange(len(tail))
        ids[np.arange(n)[:, None], columns] = tail
    return EncodedTexts(ids, text_lengths + len(head) + len(tail), pad_id)


def right_aligned(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch moved to right padding whatever its padding side (each row's leading padding is
    rotated to its end); a right-padded batch comes back as it is."""
    if bool(attention_mask[:, 0].all()):
        return input_ids, attention_mask
    lead = attention_mask.int().argmax(dim=1, keepdim=True)  # first real token of each row
    width = input_ids.shape[1]
    index = (torch.arange(width, device=input_ids.device).unsqueeze(0) + lead) % width
    return input_ids.gather(1, index), attention_mask.gather(1, index)


def mask_positions(input_ids: torch.Tensor, mask_id: int) -> torch.Tensor:
    """The column of the mask token in every row [B]; a row without exactly one is an error."""
    is_mask = input_ids == mask_id
    counts = is_mask.sum(dim=1)
    if bool((counts != 1).any()):
        row = int((counts != 1).nonzero()[0, 0])
        raise RosPromptError(f"batch row {row} holds {int(counts[row])} mask tokens; the template needs exactly one")
    return is_mask.int().argmax(dim=1)


def mask_features(
    backbone: Backbone, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt: torch.Tensor | None
) -> torch.Tensor:
    """What the MLM decoder reads at each row's mask [B, H] (the head's transform of the hidden
    state there); differentiable with respect to `prompt`. Any padding side."""
    require_mlm_head(backbone)
    input_ids, attention_mask = right_aligned(input_ids, attention_mask)
    positions = mask_positions(input_ids, backbone.tokenizer.mask_token_id)  # type: ignore[attr-defined]
    hidden, _ = prompted_hidden(backbone, input_ids, attention_mask, prompt)
    n = 0 if prompt is None else prompt.shape[0]
    positions = (positions + n * (positions > 0).long()).to(hidden.device)  # the prompt sits after column 0
    at_mask = hidden[torch.arange(hidden.shape[0], device=hidden.device), positions]
    return backbone.mlm_head(at_mask).float()


def mask_logits(
    backbone: Backbone, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt: torch.Tensor | None
) -> torch.Tensor:
    """MLM logits over the whole vocabulary at each row's mask [B, V] (the reference that the
    scorer's shortcut through WordExpansion.attach_decoder must equal)."""
    features = mask_features(backbone, input_ids, attention_mask, prompt)
    return backbone.mlm_head.decoder(features.to(backbone.mlm_head.decoder.weight.dtype)).float()


def excluded_tokens(tokenizer: object, vocab_rows: int) -> list[int]:
    """Rows no label word may expand to: special tokens, and embedding rows beyond the vocabulary."""
    specials = set(getattr(tokenizer, "all_special_ids", []) or [])
    return sorted(specials | set(range(len(tokenizer), vocab_rows)))  # type: ignore[arg-type]


def require_mlm_head(backbone: Backbone) -> None:
    if backbone.mlm_head is None:
        raise RosPromptError(
            f"--verbalizer mlm: {backbone.name} has no masked-LM head; use --verbalizer embed, or a masked LM "
            f"such as xlm-roberta-base"
        )


class MlmScorer(ScorerBase):
    """Scores texts against a label set from the MLM logits at the template's mask."""

    verbalizer = "mlm"
    plain_note = "no prompt (NPPrompt)"

    def __init__(
        self,
        backbone: Backbone,
        prompt: SoftPrompt | None = None,
        options: MlmOptions | None = None,
        max_length: int | None = None,
    ) -> None:
        require_mlm_head(backbone)
        super().__init__(backbone, prompt, max_length)
        self.options = options or MlmOptions.from_prompt(prompt)
        self.temperature = 1.0
        self.template = template_ids(backbone.tokenizer, self.options.template)
        self._expansions: dict[tuple, WordExpansion] = {}
        self.text_limit()  # refuse a --max-length with no room for the text now, not at the first batch

    def settings(self) -> dict[str, object]:
        return super().settings() | asdict(self.options)

    def text_limit(self, prompt_length: int | None = None) -> int:
        """Tokens left for the text; `prompt_length`: room to keep for a prompt other than this
        scorer's own (training)."""
        prompt_length = self.prompt_length if prompt_length is None else prompt_length
        return text_token_limit(self.backbone, prompt_length, self.max_length, self.template.fixed)

    def encode(self, texts: Sequence[str], prompt_length: int | None = None) -> EncodedTexts:
        """Token ids of the templated texts for `batch_vectors`, the texts truncated to leave room
        for the prompt and the template."""
        limit = self.text_limit(prompt_length)
        return encode_with_template(self.backbone.tokenizer, clip_texts(texts, self.text_prefix, limit),
                                    self.template, limit)

    @torch.inference_mode()
    def batch_vectors(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The MLM decoder's input at the mask [B, H] of one padded batch (mask_features)."""
        input_ids, attention_mask = self.to_device(input_ids, attention_mask)
        return mask_features(self.backbone, input_ids, attention_mask, self._prompt_vectors)

    @torch.inference_mode()
    def label_vectors(self, label_set: LabelSet) -> WordExpansion:
        """The NPPrompt expansion of every name of every label, built once per label set."""
        names, owner, languages = label_set.name_table()
        key = (tuple(names), tuple(owner), tuple(languages))
        if key not in self._expansions:
            self._expansions[key] = self.expand(names, owner, languages, len(label_set))
        return self._expansions[key]

    def expand(self, words: Sequence[str], owner: Sequence[int], languages: Sequence[str], n_classes: int) -> WordExpansion:
        embeddings = self.backbone.word_embeddings.weight
        head = self.backbone.mlm_head
        assert head is not None
        expansion = expand_words(
            self.backbone.tokenizer, embeddings, words, owner, languages, n_classes,
            k=self.options.neighbours, pieces=self.options.word_pieces, aggregate=self.options.aggregate,
            excluded=excluded_tokens(self.backbone.tokenizer, embeddings.shape[0]),
        )
        return expansion.attach_decoder(head.decoder.weight, head.decoder_bias)

    def label_count(self, expansion: WordExpansion) -> int:
        return expansion.n_classes

    def logits(self, mask_vectors: torch.Tensor, expansion: WordExpansion) -> torch.Tensor:
        return expansion.class_scores(expansion.scores_at_mask(mask_vectors))


class MlmHead(TrainingHead):
    """Training: MLM logits at the template's mask, read through the NPPrompt expansion of the label names."""

    def __init__(self, backbone: Backbone, config: HeadConfig, pool: NamePool) -> None:
        super().__init__(backbone, config, pool)
        self.scorer = MlmScorer(backbone, None, config.mlm, max_length=config.max_length)
        self.expansion = self.scorer.expand(pool.texts, pool.owner, pool.languages, pool.n_classes)
        self.name_vectors = self.expansion.embedding_vectors(backbone.word_embeddings.weight)

    def select(self, rows: list[int], pool: NamePool) -> None:
        self.expansion = self.expansion.subset(rows, pool.owner, pool.languages, pool.n_classes)
        self.name_vectors, self.pool = self.name_vectors[rows], pool

    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.scorer.encode(texts, prompt_length=self.config.prompt_length).padded()

    def features(self, ids: torch.Tensor, mask: torch.Tensor, prompt: torch.Tensor | None) -> torch.Tensor:
        return self.expansion.scores_at_mask(mask_features(self.backbone, ids, mask, prompt))

    def class_logits(self, features: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        return self.expansion.class_scores(features, keep)
