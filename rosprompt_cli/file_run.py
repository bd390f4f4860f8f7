"""One input file labelled into one published output: the reliability around frames.py.

Order of work, so that bad input fails before any model work and nothing is ever lost:
1. lock the output path (a second run on the same output stops at once);
2. pre-pass over the input (input_check.py): unusable rows fail the run (`--on-error fail`) or
   go to the rejects file with their line and reason (`--on-error skip`);
3. label in chunks of `chunk_rows`; after each chunk the partial output is made durable and the
   progress file records it (resume.py);
4. publish the output (atomic rename) and the rejects file; remove the progress file; record
   the run's fingerprint for a later --resume (resume.DoneRecord, in the cache).
An interruption keeps the partial output and the progress file for `--resume`; any other
failure removes them.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from rosprompt_cli.adapt import Centres, SavedCentres, estimate_streaming, refuse_adapt
from rosprompt_cli.errors import RosPromptError, WriteFailed, check_choice, write_failed
from rosprompt_cli.formats import STDIO, STDOUT_NAME, format_from_path
from rosprompt_cli.frames import (
    LabelOptions,
    OutputColumns,
    adapt_groups,
    batching_for,
    label_frames,
    text_vectors_in_order,
    texts_with_text,
)
from rosprompt_cli.input_check import FAIL_ON_UNCLOSED_QUOTE, SKIP_ADVICE, UNCLOSED_QUOTE, FailOnReject, InputFindings, RejectSink
from rosprompt_cli.interrupt import SIGNAL_NAMES, Interrupted
from rosprompt_cli.readers import open_source, require_columns
from rosprompt_cli.labels import LabelSet
from rosprompt_cli.output import (
    OutputLock,
    TableWriter,
    check_output_path,
    empty_checkpoint,
    refuse_unwritable,
    sidecar,
    start_from_published,
)
from rosprompt_cli.pipeline import StageTimes, write_all
from rosprompt_cli.resume import DoneRecord, InputExtent, RunState, run_fingerprint
from rosprompt_cli.seen import SeenStore, default_store
from rosprompt_cli.summary import RunSummary, counts_of, restore_counts, run_status, tally_labels

if TYPE_CHECKING:
    from rosprompt_cli.verbalizers.base import Scorer

ON_ERROR = ("skip", "fail")
STDOUT_REJECTS = "rosprompt-rejects.jsonl"
DEFAULT_CHUNK_ROWS = 2048


@dataclass(frozen=True, kw_only=True)
class FileOptions:
    """How a label run reads its input and writes its output: stated once, for the whole run
    (job.LabelJob) and for the run of one file (RunRequest), which both take these fields
    (keyword-only) from here."""

    fmt: str | None = None
    out_format: str | None = None
    unclosed_quote: str = FAIL_ON_UNCLOSED_QUOTE
    force: bool = False
    resume: bool = False
    new_only_by: str | None = None  # the key column: label only the items no earlier run labelled
    seen_store: str | None = None  # where the keys are kept; default: seen.default_store(out)

    def check_file_options(self, out: str) -> None:
        check_choice("--unclosed-quote", self.unclosed_quote, UNCLOSED_QUOTE)
        check_new_only_by(self.new_only_by, self.seen_store, out)

    def file_options(self) -> dict[str, object]:
        """These fields by name, to hand on to a RunRequest."""
        return {f.name: getattr(self, f.name) for f in fields(FileOptions)}


@dataclass(frozen=True)
class RunRequest(FileOptions):
    """Where one file's `label` run reads and writes, and how it treats bad rows."""

    input: str
    out: str = STDIO
    on_error: str = "skip"
    rejects: str | None = None
    chunk_rows: int = DEFAULT_CHUNK_ROWS

    def __post_init__(self) -> None:
        check_choice("--on-error", self.on_error, ON_ERROR)
        self.check_file_options(self.out)
        check_chunk_rows(self.chunk_rows)
        if self.resume and self.out == STDIO:
            raise RosPromptError("--resume needs --out FILE: output sent to stdout cannot be continued")

    def store_path(self) -> Path | None:
        """The seen store of a --new-only-by run."""
        if self.new_only_by is None:
            return None
        return Path(self.seen_store) if self.seen_store else default_store(Path(self.out))


def check_new_only_by(key_col: str | None, seen_store: str | None, out: str) -> None:
    if seen_store is not None and key_col is None:
        raise RosPromptError("--seen-store keeps the keys of --new-only-by; pass --new-only-by COL too")
    if key_col is not None and not key_col.strip():
        raise RosPromptError("--new-only-by needs a column name")
    if key_col is not None and out == STDIO:
        raise RosPromptError("--new-only-by needs --out FILE: an item sent to stdout cannot be known to have been kept")


