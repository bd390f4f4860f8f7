"""Labelling frames: a polars frame in, the same frame with the prediction columns out.

`label_frames` streams frames through a scorer along the stages of pipeline.py; `prepare_frame`
(check and tokenise) and `label_prepared` (score and assemble) are its two halves, which the Ray
workers call directly. `OutputColumns` names the added columns, once; `assemble` adds them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import pyarrow as pa

from rosprompt_cli.adapt import AdaptOptions, Centres
from rosprompt_cli.batching import Batching
from rosprompt_cli.errors import RosPromptError
from rosprompt_cli.labels import LabelSet
from rosprompt_cli.pipeline import Centring, Chunk, ChunkScores, StageTimes, labelled_frames, score_chunk, text_vectors

if TYPE_CHECKING:
    import torch

    from rosprompt_cli.verbalizers.base import LabelVectors, Scorer


MULTI_LABEL_THRESHOLD = 0.3  # --multi-label: a label joins `labels` from this calibrated score


@dataclass
class LabelOptions:
    text_col: str = "text"
    batch_size: int | None = None  # texts per forward pass; None: the scorer's default for its device
    max_batch_tokens: int | None = None  # tokens per forward pass; 0: no bound; None: the scorer's default
    top_k: int = 1
    multi_label: bool = False
    threshold: float = MULTI_LABEL_THRESHOLD
    all_scores: bool = False
    label_col: str = "label"
    score_col: str = "score"
    adapt: AdaptOptions | None = None  # centre the text vectors on the input (adapt.py)
    min_score: float | None = None  # a row whose best score is below it keeps its score, but no label

    def __post_init__(self) -> None:
        if self.batch_size is not None and self.batch_size < 1:
            raise RosPromptError("--batch-size must be at least 1")
        if self.max_batch_tokens is not None and self.max_batch_tokens < 0:
            raise RosPromptError("--max-batch-tokens must be 0 (no bound) or more")
        if self.top_k < 1:
            raise RosPromptError("--top-k must be at least 1")
        if not 0.0 <= self.threshold <= 1.0:
            raise RosPromptError("--threshold must be between 0 and 1")
        if self.min_score is not None and not 0.0 <= self.min_score <= 1.0:
            raise RosPromptError("--min-score must be between 0 and 1")


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


def batching_for(scorer: Scorer, batch_size: int | None = None, max_batch_tokens: int | None = None) -> Batching:
    """The forward passes a run makes: the scorer's default for its device where not given;
    `max_batch_tokens` 0: no bound on tokens."""
    default = scorer.default_batching
    tokens = default.tokens if max_batch_tokens is None else (max_batch_tokens or None)
    return Batching(batch_size or default.rows, tokens)


def text_vectors_in_order(scorer: Scorer, texts: list[str], batching: Batching | None = None,
                          on_rows: Callable[[int], None] | None = None) -> torch.Tensor:
    """The scorer's text vectors [N, H] of `texts`, in input order, as float32 on the CPU."""
    return text_vectors(scorer, scorer.encode(texts), batching or scorer.default_batching, on_rows).float().cpu()


def score_texts(
    scorer: Scorer, texts: list[str], label_vectors: LabelVectors, batching: Batching | None = None,
    on_rows: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Probabilities [N, L] in input order; `on_rows`: progress, after every forward pass."""
    import torch  # here, not at the top: LabelOptions reads without torch (a command's --help)

    scores = score_chunk(scorer, scorer.encode(texts), label_vectors, batching or scorer.default_batching,
                         on_batch=on_rows)
    return torch.from_numpy(scores.probs)


# What str.strip() removes (the input pre-pass counts blank texts with it), for polars, whose
# own default set differs in a few control characters. None lies beyond U+3000.
PYTHON_WHITESPACE = "".join(c for c in map(chr, range(0x3001)) if c.isspace())


def texts_with_text(frame: pl.DataFrame, text_col: str) -> tuple[np.ndarray, list[str]]:
    """Which rows have non-blank text, and those texts."""
    text = frame.get_column(text_col).cast(pl.String, strict=False)
    valid = (text.str.strip_chars(PYTHON_WHITESPACE).fill_null("") != "").to_numpy()
    return valid, text.filter(pl.Series(valid)).to_list()


def adapt_groups(frame: pl.DataFrame, valid: np.ndarray, adapt: AdaptOptions) -> np.ndarray:
    """The --adapt group of each row with text (AdaptOptions.group_of, over the whole column)."""
    if adapt.by is None:
        return np.full(int(valid.sum()), adapt.group_of(None), dtype=object)
    values = frame.get_column(adapt.by).cast(pl.String, strict=False).filter(pl.Series(valid))
    return values.fill_null(adapt.group_of(None)).to_numpy().astype(object)


def prepare_frame(frame: pl.DataFrame, scorer: Scorer, options: LabelOptions, times: StageTimes | None = None) -> Chunk:
    """The check and tokenise stages of one frame."""
    times = times or StageTimes()
    with times.timing("check"):
        valid, texts = texts_with_text(frame, options.text_col)
        groups = adapt_groups(frame, valid, options.adapt) if options.adapt is not None else None
    with times.timing("tokenise"):
        encoded = scorer.encode(texts)
    return Chunk(frame, valid, encoded, groups)


def _label_series(names: pl.Series, indices: np.ndarray, valid: np.ndarray) -> pl.Series:
    positions = pl.Series(indices, dtype=pl.UInt32).scatter(np.flatnonzero(~valid), None)
    return names.gather(positions)


def _score_series(values: np.ndarray, valid: np.ndarray) -> pl.Series:
    rounded = np.where(valid, np.round(values.astype(np.float64), 6), np.nan)
    return pl.Series(rounded, dtype=pl.Float64, nan_to_null=True)


def _spread(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Rows of the valid rows' `values`, in place among all the frame's rows (zeros elsewhere)."""
    full = np.zeros((valid.shape[0], *values.shape[1:]), dtype=values.dtype)
    full[valid] = values
    return full


def _multi_labels(probs: np.ndarray, valid: np.ndarray, names: list[str], threshold: float) -> pl.Series:
    """Every label with probability >= threshold, most probable first (equal ones: the name that
    sorts last first), joined by '|'; '' when none is; null for a row without text."""
    name_rank = np.argsort(np.argsort(np.array(names, dtype=object), kind="stable"), kind="stable")
    order = np.lexsort((np.broadcast_to(-name_rank, probs.shape), -probs.astype(np.float64)), axis=-1)
    chosen = np.take_along_axis(probs.astype(np.float64) >= threshold, order, axis=-1)
    flat = np.array(names, dtype=object)[order][chosen]
    offsets = np.concatenate([[0], np.cumsum(chosen.sum(axis=1))]).astype(np.int32)
    lists = pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat.tolist(), type=pa.string()))
    joined = pl.from_arrow(lists).list.join("|")  # type: ignore[union-attr]
    return joined.scatter(np.flatnonzero(~valid), None) if len(joined) else joined


