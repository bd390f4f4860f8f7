"""The `label` pipeline, in one place: stages joined by bounded queues, each one timed.

    read      the input's next frame of `chunk_rows` rows (io.TableSource.iter_batches, polars)
    check     which rows have text, and their texts (and --adapt groups): polars over the frame
    tokenise  every text of the frame in one call of the Rust tokenizer (all cores), into one
              numpy array (batching.encode_texts)
    score     the frame's texts in length-bucketed batches, bounded by texts and by tokens,
              through the model; the frame's text vectors stay on the model's device, where the
              logits, the softmax and the top-k are computed once for the frame and copied back
              once (score_chunk)
    assemble  the prediction columns beside the input's (frames.assemble: polars and numpy)
    write     the output, the progress file and the counts (the caller's `write`)

read, check and tokenise run in one background thread, up to two frames ahead; score and
assemble run in the calling thread (where SIGINT lands, and where the GPU is driven); write runs
in its own thread, up to two frames behind. Memory is bounded by those queues, whatever the size
of the input. Every stage adds its busy seconds to a StageTimes (`--summary` "stage_seconds"):
the stages overlap, so the largest of them, not their sum, bounds the run.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from rosprompt_cli.batching import Batching, EncodedTexts
from rosprompt_cli.prefetch import prefetched

if TYPE_CHECKING:
    import torch

    from rosprompt_cli.verbalizers.base import LabelVectors, Scorer

STAGES = ("read", "check", "tokenise", "score", "assemble", "write")
DEPTH = 2  # frames queued between two stages


@dataclass(frozen=True)
class Centring:
    """--adapt for one chunk: `centre` maps its text vectors (rows with text, in order) to centred
    ones; `rows` [M] says which rows it moved (a group left as it was keeps the plain calibration)."""

    centre: Callable[[torch.Tensor], torch.Tensor]
    rows: np.ndarray


class StageTimes:
    """Busy seconds per stage, added to from any thread."""

    def __init__(self) -> None:
        self._seconds = dict.fromkeys(STAGES, 0.0)
        self._lock = threading.Lock()

    @contextmanager
    def timing(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            with self._lock:
                self._seconds[stage] += elapsed

    def as_dict(self) -> dict[str, float]:
        with self._lock:
            return {stage: round(seconds, 3) for stage, seconds in self._seconds.items()}


@dataclass
class ChunkScores:
    """A frame's scores, for its rows with text, in row order."""

    probs: np.ndarray  # [M, L] float32: the calibrated softmax over the label set
    top_p: np.ndarray  # [M, K] the K best probabilities, best first
    top_i: np.ndarray  # [M, K] their labels' indices
    logits: np.ndarray  # [M, L] float32: before calibration (eval --calibrate fits on them)


def text_vectors(
    scorer: Scorer, encoded: EncodedTexts, batching: Batching, on_batch: Callable[[int], None] | None = None
) -> torch.Tensor:
    """The scorer's text vectors [N, H] of an encoded chunk, in input order, on the model's device."""
    import torch

    vectors: torch.Tensor | None = None
    for positions, input_ids, attention_mask in encoded.device_batches(batching, scorer.backbone.device):
        batch = scorer.batch_vectors(input_ids, attention_mask)
        if vectors is None:
            vectors = batch.new_empty((len(encoded), batch.shape[1]))
        vectors[positions.to(batch.device)] = batch
        if on_batch is not None:
            on_batch(len(positions))
    return vectors if vectors is not None else torch.empty(0, 0)


def score_chunk(
    scorer: Scorer, encoded: EncodedTexts, label_vectors: LabelVectors, batching: Batching, ranks: int = 1,
    centre: Centring | None = None, on_batch: Callable[[int], None] | None = None,
) -> ChunkScores:
    """Probabilities of every label for an encoded chunk, and the `ranks` best, in input order.
    `centre`: --adapt, applied to the chunk's text vectors before the cosines."""
    import torch  # here, not at the top: the label options read without torch (a command's --help)

    labels = scorer.label_count(label_vectors)
    if len(encoded) == 0:
        empty = np.zeros((0, labels), dtype=np.float32)
        return ChunkScores(empty, empty[:, :ranks], np.zeros((0, ranks), dtype=np.int64), empty)
    with torch.inference_mode():
        vectors = text_vectors(scorer, encoded, batching, on_batch)
        centred: np.ndarray | bool = False
        if centre is not None:
            vectors, centred = centre.centre(vectors), centre.rows
        return scores_of(scorer, scorer.logits(vectors, label_vectors), ranks, centred)