def rejects_path(out: str, rejects: str | None) -> Path:
    """Where rows set aside go: --rejects, else OUT's name with .rejects.jsonl, else (stdout)
    ./rosprompt-rejects.jsonl."""
    if rejects:
        return Path(rejects)
    if out == STDIO:
        return Path(STDOUT_REJECTS)
    return Path(out).with_name(Path(out).stem + ".rejects.jsonl")


def run_files(input: str, out: str, rejects: str | None, summary: str | None) -> dict[str, str | Path | None]:
    """The files one single-file run touches, by role."""
    named: dict[str, str | Path | None] = {"the input": input, "--out": out}
    if out != STDIO:
        for role in ("partial", "lock", "state", "centres"):
            named[f"the --out {role} file"] = sidecar(Path(out), role)
    named["--rejects"] = rejects_path(out, rejects)
    named["--summary"] = summary
    return named


def check_chunk_rows(rows: int) -> int:
    if rows < 1:
        raise RosPromptError("--chunk-rows must be at least 1")
    return rows


class _ChunkProgress:
    """Where the chunk loop stands. `position`: usable input rows done (written, or skipped as
    seen); the chunks read and not yet written, with their input rows and rows skipped (the read
    stage runs ahead of the write stage); `boundary`: the progress saved after the last full
    chunk, where a run over this input grown at its end goes on from."""

    def __init__(self, chunk_rows: int, progress: dict | None, empty: dict) -> None:
        self.chunk_rows = chunk_rows
        self.position = int(progress.get("position", progress["rows"])) if progress else 0
        self.saved_position = self.position  # where a resumed run would continue
        self.boundary = progress if progress and self.position % chunk_rows == 0 else empty
        self._read_at = self.position
        self._in_flight: deque[tuple[int, int]] = deque()

    def next_chunk(self) -> int:
        """The number of the chunk about to be read (the seen store files keys by it)."""
        return self._read_at // self.chunk_rows

    def read(self, rows: int, skipped: int) -> None:
        self._read_at += rows
        self._in_flight.append((rows, skipped))

    def written(self) -> int:
        """The oldest chunk read is written: the rows it skipped as seen."""
        rows, skipped = self._in_flight.popleft()
        self.position += rows
        return skipped

    def saved(self, progress: dict) -> None:
        self.saved_position = self.position
        if self.position and self.position % self.chunk_rows == 0:
            self.boundary = progress


