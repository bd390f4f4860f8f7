"""Length-bucketed batches with dynamic padding.

A chunk of texts is tokenised once into one right-padded array. Batches are cut from the texts
sorted by token count and trimmed to their own longest text, so a batch of short texts never
pays for a long one. Every batch carries the input positions of its rows, and scores are written
back to those positions: batching changes neither a row's label nor the output order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class EncodedTexts:
    """Token ids of a chunk of texts: `input_ids` [N, T] right-padded with `pad_id`."""

    input_ids: np.ndarray
    lengths: np.ndarray  # [N] tokens per text, special tokens included
    pad_id: int

    def __len__(self) -> int:
        return int(self.lengths.shape[0])

    @property
    def tokens(self) -> int:
        return int(self.lengths.sum())

    def padded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids, attention_mask) of every text, right-padded to the longest."""
        lengths = torch.from_numpy(self.lengths)
        width = self.input_ids.shape[1]
        return torch.from_numpy(self.input_ids), (torch.arange(width).unsqueeze(0) < lengths.unsqueeze(1)).long()

    def batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(positions, input_ids, attention_mask) per batch, shortest texts first."""
        order = np.argsort(self.lengths, kind="stable")
        for start in range(0, len(order), batch_size):
            positions = order[start : start + batch_size]
            lengths = torch.from_numpy(self.lengths[positions])
            width = int(lengths.max())
            input_ids = torch.from_numpy(np.ascontiguousarray(self.input_ids[positions, :width]))
            attention_mask = (torch.arange(width).unsqueeze(0) < lengths.unsqueeze(1)).long()
            yield torch.from_numpy(positions), input_ids, attention_mask


def encode_texts(tokenizer: object, texts: list[str], max_tokens: int) -> EncodedTexts:
    """Tokenise (truncating to `max_tokens`) into one right-padded int64 array."""
    pad_id = getattr(tokenizer, "pad_token_id", None)
    pad_id = 0 if pad_id is None else int(pad_id)
    if not texts:
        return EncodedTexts(np.zeros((0, 0), dtype=np.int64), np.zeros(0, dtype=np.int64), pad_id)
    enc = tokenizer(  # type: ignore[operator]
        texts,
        padding=True,
        padding_side="right",
        truncation=True,
        max_length=max_tokens,
        return_tensors="np",
    )
    lengths = enc["attention_mask"].sum(axis=1).astype(np.int64)
    return EncodedTexts(enc["input_ids"].astype(np.int64, copy=False), lengths, pad_id)
