"""Tokenising a chunk of texts at once, and cutting it into length-bucketed batches.

A chunk is tokenised in one call of the Rust tokenizer's parallel batch path (every core),
straight into one right-padded numpy array. Batches are cut from its texts sorted by token
count, each trimmed to its own longest text and bounded both in texts (`Batching.rows`) and in
tokens (`Batching.tokens`, texts times padded width): short texts travel in large batches,
long ones in small, so a batch of short texts never pays for a long one and no batch outgrows
the memory a long text needs. Every batch carries the input positions of its rows and scores
go back to those positions: batching changes neither a row's label nor the output order.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from itertools import chain
from dataclasses import dataclass

from typing import TYPE_CHECKING

import numpy as np

from rosprompt_cli.errors import RosPromptError

if TYPE_CHECKING:
    import torch

# The tokenizer's truncation and padding are settings of the tokenizer object, which the
# transformers wrapper also sets before each of its own calls: one chunk is encoded at a time.
_ENCODING = threading.Lock()


@dataclass(frozen=True)
class Batching:
    """How a chunk is cut into forward passes: at most `rows` texts, and at most `tokens` tokens
    (texts x padded width; None: no bound) per pass. A text longer than `tokens` goes alone."""

    rows: int
    tokens: int | None = None

    def __post_init__(self) -> None:
        if self.rows < 1:
            raise RosPromptError("--batch-size must be at least 1")
        if self.tokens is not None and self.tokens < 1:
            raise RosPromptError("--max-batch-tokens must be at least 1")


# Forward passes when none is given. CPU: up to 32 texts and 1,024 tokens. For the bundled model
# the batch hardly matters on a few cores (length-bucketed batches leave little padding: 8 texts,
# 16/1,024, 32/1,024 and 64/2,048 ran within 3% of one another, bench/results/cpu_batching.md),
# while a small or fast model pays a fixed cost per forward pass that larger batches of short
# texts spread out (the near-free model of bench/cpu_side.py: the score stage 1.5 s against
# 2.3 s at 8 texts). CUDA: large batches keep the device busy, bounded by tokens so that long
# texts stay within memory (the bare forward pass of the bundled model's shapes on an H200 gained
# up to batch 256 of SIB-200-sized texts, about 16k tokens: bench/results/gpu_throughput.md).
DEFAULT_BATCHING = {"cpu": Batching(rows=32, tokens=1024), "cuda": Batching(rows=512, tokens=16384)}


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
        import torch  # in the three methods that make tensors: Batching reads without torch (--help)

        lengths = torch.from_numpy(self.lengths)
        width = self.input_ids.shape[1]
        return torch.from_numpy(self.input_ids), (torch.arange(width).unsqueeze(0) < lengths.unsqueeze(1)).long()

    def bounds(self, batching: Batching | int) -> tuple[np.ndarray, list[tuple[int, int]]]:
        """The texts in order of length (shortest first, ties in input order), and each batch
        as a [start, end) range of that order."""
        if isinstance(batching, int):
            batching = Batching(batching)
        order = np.argsort(self.lengths, kind="stable")
        sorted_lengths = self.lengths[order]
        ranges: list[tuple[int, int]] = []
        start, n = 0, len(order)
        while start < n:
            end = min(start + batching.rows, n)
            if batching.tokens is not None:
                # k rows from `start` are padded to the k-th one's length: keep k * width within the
                # budget. Widths only grow, so the first k past it ends the batch (at least one row).
                fits = np.arange(1, end - start + 1) * sorted_lengths[start:end] <= batching.tokens
                if not fits.all():
                    end = start + max(1, int(np.argmin(fits)))
            ranges.append((start, end))
            start = end
        return order, ranges

    def batches(self, batching: Batching | int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(positions, input_ids, attention_mask) per batch, shortest texts first, on the CPU."""
        import torch

        order, ranges = self.bounds(batching)
        for start, end in ranges:
            positions = order[start:end]
            lengths = torch.from_numpy(self.lengths[positions])
            width = int(lengths.max())
            input_ids = torch.from_numpy(np.ascontiguousarray(self.input_ids[positions, :width]))
            attention_mask = (torch.arange(width).unsqueeze(0) < lengths.unsqueeze(1)).long()
            yield torch.from_numpy(positions), input_ids, attention_mask

    def device_batches(
        self, batching: Batching | int, device: torch.device
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """As `batches`, on the model's device. For a GPU the chunk's ids, lengths and positions
        go over once, sorted, from page-locked memory without waiting, and each batch is a slice
        of them there, so that no batch waits for a copy (or for the batch before it)."""
        if device.type == "cpu":
            return self.batches(batching)
        return self.sliced_batches(batching, device)

    def sliced_batches(
        self, batching: Batching | int, device: torch.device
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """The batches of `batches` as slices of the whole chunk, copied to `device` at once."""
        import torch

        order, ranges = self.bounds(batching)

        def moved(array: np.ndarray) -> torch.Tensor:
            tensor = torch.from_numpy(np.ascontiguousarray(array))
            return tensor.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else tensor.to(device)

        ids, lengths, positions = moved(self.input_ids[order]), moved(self.lengths[order]), moved(order)
        for start, end in ranges:
            width = int(self.lengths[order[end - 1]])
            mask = (torch.arange(width, device=device).unsqueeze(0) < lengths[start:end].unsqueeze(1)).long()
            yield positions[start:end], ids[start:end, :width], mask


def encode_texts(tokenizer: object, texts: Sequence[str], max_tokens: int) -> EncodedTexts:
    """Tokenise (with the special tokens, truncating to `max_tokens`) into one right-padded int64
    array, through the Rust tokenizer's parallel batch path when the tokenizer has one."""
    pad_id = getattr(tokenizer, "pad_token_id", None)
    pad_id = 0 if pad_id is None else int(pad_id)
    if not texts:
        return EncodedTexts(np.zeros((0, 0), dtype=np.int64), np.zeros(0, dtype=np.int64), pad_id)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:  # a tokenizer without a Rust backend: its own call
        enc = tokenizer(list(texts), padding=True, padding_side="right", truncation=True,  # type: ignore[operator]
                        max_length=max_tokens, return_tensors="np")
        lengths = enc["attention_mask"].sum(axis=1).astype(np.int64)
        return EncodedTexts(enc["input_ids"].astype(np.int64, copy=False), lengths, pad_id)
    with _ENCODING:
        backend.enable_truncation(max_tokens, stride=0, strategy="longest_first", direction="right")
        backend.no_padding()
        encodings = backend.encode_batch_fast(list(texts))
    ids = [encoding.ids for encoding in encodings]
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    flat = np.fromiter(chain.from_iterable(ids), dtype=np.int64, count=int(lengths.sum()))
    input_ids = np.full((len(ids), int(lengths.max())), pad_id, dtype=np.int64)
    input_ids[np.arange(input_ids.shape[1]) < lengths[:, None]] = flat  # row by row, left to right
    return EncodedTexts(input_ids, lengths, pad_id)