class FileRun:
    """One input file to one output. Use as a context manager: `prepare()` (no model needed),
    then `execute(scorer, labels)`."""

    def __init__(self, request: RunRequest, options: LabelOptions, label_names: list[str]) -> None:
        self.request = request
        self.options = options
        self.label_names = label_names
        self.source = open_source(request.input, request.fmt, request.unclosed_quote)
        self.source.key_col = request.new_only_by
        if request.out == STDIO:
            fmt = request.out_format or (self.source.fmt if self.source.fmt != "parquet" else "jsonl")
            self.out_fmt = format_from_path(request.out, fmt, what="output")
            self.target: Path | None = None
        else:
            self.out_fmt = format_from_path(request.out, request.out_format, what="output")
            self.target = Path(request.out)
        self.rejects_path = rejects_path(request.out, request.rejects)
        self._rejects_partial = sidecar(self.rejects_path, "partial")
        self._lock = OutputLock(self.target) if self.target else None
        # two runs whose rows set aside would go to one file (stdout runs in one folder, or
        # --out day.csv and --out day.jsonl) must not share it: the second is refused up front
        self._rejects_lock = OutputLock(self.rejects_path, "rejects file", "pass --rejects FILE")
        self._rejects_stream = None
        store = request.store_path()
        self.store = SeenStore(store, self.target) if store is not None and self.target is not None else None
        self.sink = RejectSink()
        self.findings: InputFindings | None = None
        self.summary = RunSummary(input=self.source.display, output=request.out if self.target else STDOUT_NAME)
        self.centres_file = SavedCentres(self.target)

    def __enter__(self) -> FileRun:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._rejects_stream is not None:
            self._rejects_stream.close()
            self._rejects_partial.unlink(missing_ok=True)
        self.source.close()
        if self.store is not None:
            self.store.close()
        if self._lock is not None:
            self._lock.release()
        self._rejects_lock.release()

    def prepare(self) -> InputFindings:
        """Lock the output, check it can be written, and check every input row."""
        if self.target is not None:
            assert self._lock is not None
            # with --resume an existing output is decided on once the fingerprint is known (execute)
            check_output_path(self.target, self.request.force or self.request.resume)
            self._lock.acquire()
        if self.store is not None:
            self.store.open()  # a damaged or unwritable store stops the run here, before any work
            self.summary.seen_store = str(self.store.path)
        if self.request.on_error == "skip":
            check_output_path(self.rejects_path, True)
            self._rejects_lock.acquire()
            self._rejects_stream = open(self._rejects_partial, "w", encoding="utf-8")
            self.sink = RejectSink(self._rejects_stream, self.rejects_path)
            findings = self.source.check(self.options.text_col, self.sink)
            try:  # a full disk shows here, before any labelling, and not after the output is published
                self._rejects_stream.flush()
                os.fsync(self._rejects_stream.fileno())
            except OSError as exc:
                raise write_failed(self.rejects_path, exc) from exc
        else:
            findings = self.source.check(self.options.text_col, FailOnReject(self.source.display, SKIP_ADVICE))
        if self.sink.count and self.rejects_path.exists() and not (self.request.force or self.request.resume):
            raise RosPromptError(f"{self.rejects_path}: rejects file exists; pass --force to overwrite it")
        if findings.columns or findings.rows:
            wanted = {"--text-col": self.options.text_col}
            if self.options.adapt is not None and self.options.adapt.by is not None:
                wanted["--adapt-by"] = self.options.adapt.by
            if self.request.new_only_by is not None:
                wanted["--new-only-by"] = self.request.new_only_by
            columns = require_columns(self.source, wanted)
            OutputColumns(tuple(self.label_names), self.options).refuse_clash(self.source.display, columns)
            if self.source.schema is not None:
                refuse_unwritable(self.source.display, self.out_fmt, self.source.schema)
        self.findings = findings
        self.summary.rows_read = findings.rows + self.sink.count
        self.summary.rejected = self.sink.count
        self.summary.rejected_by_reason = dict(self.sink.by_reason.most_common())
        return findings

    def fingerprint(self, scorer: Scorer, label_set: LabelSet) -> dict[str, str]:
        """resume.run_fingerprint of this run: its input, and every option that shapes its output."""
        return run_fingerprint(self.source.path, scorer, label_set, {
            **asdict(self.options),
            "out_format": self.out_fmt,
            "chunk_rows": self.request.chunk_rows,
            "on_error": self.request.on_error,
            "unclosed_quote": self.request.unclosed_quote,
            "new_only_by": self.request.new_only_by,
        })

    def execute(
        self, scorer: Scorer, label_set: LabelSet, on_rows: Callable[[int], None] | None = None,
        on_resumed: Callable[[int], None] | None = None,
    ) -> RunSummary:
        """Label the rows `prepare` checked. `on_rows(n)`: n more rows done (after every forward
        pass, the blank rows of each chunk, and the rows skipped as seen); `on_resumed(n)`: a
        resumed run starts after the n rows an earlier run did."""
        assert self.findings is not None, "prepare() first"
        if self.options.adapt is not None:
            refuse_adapt(scorer)
        summary = self.summary
        summary.model = {
            "name": scorer.backbone.name, "content_hash": scorer.backbone.content_hash,
            "precision": scorer.backbone.precision, "runtime": scorer.backbone.runtime,
            "device": str(scorer.backbone.device),
            "verbalizer": scorer.verbalizer,
        }
        summary.labels = list(label_set.names)
        fingerprint = self.fingerprint(scorer, label_set) if self.target else {}
        state = RunState(self.target, fingerprint) if self.target else None
        progress = state.load_for_resume() if (state and self.request.resume) else None
        if progress is None and self.request.resume and self.target is not None and self.target.exists():
            published = DoneRecord(self.target).published_for(fingerprint, self.source.path, self._extent(),
                                                              self._growth_refused())
            if published.counts is not None:
                return self._complete_already(published.counts)
            progress = self._continue_published(published.boundary)
            summary.input_grew = True
        if state is not None and progress is None:
            state.clear()  # a stale progress file must never describe this run's fresh partial output
        if progress:
            restore_counts(summary, progress)
            summary.skipped_seen = int(progress.get("skipped_seen", 0))
        empty = counts_of(RunSummary(input="", output="")) | {
            "writer": empty_checkpoint(self.out_fmt), "centres": None, "position": 0, "skipped_seen": 0, "seen_run": None,
        }
        chunks = _ChunkProgress(self.request.chunk_rows, progress, empty)
        summary.resumed_from_row = chunks.position
        if progress and on_resumed:
            on_resumed(chunks.position)
        if self.store is not None:
            self.store.begin(progress, summary.input_grew, self.request.chunk_rows)
        writer = TableWriter(
            self.request.out, self.out_fmt, force=self.request.force or self.request.resume,
            resume_from=progress["writer"] if progress else None,
        )
        self._label_chunks(scorer, label_set, state, fingerprint, progress, chunks, writer, on_rows)
        if self.store is not None:
            self._record_keys()
        self.centres_file.forget()
        self._publish_rejects()
        summary.status = run_status(summary.rejected)
        return summary

    def _label_chunks(self, scorer: Scorer, label_set: LabelSet, state: RunState | None, fingerprint: dict[str, str],
                      progress: dict | None, chunks: _ChunkProgress, writer: TableWriter,
                      on_rows: Callable[[int], None] | None) -> None:
        """The chunk loop, and what an interruption or a failure in it leaves behind: after an
        interruption or a full disk, the partial output and its progress file for --resume
        (when a chunk was saved); after anything else, nothing."""
        summary = self.summary
        assert self.findings is not None
        label_vectors = scorer.label_vectors(label_set)  # once per label set, not per batch
        started = time.perf_counter()
        centres: Centres | None = None
        times = StageTimes()

        def read() -> Iterator[pl.DataFrame]:  # the read stage (pipeline.py), in its own thread
            for frame in self.source.iter_batches(self.request.chunk_rows, start=chunks.position):
                rows, skipped = frame.height, 0
                if self.store is not None:
                    assert self.request.new_only_by is not None
                    frame, skipped = self.store.new_rows(frame, self.request.new_only_by, chunks.next_chunk())
                chunks.read(rows, skipped)
                if skipped and on_rows is not None:
                    on_rows(skipped)
                yield frame

        def write(out: pl.DataFrame) -> None:  # the write stage (pipeline.py), in its own thread
            writer.write(out)
            tally_labels(summary, out.get_column(self.options.label_col), out.get_column(self.options.score_col))
            summary.skipped_seen += chunks.written()
            if state is not None:
                saved = counts_of(summary) | {
                    "writer": writer.checkpoint(), "centres": centres.digest() if centres is not None else None,
                    "position": chunks.position, "skipped_seen": summary.skipped_seen,
                    "seen_run": self.store.run_id if self.store is not None else None,
                }
                try:
                    state.save(saved)
                except OSError as exc:
                    raise write_failed(state.path, exc) from exc
                chunks.saved(saved)

        try:
            if self.options.adapt is not None:
                centres = self._centres(scorer, progress)
                summary.adapt = centres.summary()
                summary.adapt_groups_not_centred = centres.uncentred_groups
            with closing(label_frames(read(), scorer, label_set, self.options, label_vectors, centres, times,
                                      on_rows)) as labelled:
                write_all(labelled, write, times)
            summary.seconds = time.perf_counter() - started
            with times.timing("write"):
                writer.commit(lambda partial: self._before_publishing(partial, state, fingerprint, chunks.boundary))
            summary.stage_seconds = times.as_dict()
        except Interrupted as stop:
            summary.seconds = time.perf_counter() - started
            summary.status = "interrupted"
            writer.suspend()
            if state is None or not state.path.exists():
                self.centres_file.forget()  # nothing to resume: the next run starts afresh and estimates again
                self._abandon_keys()
                raise
            raise stop.with_message(
                f"interrupted by {SIGNAL_NAMES.get(stop.signum, stop.signum)} after {summary.rows:,} of "
                f"{self.findings.rows:,} rows; nothing was published; run the same command with --resume to "
                f"continue"
            ) from None
        except WriteFailed as failure:  # a full disk or quota: keep what was saved, for --resume
            summary.seconds = time.perf_counter() - started
            if state is not None and state.path.exists():
                writer.suspend()
                raise WriteFailed(f"{failure}; nothing was published; make room and run the same command with "
                                  f"--resume to continue after row {chunks.saved_position:,}") from failure
            writer.abort()
            self.centres_file.forget()
            self._abandon_keys()
            raise WriteFailed(f"{failure}; nothing was published") from failure
        except BaseException:
            writer.abort()
            if state is not None:
                state.clear()
            self.centres_file.forget()
            self._abandon_keys()
            raise

    def _before_publishing(self, partial: Path, state: RunState | None, fingerprint: dict[str, str],
                           boundary: dict) -> None:
        """The finished partial output is about to be renamed into place. Everything that
        describes the published output is recorded first, so that a run killed just after the
        rename leaves an output that `--resume` knows as complete (the rename keeps the file's
        size and time), and a seen store that the next run settles as published."""
        if self.store is not None:
            self.store.publishing(partial)
        if self.target is None:
            return
        try:
            DoneRecord(self.target).save(fingerprint, counts_of(self.summary) | {
                "rejected": self.summary.rejected, "skipped_seen": self.summary.skipped_seen,
            }, self._extent(), boundary, stamp_of=partial)
        except OSError:
            pass  # the record only spares a later --resume the work; without it, that run refuses and says why
        if state is not None:
            state.clear()

    def _extent(self) -> InputExtent:
        schema = self.source.schema
        return InputExtent(os.path.getsize(self.source.path),
                           {name: str(dtype) for name, dtype in schema.items()} if schema is not None else None)

    def _growth_refused(self) -> str | None:
        """Why this run could not go on from the input grown at its end, if it could not."""
        if self.options.adapt is not None:
            return "--adapt centres the text vectors on the whole input, so every row's scores would change"
        return None

    def _continue_published(self, boundary: dict) -> dict:
        """The input grew at its end since the output was published: the output's rows up to its
        last full chunk become the partial output, and the run goes on from there. The last chunk
        of the earlier run, if it was short, is labelled again: in a run over the grown input its
        rows share a chunk (and so their batches) with the new rows, which can move a score in its
        last digit, and the output must be the bytes of that run."""
        assert self.target is not None
        try:
            start_from_published(self.target, self.out_fmt, boundary["writer"], self.request.chunk_rows)
        except OSError as exc:
            raise write_failed(self.request.out, exc) from exc
        return boundary

    def _record_keys(self) -> None:
        """The output is published: its items count as seen from now on."""
        assert self.store is not None
        try:
            self.store.published()
        except RosPromptError as exc:
            raise RosPromptError(f"{exc}; {self.request.out} was published, and the next run on this store records "
                                 f"its items") from exc

    def _abandon_keys(self) -> None:
        """Nothing was published and the run will not be resumed: its keys go."""
        if self.store is not None:
            try:
                self.store.abandon()
            except RosPromptError:
                pass  # the next run on the store rolls this run back (its output does not exist)

    def _centres(self, scorer: Scorer, progress: dict | None) -> Centres:
        """--adapt: the centres of this input; a resumed run reads those its first part used, so
        that its output is the uninterrupted run's, byte for byte."""
        adapt = self.options.adapt
        assert adapt is not None
        if progress is not None:
            return self.centres_file.load(progress.get("centres"))

        def rows() -> Iterator[tuple[list[str], list[str]]]:
            for frame in self.source.iter_batches(self.request.chunk_rows):
                valid, texts = texts_with_text(frame, self.options.text_col)
                yield texts, adapt_groups(frame, valid, adapt)

        batching = batching_for(scorer, self.options.batch_size, self.options.max_batch_tokens)
        centres = estimate_streaming(rows, adapt, lambda texts: text_vectors_in_order(scorer, texts, batching).numpy())
        self.centres_file.save(centres)
        return centres

    def _complete_already(self, counts: dict) -> RunSummary:
        """--resume found the output complete for this very run: nothing to do, nothing touched
        (the rejects of the run that made it stay where they are)."""
        summary = self.summary
        summary.status = "complete"
        restore_counts(summary, counts)
        summary.skipped_seen = int(counts.get("skipped_seen", 0))
        summary.rejected, summary.rejected_by_reason = 0, {}
        return summary

    def _publish_rejects(self) -> None:
        if self._rejects_stream is None:
            return
        self._rejects_stream.close()
        self._rejects_stream = None
        if self.sink.count:
            os.replace(self._rejects_partial, self.rejects_path)
            self.summary.rejects_file = str(self.rejects_path)
        else:
            self._rejects_partial.unlink(missing_ok=True)
            if self.request.force and self.request.rejects is None:
                self.rejects_path.unlink(missing_ok=True)  # yesterday's rejects would mislead


def describe_rejects(sink: RejectSink, display: str, where: Path) -> str:
    reasons = ", ".join(f"{n:,} {reason}" for reason, n in sink.by_reason.most_common())
    first = sink.first[0].message(display) if sink.first else ""
    return f"{sink.count:,} rows set aside ({reasons}) in {where}; first: {first}"
