"""`label`: stream a table through the scorer and write it back with the predicted labels."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import polars as pl
import torch

from rosprompt_cli.errors import RosPromptError
from rosprompt_cli.io import TableSource, require_columns
from rosprompt_cli.labels import LabelSet
from rosprompt_cli.scoring import EmbeddingScorer


@dataclass
class LabelOptions:
    text_col: str = "text"
    batch_size: int = 32
    top_k: int = 1
    multi_label: bool = False
    threshold: float = 0.3
    all_scores: bool = False
    label_col: str = "label"
    score_col: str = "score"

    def __post_init__(self) -> None:
        if self.batch_size < 1:
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


def score_texts(
    scorer: EmbeddingScorer, texts: list[str], label_vectors: torch.Tensor, batch_size: int
) -> torch.Tensor:
    """Probabilities [N, L] in input order; texts are batched by length to cut padding."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    probs = torch.empty(len(texts), label_vectors.shape[0])
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        vectors = scorer.text_vectors([texts[i] for i in idx])
        probs[idx] = torch.softmax(scorer.logits(vectors, label_vectors), dim=-1).float().cpu()
    return probs


def label_frame(
    frame: pl.DataFrame,
    scorer: EmbeddingScorer,
    label_set: LabelSet,
    label_vectors: torch.Tensor,
    options: LabelOptions,
) -> pl.DataFrame:
    """The input frame, unchanged and in order, plus the prediction columns."""
    raw = frame.get_column(options.text_col).cast(pl.String, strict=False).to_list()
    valid = [i for i, t in enumerate(raw) if t is not None and t.strip()]
    n_labels = len(label_set)
    probs = torch.full((len(raw), n_labels), float("nan"))
    if valid:
        probs[valid] = score_texts(scorer, [raw[i] for i in valid], label_vectors, options.batch_size)
    k = min(options.top_k, n_labels)
    top_p, top_i = probs.nan_to_num(-1.0).topk(k, dim=-1)
    names = label_set.names
    is_valid = torch.zeros(len(raw), dtype=torch.bool)
    is_valid[valid] = True

    def label_column(rank: int) -> list[str | None]:
        return [names[j] if ok else None for j, ok in zip(top_i[:, rank].tolist(), is_valid.tolist())]

    def score_column(rank: int) -> list[float | None]:
        return [round(p, 6) if ok else None for p, ok in zip(top_p[:, rank].tolist(), is_valid.tolist())]

    new: dict[str, pl.Series] = {
        options.label_col: pl.Series(label_column(0), dtype=pl.String),
        options.score_col: pl.Series(score_column(0), dtype=pl.Float64),
    }
    for rank in range(1, k):
        new[f"{options.label_col}_{rank + 1}"] = pl.Series(label_column(rank), dtype=pl.String)
        new[f"{options.score_col}_{rank + 1}"] = pl.Series(score_column(rank), dtype=pl.Float64)
    if options.multi_label:
        chosen = []
        for row, ok in zip(probs.tolist(), is_valid.tolist()):
            if not ok:
                chosen.append(None)
                continue
            picked = sorted((p, names[j]) for j, p in enumerate(row) if p >= options.threshold)
            chosen.append("|".join(name for _, name in reversed(picked)))
        new[f"{options.label_col}s"] = pl.Series(chosen, dtype=pl.String)
    if options.all_scores:
        for j, name in enumerate(names):
            column = [round(p, 6) if ok else None for p, ok in zip(probs[:, j].tolist(), is_valid.tolist())]
            new[f"{options.score_col}_{name}"] = pl.Series(column, dtype=pl.Float64)
    return frame.with_columns(**new)


def label_frames(
    frames: Iterable[pl.DataFrame],
    scorer: EmbeddingScorer,
    label_set: LabelSet,
    options: LabelOptions,
) -> Iterator[pl.DataFrame]:
    label_vectors = scorer.label_vectors(label_set)  # once per label set, not per batch
    for frame in frames:
        yield label_frame(frame, scorer, label_set, label_vectors, options)


def check_output_columns(source: TableSource, label_names: list[str], options: LabelOptions) -> None:
    columns = require_columns(source, {"--text-col": options.text_col})
    clash = [c for c in added_columns(label_names, options) if c in columns]
    if clash:
        raise RosPromptError(
            f"{source.display}: already has column(s) {', '.join(map(repr, clash))} that the output "
            f"would add; pass --out-label-col/--out-score-col with other names"
        )
