"""Labelling frames: a polars frame in, the same frame with the prediction columns out.

`label_frames` streams frames through a scorer (the next one read and tokenised in a thread);
`prepare_frame` (tokenise) and `label_prepared` (score, add columns) are its two halves, which
the Ray workers call directly. `OutputColumns` names the added columns, once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch

from rosprompt_cli.adapt import AdaptOptions, Centres
from rosprompt_cli.batching import EncodedTexts
from rosprompt_cli.errors import RosPromptError
from rosprompt_cli.labels import LabelSet
from rosprompt_cli.prefetch import prefetched
from rosprompt_cli.verbalizers.base import LabelVectors, Scorer


@dataclass
class LabelOptions:
    text_col: str = "text"
    batch_size: int | None = None  # None: the scorer's default for its device
    top_k: int = 1
    multi_label: bool = False
    threshold: float = 0.3
    all_scores: bool = False
    label_col: str = "label"
    score_col: str = "score"
    adapt: AdaptOptions | None = None  # centre the text vectors on the input (adapt.py)

    def __post_init__(self) -> None:
        if self.batch_size is not None and self.batch_size < 1:
            raise RosPromptError("--batch-size must be at least 1")
        if self.top_k < 1:
            raise RosPromptError("--top-k must be at least 1")
        if not 0.0 <= self.threshold <= 1.0:
            raise RosPromptError("--threshold must be between 0 and 1")


@dataclass(frozen=True)
class OutputColumns:
    """The columns `label` adds to every row, named in one place: frames are built with these
    names, and an input that already has one of them is refused."""

    label_names: tuple[str, ...]
    options: LabelOptions

    @property
    def ranks(self) -> int:
        return min(self.options.top_k, len(self.label_names))

    def label(self, rank: int = 1) -> str:
        return self.options.label_col if rank == 1 else f"{self.options.label_col}_{rank}"

    def score(self, rank: int = 1) -> str:
        return self.options.score_col if rank == 1 else f"{self.options.score_col}_{rank}"

    @property
    def multi(self) -> str:
        return f"{self.options.label_col}s"

    def score_of(self, label_name: str) -> str:
        return f"{self.options.score_col}_{label_name}"

    def names(self) -> list[str]:
        cols = [name for rank in range(1, self.ranks + 1) for name in (self.label(rank), self.score(rank))]
        if self.options.multi_label:
            cols.append(self.multi)
        if self.options.all_scores:
            cols += [self.score_of(name) for name in self.label_names]
        return cols

    def refuse_duplicates(self) -> None:
        """Two added columns with one name (e.g. --out-label-col x --out-score-col x): one would
        overwrite the other."""
        names = self.names()
        twice = sorted({c for c in names if names.count(c) > 1})
        if twice:
            raise RosPromptError(
                f"the output would add column {twice[0]!r} twice; give --out-label-col/--out-score-col other names"
            )

    def refuse_clash(self, display: str, columns: list[str]) -> None:
        """An input column with the name of a column the output adds would be overwritten."""
        self.refuse_duplicates()
        clash = [c for c in self.names() if c in columns]
        if clash:
            raise RosPromptError(
                f"{display}: already has column(s) {', '.join(map(repr, clash))} that the output "
                f"would add; pass --out-label-col/--out-score-col with other names"
            )


Centring = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (text vectors, their positions) -> centred


def score_encoded(
    scorer: Scorer, encoded: EncodedTexts, label_vectors: LabelVectors, batch_size: int | None = None,
    centre: Centring | None = None,
) -> torch.Tensor:
    """Probabilities [N, L] in input order, from length-bucketed batches; `centre`: --adapt."""
    probs = torch.empty(len(encoded), scorer.label_count(label_vectors))
    for positions, input_ids, attention_mask in encoded.batches(batch_size or scorer.default_batch_size):
        vectors = scorer.batch_vectors(input_ids, attention_mask)
        if centre is not None:
            vectors = centre(vectors, positions)
        probs[positions] = torch.softmax(scorer.logits(vectors, label_vectors), dim=-1).float().cpu()
    return probs


def text_vectors_in_order(scorer: Scorer, texts: list[str], batch_size: int | None = None) -> torch.Tensor:
    """The scorer's text vectors [N, H] of `texts`, in input order, as float32 on the CPU."""
    vectors = torch.empty(0, 0)
    for positions, input_ids, attention_mask in scorer.encode(texts).batches(batch_size or scorer.default_batch_size):
        batch = scorer.batch_vectors(input_ids, attention_mask).float().cpu()
        if vectors.numel() == 0:
            vectors = torch.empty(len(texts), batch.shape[1])
        vectors[positions] = batch
    return vectors


def score_texts(
    scorer: Scorer, texts: list[str], label_vectors: LabelVectors, batch_size: int | None = None
) -> torch.Tensor:
    """Probabilities [N, L] in input order."""
    return score_encoded(scorer, scorer.encode(texts), label_vectors, batch_size)


