"""The `--summary` JSON of a `label` run, built in one place for every engine and input kind.

One file (local engine): `RunSummary.as_dict()`. Several files: `combined()`, the totals plus
each file's own summary. Ray: `ray_summary()`, the keys of a local run that apply plus the
engine. `tally_labels` counts a labelled chunk for any of them.
"""

from __future__ import annotations

import importlib.metadata
import platform
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import polars as pl

from rosprompt_cli.interrupt import Interrupted
from rosprompt_cli.paths import write_json_atomically
from rosprompt_cli.version import __version__


class RunCounts(Protocol):
    """What a run counts of its output (RunSummary, ray_engine.RayResult)."""

    rows: int
    labelled: int
    empty_text: int
    below_min_score: int
    label_counts: Counter


COUNTS = ("rows", "labelled", "empty_text", "below_min_score")  # with label_counts: what a run counts


def tally_labels(counts: RunCounts, labels: pl.Series, scores: pl.Series) -> None:
    """Add a labelled chunk's label and score columns to the run's counts: a row without a score
    had empty text; one with a score but no label scored below --min-score."""
    counts.rows += labels.len()
    counts.empty_text += scores.null_count()
    counts.labelled += labels.len() - labels.null_count()
    counts.below_min_score += int((labels.is_null() & scores.is_not_null()).sum())
    for label, n in labels.drop_nulls().value_counts().iter_rows():
        counts.label_counts[label] += n


def counts_of(counts: RunCounts) -> dict:
    """The counts as JSON, for a progress file or the record of a published output."""
    return {key: getattr(counts, key) for key in COUNTS} | {"label_counts": dict(counts.label_counts)}


def restore_counts(counts: RunCounts, saved: dict) -> None:
    """The counts `counts_of` saved (a key an older record lacks counts 0)."""
    for key in COUNTS:
        setattr(counts, key, int(saved.get(key, 0)))
    counts.label_counts = Counter(saved["label_counts"])


def run_status(rejected: int) -> str:
    """A finished run's status: "partial" when rows were set aside, else "ok"."""
    return "partial" if rejected else "ok"


@dataclass
class RunSummary:
    """One file's run: counts for the closing status line and `--summary`."""

    input: str
    output: str
    status: str = "running"
    rows_read: int = 0  # usable + rejected
    rows: int = 0  # rows written to the output
    labelled: int = 0
    empty_text: int = 0
    below_min_score: int = 0  # rows scored, left without a label by --min-score
    skipped_seen: int = 0  # --new-only-by: rows whose key an earlier run (or row) had, not written
    rejected: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    rejects_file: str | None = None
    seen_store: str | None = None  # --new-only-by: the store of keys
    resumed_from_row: int = 0
    input_grew: bool = False  # --resume went on from a complete output whose input grew at its end
    seconds: float = 0.0
    # busy seconds of each stage of the pipeline (pipeline.STAGES); they overlap, so the largest
    # one, not their sum, bounds the run: the stage to look at when a run is slow
    stage_seconds: dict[str, float] = field(default_factory=dict)
    label_counts: Counter = field(default_factory=Counter)
    model: dict = field(default_factory=dict)
    prompt: str | None = None
    calibration: dict | None = None  # how `score` is calibrated (calibration.Calibration)
    adapt: str | None = None  # --adapt: what the text vectors were centred on
    adapt_groups_not_centred: int = 0  # --adapt: groups left as they were (too few distinct texts)
    labels: list[str] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict:
        done_now = self.rows - self.resumed_from_row
        data = asdict(self)
        data["seconds"] = round(self.seconds, 3)
        data["rows_per_second"] = _rate(done_now, self.seconds)
        data["label_counts"] = dict(self.label_counts.most_common())
        data["versions"] = versions()
        return {"engine": "local"} | data  # every summary shape names its engine


def versions() -> dict[str, str]:
    """From the installed packages' metadata (the same strings as their __version__): a run
    refused before any model is loaded writes its summary without importing torch."""
    return {
        "rosprompt": __version__,
        "python": platform.python_version(),
        "torch": importlib.metadata.version("torch"),
        "transformers": importlib.metadata.version("transformers"),
        "polars": pl.__version__,
    }


def failure(exc: BaseException) -> tuple[str, str]:
    """The status and error of a run that stopped on `exc`."""
    return ("interrupted" if isinstance(exc, Interrupted) else "failed"), getattr(exc, "message", None) or str(exc)


def combined(summaries: list[dict], status: str, error: str | None, skipped: list[str]) -> dict:
    """A multi-file run: totals, the outputs kept as complete by --resume, and each file's summary."""
    label_counts: Counter = Counter()
    for one in summaries:
        label_counts.update(one.get("label_counts", {}))
    totals = {key: sum(one.get(key, 0) for one in summaries)
              for key in ("rows_read", *COUNTS, "skipped_seen", "rejected", "seconds")}
    totals["seconds"] = round(totals["seconds"], 3)
    stages: Counter = Counter()
    for one in summaries:
        stages.update(one.get("stage_seconds", {}))
    return {
        "engine": "local", "status": status, "error": error, **totals,
        "stage_seconds": {stage: round(seconds, 3) for stage, seconds in stages.items()},
        "rows_per_second": _rate(totals["rows"], totals["seconds"]),
        "label_counts": dict(label_counts.most_common()),
        "skipped_complete": skipped,
        "files": summaries,
    }


def ray_summary(result: RunCounts, input_spec: str, status: str = "ok", error: str | None = None) -> dict:
    """A Ray run: the local run's keys that apply, plus the engine."""
    data = asdict(result)  # type: ignore[call-overload]
    data.update(input=input_spec, status=status, error=error, engine="ray", seconds=round(data["seconds"], 3),
                rows_per_second=_rate(result.rows, data["seconds"]),
                label_counts=dict(result.label_counts.most_common()))
    return data


def _rate(rows: int, seconds: float) -> float | None:
    return round(rows / seconds, 2) if seconds > 0 else None


def write(path: str, data: dict) -> None:
    write_json_atomically(Path(path), data, indent=2)
