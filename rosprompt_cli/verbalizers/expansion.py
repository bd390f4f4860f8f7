"""NPPrompt label-word expansion for the masked-LM verbalizer.

Each label word is represented by one query vector in the backbone's input-embedding space (its
first word piece, as NPPrompt does, or the mean of its pieces). Its k nearest vocabulary tokens
by cosine become its verbalizer, weighted by the softmax of those cosines, and the word's score
at the mask is the weighted sum of their MLM logits. A class scores the max (or mean) over its
words in all their languages.

The search over the vocabulary is one matrix product and a top-k per block of words; nothing
loops over the vocabulary in Python. The result is cached per label set by the scorer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rosprompt_cli.errors import RosPromptError, check_choice
from rosprompt_cli.verbalizers.label_vectors import names_in_use
from rosprompt_cli.verbalizers.options import AGGREGATES, DEFAULT_NEIGHBOURS, WORD_PIECES

# Words per block of the cosine search: the [block, vocabulary] score matrix stays near 64 MB.
_SCORE_BUDGET = 16_000_000


@dataclass
class WordExpansion:
    """Every label word's neighbours: token ids and weights [W, k], the class of each word [W],
    and each word's label language [W] (for label-language dropout and the variance penalty)."""

    token_ids: torch.Tensor
    weights: torch.Tensor
    cosines: torch.Tensor
    owner: torch.Tensor
    languages: list[str]
    n_classes: int
    aggregate: str = "max"
    # Σ weight · decoder row [W, H] and Σ weight · decoder bias [W] of each word (attach_decoder)
    decoder_vectors: torch.Tensor | None = None
    decoder_biases: torch.Tensor | None = None

    def attach_decoder(self, weight: torch.Tensor, bias: torch.Tensor) -> WordExpansion:
        """Fold the MLM decoder into the expansion. A logit is decoder_row · x + bias, so a word's
        weighted sum of its neighbours' logits equals (Σ w · row) · x + Σ w · bias: scoring then
        needs the decoder's input x at the mask, not the logits over the whole vocabulary."""
        ids = self.token_ids.to(weight.device)
        w = self.weights.to(weight.device)
        rows = weight.detach().float()[ids.reshape(-1)].view(*ids.shape, -1)
        self.decoder_vectors = (rows * w.unsqueeze(-1)).sum(1)
        self.decoder_biases = (bias.detach().float()[ids] * w).sum(1)
        return self

    def scores_at_mask(self, decoder_inputs: torch.Tensor) -> torch.Tensor:
        """[B, H] decoder inputs at the mask -> [B, W] word scores; equal to
        word_scores(decoder(decoder_inputs)) (see attach_decoder)."""
        assert self.decoder_vectors is not None and self.decoder_biases is not None, "attach_decoder first"
        vectors = self.decoder_vectors.to(decoder_inputs.device)
        return decoder_inputs.float() @ vectors.T + self.decoder_biases.to(decoder_inputs.device)

    def subset(self, rows: list[int], owner: list[int], languages: list[str], n_classes: int) -> WordExpansion:
        """Only these words (rows), with new class indices."""
        pick = torch.tensor(rows, dtype=torch.long)
        return WordExpansion(
            self.token_ids[pick], self.weights[pick], self.cosines[pick], torch.tensor(owner, dtype=torch.long),
            list(languages), n_classes, self.aggregate,
            None if self.decoder_vectors is None else self.decoder_vectors[pick.to(self.decoder_vectors.device)],
            None if self.decoder_biases is None else self.decoder_biases[pick.to(self.decoder_biases.device)],
        )

    def word_scores(self, vocab_logits: torch.Tensor) -> torch.Tensor:
        """[B, V] MLM logits at the mask -> [B, W]: Σ weight · logit over each word's neighbours."""
        ids = self.token_ids.to(vocab_logits.device)
        gathered = vocab_logits[:, ids.reshape(-1)].view(vocab_logits.shape[0], *ids.shape)
        return (gathered.float() * self.weights.to(vocab_logits.device)).sum(-1)

    def class_scores(self, word_scores: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """[B, W] word scores -> [B, C] class scores (max or mean over each class's kept words).

        keep [W] bool: the words that take part (label-language dropout); a class whose words
        were all dropped keeps all of them, so no class ever vanishes."""
        return aggregate_words(word_scores, self.owner, self.n_classes, self.aggregate, keep)

    def embedding_vectors(self, embeddings: torch.Tensor) -> torch.Tensor:
        """[W, H]: each word's neighbours' input embeddings, weighted: what the word means to the
        verbalizer, for label-to-label similarity."""
        rows = embeddings.detach().float()[self.token_ids.reshape(-1).to(embeddings.device)]
        rows = rows.view(*self.token_ids.shape, -1)
        return F.normalize((rows * self.weights.to(rows.device).unsqueeze(-1)).sum(1), dim=-1)


def aggregate_words(
    word_scores: torch.Tensor, owner: torch.Tensor, n_classes: int, how: str, keep: torch.Tensor | None = None
) -> torch.Tensor:
    """Class scores [B, C] from word scores [B, W]; owner [W] is each word's class."""
    check_choice("--aggregate", how, AGGREGATES)
    owner = owner.to(word_scores.device)
    used = names_in_use(owner, n_classes, keep)
    batch = word_scores.shape[0]
    index = owner.unsqueeze(0).expand(batch, -1)
    if how == "max":
        masked = word_scores.masked_fill(~used.unsqueeze(0), float("-inf"))
        out = word_scores.new_full((batch, n_classes), float("-inf"))
        return out.scatter_reduce(1, index, masked, reduce="amax", include_self=True)
    weights = used.to(word_scores.dtype)  # mean
    sums = word_scores.new_zeros(batch, n_classes).index_add(1, owner, word_scores * weights)
    counts = word_scores.new_zeros(n_classes).index_add(0, owner, weights)
    return sums / counts.clamp(min=1.0)


def word_queries(
    tokenizer: object, embeddings: torch.Tensor, words: Sequence[str], pieces: str = "first"
) -> torch.Tensor:
    """[W, H] query vectors: a word's first piece, or the mean of its pieces. A piece that is only
    the word-start marker ("▁", which the XLM-R vocabulary splits off some words) carries no
    meaning and is passed over."""
    check_choice("--word-pieces", pieces, WORD_PIECES)
    encoded = tokenizer(list(words), add_special_tokens=False)["input_ids"]  # type: ignore[operator]
    blank = _marker_ids(tokenizer)
    table = embeddings.detach().float()
    queries = []
    for word, ids in zip(words, encoded):
        meaningful = [i for i in ids if i not in blank] or list(ids)
        if not meaningful:
            raise RosPromptError(f"label word {word!r} has no tokens in this model's vocabulary")
        chosen = meaningful[:1] if pieces == "first" else meaningful
        queries.append(table[torch.tensor(chosen, device=table.device)].mean(0))
    return torch.stack(queries)


def _marker_ids(tokenizer: object) -> set[int]:
    ids = set()
    for marker in ("▁", "Ġ"):
        token_id = tokenizer.convert_tokens_to_ids(marker)  # type: ignore[attr-defined]
        if token_id is not None and token_id != getattr(tokenizer, "unk_token_id", None):
            ids.add(int(token_id))
    return ids


def nearest_tokens(
    queries: torch.Tensor, embeddings: torch.Tensor, k: int, excluded: Sequence[int] = ()
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k vocabulary rows by cosine for each query: (cosines [W, k], token ids [W, k]).

    One [block, V] matrix product per block of queries; the embedding matrix is never copied
    (row norms divide the product instead)."""
    table = embeddings.detach()
    vocab = table.shape[0]
    if not 1 <= k <= vocab:
        raise RosPromptError(f"--neighbours {k}: expected 1 to {vocab}")
    row_norms = table.float().norm(dim=1).clamp(min=1e-12)
    blocked = torch.zeros(vocab, dtype=torch.bool, device=table.device)
    if excluded:
        blocked[torch.tensor(sorted(excluded), device=table.device)] = True
    q = F.normalize(queries.float().to(table.device), dim=-1)
    block = max(1, _SCORE_BUDGET // vocab)
    cosines, ids = [], []
    for start in range(0, q.shape[0], block):
        sims = (q[start : start + block] @ table.float().T) / row_norms
        sims.masked_fill_(blocked, float("-inf"))
        top = sims.topk(k, dim=-1)
        cosines.append(top.values)
        ids.append(top.indices)
    return torch.cat(cosines), torch.cat(ids)


def expand_words(
    tokenizer: object,
    embeddings: torch.Tensor,
    words: Sequence[str],
    owner: Sequence[int],
    languages: Sequence[str],
    n_classes: int,
    k: int = DEFAULT_NEIGHBOURS,
    pieces: str = "first",
    aggregate: str = "max",
    excluded: Sequence[int] = (),
) -> WordExpansion:
    """The NPPrompt expansion of every label word (see the module docstring)."""
    check_choice("--aggregate", aggregate, AGGREGATES)
    queries = word_queries(tokenizer, embeddings, words, pieces)
    cosines, ids = nearest_tokens(queries, embeddings, k, excluded)
    return WordExpansion(
        token_ids=ids.cpu(),
        weights=torch.softmax(cosines, dim=-1).cpu(),
        cosines=cosines.cpu(),
        owner=torch.tensor(list(owner), dtype=torch.long),
        languages=list(languages),
        n_classes=n_classes,
        aggregate=aggregate,
    )