# What str.strip() removes (the input pre-pass counts blank texts with it), for polars, whose
# own default set differs in a few control characters. None lies beyond U+3000.
PYTHON_WHITESPACE = "".join(c for c in map(chr, range(0x3001)) if c.isspace())


@dataclass
class PreparedFrame:
    """A frame with its usable texts tokenised: the part of labelling that needs no model run."""

    frame: pl.DataFrame
    valid: np.ndarray  # [N] bool: the row has non-blank text
    encoded: EncodedTexts  # the valid rows' texts, in row order


def texts_with_text(frame: pl.DataFrame, text_col: str) -> tuple[np.ndarray, list[str]]:
    """Which rows have non-blank text, and those texts."""
    text = frame.get_column(text_col).cast(pl.String, strict=False)
    valid = (text.str.strip_chars(PYTHON_WHITESPACE).fill_null("") != "").to_numpy()
    return valid, text.filter(pl.Series(valid)).to_list()


def adapt_groups(frame: pl.DataFrame, valid: np.ndarray, adapt: AdaptOptions) -> list[str]:
    """The --adapt group of each row with text."""
    if adapt.by is None:
        return [adapt.group_of(None)] * int(valid.sum())
    values = frame.get_column(adapt.by).cast(pl.String, strict=False).filter(pl.Series(valid))
    return [adapt.group_of(value) for value in values.to_list()]


def prepare_frame(frame: pl.DataFrame, scorer: Scorer, text_col: str) -> PreparedFrame:
    valid, texts = texts_with_text(frame, text_col)
    return PreparedFrame(frame, valid, scorer.encode(texts))


def _label_series(names: pl.Series, indices: np.ndarray, valid: np.ndarray) -> pl.Series:
    positions = pl.Series(indices, dtype=pl.UInt32).scatter(np.flatnonzero(~valid), None)
    return names.gather(positions)


def _score_series(values: np.ndarray, valid: np.ndarray) -> pl.Series:
    rounded = np.where(valid, np.round(values.astype(np.float64), 6), np.nan)
    return pl.Series(rounded, dtype=pl.Float64, nan_to_null=True)


def _group_centring(centres: Centres, groups: list[str]) -> Centring:
    """Centring for the rows with text of one frame, whose groups are `groups`."""
    def centre(vectors: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return centres.centre(vectors, [groups[i] for i in positions.tolist()])
    return centre


def label_prepared(
    prepared: PreparedFrame,
    scorer: Scorer,
    label_set: LabelSet,
    label_vectors: LabelVectors,
    options: LabelOptions,
    centres: Centres | None = None,
) -> pl.DataFrame:
    """The input frame, unchanged and in order, plus the prediction columns. `centres`: with
    options.adapt, the text vectors are centred on them."""
    frame, valid = prepared.frame, prepared.valid
    columns = OutputColumns(tuple(label_set.names), options)
    probs = np.zeros((frame.height, len(label_set)), dtype=np.float32)
    centre = None
    if centres is not None and options.adapt is not None:
        centre = _group_centring(centres, adapt_groups(frame, valid, options.adapt))
    if len(prepared.encoded):
        probs[valid] = score_encoded(scorer, prepared.encoded, label_vectors, options.batch_size, centre).numpy()
    top_p, top_i = torch.from_numpy(probs).topk(columns.ranks, dim=-1)
    top_p, top_i = top_p.numpy(), top_i.numpy()
    names = pl.Series(label_set.names, dtype=pl.String)
    new: dict[str, pl.Series] = {}
    for rank in range(1, columns.ranks + 1):
        new[columns.label(rank)] = _label_series(names, top_i[:, rank - 1], valid)
        new[columns.score(rank)] = _score_series(top_p[:, rank - 1], valid)
    if options.multi_label:
        chosen: list[str | None] = []
        for row, ok in zip(probs.tolist(), valid.tolist()):
            if not ok:
                chosen.append(None)
                continue
            picked = sorted((p, label_set.names[j]) for j, p in enumerate(row) if p >= options.threshold)
            chosen.append("|".join(name for _, name in reversed(picked)))
        new[columns.multi] = pl.Series(chosen, dtype=pl.String)
    if options.all_scores:
        for j, name in enumerate(label_set.names):
            new[columns.score_of(name)] = _score_series(probs[:, j], valid)
    return frame.with_columns(**new)


def label_frames(
    frames: Iterable[pl.DataFrame],
    scorer: Scorer,
    label_set: LabelSet,
    options: LabelOptions,
    label_vectors: LabelVectors | None = None,
    centres: Centres | None = None,
) -> Iterator[pl.DataFrame]:
    """Label a stream of frames; the next frame is read and tokenised in a thread while this one
    is scored. Closing this generator stops that thread. `label_vectors`: the label set's, if
    already computed; `centres`: the --adapt centres."""
    if label_vectors is None:
        label_vectors = scorer.label_vectors(label_set)  # once per label set, not per batch
    with closing(prefetched(prepare_frame(frame, scorer, options.text_col) for frame in frames)) as chunks:
        for prepared in chunks:
            yield label_prepared(prepared, scorer, label_set, label_vectors, options, centres)
