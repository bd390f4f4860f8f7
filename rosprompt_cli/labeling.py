"""`label`: stream a table through the scorer and write it back with the predicted labels."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import polars as pl
import torch

from rosprompt_cli.batching import EncodedTexts
from rosprompt_cli.errors import RosPromptError
from rosprompt_cli.io import TableSource, require_columns
from rosprompt_cli.labels import LabelSet
from rosprompt_cli.prefetch import prefetched
from rosprompt_cli.scorers import LabelVectors, Scorer


class RunCounts(Protocol):
    """What a run counts of its output (label_run.RunSummary, ray_engine.RayResult)."""

    rows: int
    labelled: int
    empty_text: int
    label_counts: Counter


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

    def __post_init__(self) -> None:
        if self.batch_size is not None and self.batch_size < 1:
            raise RosPromptError("--batch-size must be at least 1")
        if self.top_k < 1:
            raise RosPromptError("--top-k must be at least 1")
        if not 0.0 <= self.threshold <= 1.0:
            raise RosPromptError("--threshold must be between 0 and 1")


def added_columns(label_names: list[str], options: LabelOptions) -> list[str]:
    cols = [options.label_col, options.score_col]
    for rank in range(2, min(options.top_k, len(label_names)) + 1):
        cols += [f"{options.label_col}_{rank}", f"{options.score_col}_{rank}"]
    if options.multi_label:
        cols.append(f"{options.label_col}s")
    if options.all_scores:
        cols += [f"{options.score_col}_{name}" for name in label_names]
    return cols


def score_encoded(
    scorer: Scorer, encoded: EncodedTexts, label_vectors: LabelVectors, batch_size: int | None = None
) -> torch.Tensor:
    """Probabilities [N, L] in input order, from length-bucketed batches."""
    probs = torch.empty(len(encoded), scorer.label_count(label_vectors))
    for positions, input_ids, attention_mask in encoded.batches(batch_size or scorer.default_batch_size):
        logits = scorer.logits(scorer.batch_vectors(input_ids, attention_mask), label_vectors)
        probs[positions] = torch.softmax(logits, dim=-1).float().cpu()
    return probs


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


def prepare_frame(frame: pl.DataFrame, scorer: Scorer, text_col: str) -> PreparedFrame:
    text = frame.get_column(text_col).cast(pl.String, strict=False)
    valid = (text.str.strip_chars(PYTHON_WHITESPACE).fill_null("") != "").to_numpy()
    texts = text.filter(pl.Series(valid)).to_list()
    return PreparedFrame(frame, valid, scorer.encode(texts))


def _label_series(names: pl.Series, indices: np.ndarray, valid: np.ndarray) -> pl.Series:
    positions = pl.Series(indices, dtype=pl.UInt32).scatter(np.flatnonzero(~valid), None)
    return names.gather(positions)


def _score_series(values: np.ndarray, valid: np.ndarray) -> pl.Series:
    rounded = np.where(valid, np.round(values.astype(np.float64), 6), np.nan)
    return pl.Series(rounded, dtype=pl.Float64, nan_to_null=True)


def label_prepared(
    prepared: PreparedFrame,
    scorer: Scorer,
    label_set: LabelSet,
    label_vectors: LabelVectors,
    options: LabelOptions,
) -> pl.DataFrame:
    """The input frame, unchanged and in order, plus the prediction columns."""
    frame, valid = prepared.frame, prepared.valid
    n_labels = len(label_set)
    probs = np.zeros((frame.height, n_labels), dtype=np.float32)
    if len(prepared.encoded):
        probs[valid] = score_encoded(scorer, prepared.encoded, label_vectors, options.batch_size).numpy()
    k = min(options.top_k, n_labels)
    top_p, top_i = torch.from_numpy(probs).topk(k, dim=-1)
    top_p, top_i = top_p.numpy(), top_i.numpy()
    names = pl.Series(label_set.names, dtype=pl.String)
    new: dict[str, pl.Series] = {
        options.label_col: _label_series(names, top_i[:, 0], valid),
        options.score_col: _score_series(top_p[:, 0], valid),
    }
    for rank in range(1, k):
        new[f"{options.label_col}_{rank + 1}"] = _label_series(names, top_i[:, rank], valid)
        new[f"{options.score_col}_{rank + 1}"] = _score_series(top_p[:, rank], valid)
    if options.multi_label:
        chosen: list[str | None] = []
        for row, ok in zip(probs.tolist(), valid.tolist()):
            if not ok:
                chosen.append(None)
                continue
            picked = sorted((p, label_set.names[j]) for j, p in enumerate(row) if p >= options.threshold)
            chosen.append("|".join(name for _, name in reversed(picked)))
        new[f"{options.label_col}s"] = pl.Series(chosen, dtype=pl.String)
    if options.all_scores:
        for j, name in enumerate(label_set.names):
            new[f"{options.score_col}_{name}"] = _score_series(probs[:, j], valid)
    return frame.with_columns(**new)


def label_frames(
    frames: Iterable[pl.DataFrame],
    scorer: Scorer,
    label_set: LabelSet,
    options: LabelOptions,
    label_vectors: LabelVectors | None = None,
) -> Iterator[pl.DataFrame]:
    """Label a stream of frames; the next frame is read and tokenised in a thread while this one
    is scored. Closing this generator stops that thread. `label_vectors`: the label set's, if
    already computed."""
    if label_vectors is None:
        label_vectors = scorer.label_vectors(label_set)  # once per label set, not per batch
    with closing(prefetched(prepare_frame(frame, scorer, options.text_col) for frame in frames)) as chunks:
        for prepared in chunks:
            yield label_prepared(prepared, scorer, label_set, label_vectors, options)


def check_output_columns(source: TableSource, label_names: list[str], options: LabelOptions) -> None:
    refuse_column_clash(source.display, require_columns(source, {"--text-col": options.text_col}), label_names, options)


def refuse_column_clash(display: str, columns: list[str], label_names: list[str], options: LabelOptions) -> None:
    """An input column with the name of a column the output adds would be overwritten."""
    clash = [c for c in added_columns(label_names, options) if c in columns]
    if clash:
        raise RosPromptError(
            f"{display}: already has column(s) {', '.join(map(repr, clash))} that the output "
            f"would add; pass --out-label-col/--out-score-col with other names"
        )


def tally_labels(counts: RunCounts, labels: pl.Series) -> None:
    """Add a labelled chunk's label column to the run's counts (a null label: empty text)."""
    counts.rows += labels.len()
    counts.empty_text += labels.null_count()
    counts.labelled += labels.len() - labels.null_count()
    for label, n in labels.drop_nulls().value_counts().iter_rows():
        counts.label_counts[label] += n