def scores_of(scorer: Scorer, logits: torch.Tensor, ranks: int = 1, centred: np.ndarray | bool = False) -> ChunkScores:
    """The calibrated probabilities of a chunk's logits and their `ranks` best, computed where the
    logits are and copied back once. `centred`: which rows' logits are of --adapt's centred text
    vectors (all, none, or [M] bool)."""
    probs = scorer.probabilities(logits, centred)
    top_p, top_i = probs.topk(min(ranks, probs.shape[-1]), dim=-1)
    return ChunkScores(probs.cpu().numpy(), top_p.cpu().numpy(), top_i.cpu().numpy(), logits.float().cpu().numpy())


@dataclass
class Chunk:
    """A frame after check and tokenise: the part of labelling that needs no model."""

    frame: pl.DataFrame
    valid: np.ndarray  # [N] bool: the row has non-blank text
    encoded: EncodedTexts  # the texts of the valid rows, in row order
    groups: np.ndarray | None = None  # --adapt: the group of each valid row


class Behind:
    """`consume(item)` for each item put, in a thread of its own, at most `depth` items behind
    the caller. The consumer's error is raised in the caller, at its next `put` or at `finish`."""

    def __init__(self, consume: Callable[[object], None], depth: int = DEPTH, name: str = "rosprompt-write") -> None:
        self._consume = consume
        self._items: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._items.get()
            if item is _END or self._stop.is_set():
                return
            try:
                self._consume(item)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, which raises it
                self._error = exc
                self._stop.set()
                return

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, item: object) -> None:
        while True:
            self._raise_error()
            try:
                self._items.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def finish(self) -> None:
        """Wait until every item put is consumed; raise the consumer's error, if any."""
        self.put(_END)
        self._thread.join()
        self._raise_error()

    def stop(self) -> None:
        """After an error upstream: drop what is queued, let the item in hand finish, and wait."""
        self._stop.set()
        while True:
            try:
                self._items.get_nowait()
            except queue.Empty:
                break
        self._items.put(_END)
        self._thread.join()


_END = object()


def prepared_chunks(
    frames: Iterable[pl.DataFrame], prepare: Callable[[pl.DataFrame], Chunk], times: StageTimes
) -> Iterator[Chunk]:
    """The read stage, then `prepare` (check and tokenise, which time themselves), frame by frame."""
    source = iter(frames)
    while True:
        with times.timing("read"):
            frame = next(source, None)
        if frame is None:
            return
        yield prepare(frame)


def labelled_frames(
    frames: Iterable[pl.DataFrame],
    prepare: Callable[[pl.DataFrame], Chunk],
    label: Callable[[Chunk], pl.DataFrame],
    times: StageTimes,
) -> Iterator[pl.DataFrame]:
    """Frames with their prediction columns, in input order: read, check and tokenise run a few
    frames ahead in a thread; `label` (score and assemble) runs here. Closing this generator
    stops that thread."""
    with closing(prefetched(prepared_chunks(frames, prepare, times), depth=DEPTH)) as chunks:
        for chunk in chunks:
            yield label(chunk)


def write_all(labelled: Iterable[pl.DataFrame], write: Callable[[pl.DataFrame], None], times: StageTimes) -> None:
    """The write stage: `write(frame)` for every labelled frame, in its own thread, in order.
    An error anywhere stops both sides; the writer's own error is raised here."""
    def timed_write(frame: object) -> None:
        with times.timing("write"):
            write(frame)  # type: ignore[arg-type]

    behind = Behind(timed_write)
    try:
        for frame in labelled:
            behind.put(frame)
        behind.finish()
    except BaseException:
        behind.stop()
        raise