def assemble(chunk: Chunk, scores: ChunkScores, label_set: LabelSet, options: LabelOptions) -> pl.DataFrame:
    """The input frame, unchanged and in order, plus the prediction columns."""
    frame, valid = chunk.frame, chunk.valid
    columns = OutputColumns(tuple(label_set.names), options)
    top_p, top_i = _spread(scores.top_p, valid), _spread(scores.top_i, valid)
    names = pl.Series(label_set.names, dtype=pl.String)
    new: dict[str, pl.Series] = {}
    labelled = valid
    if options.min_score is not None:  # compared as the score is written, so that what a user reads decides
        labelled = valid & (np.round(top_p[:, 0].astype(np.float64), 6) >= options.min_score)
    for rank in range(1, columns.ranks + 1):
        new[columns.label(rank)] = _label_series(names, top_i[:, rank - 1], labelled if rank == 1 else valid)
        new[columns.score(rank)] = _score_series(top_p[:, rank - 1], valid)
    if options.multi_label or options.all_scores:
        probs = _spread(scores.probs, valid)
        if options.multi_label:
            new[columns.multi] = _multi_labels(probs, valid, list(label_set.names), options.threshold)
        if options.all_scores:
            for j, name in enumerate(label_set.names):
                new[columns.score_of(name)] = _score_series(probs[:, j], valid)
    return frame.with_columns(**new)


def label_prepared(
    chunk: Chunk,
    scorer: Scorer,
    label_set: LabelSet,
    label_vectors: LabelVectors,
    options: LabelOptions,
    centres: Centres | None = None,
    times: StageTimes | None = None,
    on_rows: Callable[[int], None] | None = None,
) -> pl.DataFrame:
    """The score and assemble stages of one frame. `centres`: with options.adapt, the text vectors
    are centred on them. `on_rows`: progress, per batch scored (and the blank rows at the end)."""
    times = times or StageTimes()
    centre = (Centring(partial(centres.centre, groups=chunk.groups), centres.moves(chunk.groups))
              if centres is not None and chunk.groups is not None else None)
    with times.timing("score"):
        scores = score_chunk(scorer, chunk.encoded, label_vectors,
                             batching_for(scorer, options.batch_size, options.max_batch_tokens),
                             OutputColumns(tuple(label_set.names), options).ranks, centre, on_rows)
    with times.timing("assemble"):
        labelled = assemble(chunk, scores, label_set, options)
    if on_rows is not None and len(chunk.encoded) < chunk.frame.height:
        on_rows(chunk.frame.height - len(chunk.encoded))
    return labelled


def label_frames(
    frames: Iterable[pl.DataFrame],
    scorer: Scorer,
    label_set: LabelSet,
    options: LabelOptions,
    label_vectors: LabelVectors | None = None,
    centres: Centres | None = None,
    times: StageTimes | None = None,
    on_rows: Callable[[int], None] | None = None,
) -> Iterator[pl.DataFrame]:
    """Label a stream of frames (pipeline.labelled_frames: the next frames are read and tokenised
    in a thread while this one is scored). Closing this generator stops that thread.
    `label_vectors`: the label set's, if already computed; `centres`: the --adapt centres;
    `times`: the stages' seconds are added there; `on_rows`: progress, per batch."""
    if label_vectors is None:
        label_vectors = scorer.label_vectors(label_set)  # once per label set, not per batch
    times = times or StageTimes()
    return labelled_frames(
        frames, lambda frame: prepare_frame(frame, scorer, options, times),
        lambda chunk: label_prepared(chunk, scorer, label_set, label_vectors, options, centres, times, on_rows),
        times,
    )
