"""Throughput of `label --engine ray` against `--engine local` on the same multi-file input.

The corpus is bench/throughput.py's (SIB-200 dev sentences of all 205 languages, 1-6 sentences a
line), cut into --shards JSONL files. Each configuration runs the real CLI in a subprocess,
with the default shipped prompt and the 7 SIB-200 labels, interleaved over --repeats rounds:

- local: one process, torch on all cores, one output file per input file;
- ray, W workers x C CPUs: a local Ray instance started by the run, one Parquet file out.

Two rates per run: rows / wall seconds of the whole command (start-up, model loads and, for Ray,
starting the instance included), and the rate the run itself reports (from the first read to the
published output, model loads by the workers included; for local it excludes the model load).
Ratios are of medians against local in the same script. Labels of every configuration are
checked to be identical, row by row, to local's.

    python bench/ray_vs_local.py --lines 1500 --shards 4 --repeats 2
    python bench/ray_vs_local.py --lines 6000 --shards 8 --repeats 1

Reports: bench/results/ray_vs_local_<lines>.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import build_corpus  # noqa: E402

from rosprompt_cli.version import __version__  # noqa: E402
from provenance import source_commit  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
LABELS = "science/technology,travel,politics,sports,health,entertainment,geography"
CONFIGS = {
    "local": [],
    "ray, 1 worker x 2 CPUs": ["--engine", "ray", "--num-workers", "1", "--cpus-per-worker", "2"],
    "ray, 2 workers x 1 CPU": ["--engine", "ray", "--num-workers", "2", "--cpus-per-worker", "1"],
}


def run(name: str, shards: Path, out_root: Path, round_: int) -> tuple[float, float, pl.DataFrame]:
    out = out_root / f"{round_}-{name.replace(' ', '_').replace(',', '')}"
    out = out.with_suffix(".parquet") if name != "local" else out
    summary = out_root / f"{out.name}.summary.json"
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "rosprompt_cli", "label", str(shards), "--labels", LABELS, "--out", str(out),
         "--summary", str(summary), *CONFIGS[name]],
        check=True, capture_output=True, cwd=REPO,
    )
    wall = time.perf_counter() - started
    report = json.loads(summary.read_text())
    frame = pl.concat([pl.read_parquet(p) for p in sorted(out.glob("*.parquet"))]) if out.is_dir() else pl.read_parquet(out)
    return wall, report["rows_per_second"], frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1500)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    rows = build_corpus(args.lines)
    walls: dict[str, list[float]] = {name: [] for name in CONFIGS}
    rates: dict[str, list[float]] = {name: [] for name in CONFIGS}
    with tempfile.TemporaryDirectory() as tmp:
        shards = Path(tmp) / "in"
        shards.mkdir()
        size = -(-len(rows) // args.shards)
        for i in range(args.shards):
            pl.DataFrame(rows[i * size:(i + 1) * size]).write_ndjson(shards / f"part-{i}.jsonl")
        reference: pl.DataFrame | None = None
        for round_ in range(args.repeats):
            for name in CONFIGS:
                wall, rate, frame = run(name, shards, Path(tmp), round_)
                walls[name].append(wall)
                rates[name].append(rate)
                if reference is None:
                    reference = frame
                assert frame.height == len(rows) and frame["id"].to_list() == reference["id"].to_list()
                assert frame["label"].to_list() == reference["label"].to_list(), f"{name}: labels differ from local"
                print(f"round {round_} {name}: {wall:.1f}s wall, {rate:.1f} rows/s reported", flush=True)

    commit = source_commit()
    base_wall = statistics.median(walls["local"])
    base_rate = statistics.median(rates["local"])
    result = {
        "command": f"python bench/ray_vs_local.py --lines {args.lines} --shards {args.shards} --repeats {args.repeats}",
        "commit": commit, "rosprompt": __version__, "cpus": os.cpu_count(), "lines": len(rows),
        "configs": {
            name: {
                "wall_seconds": walls[name], "reported_rows_per_second": rates[name],
                "rows_per_second_wall": round(len(rows) / statistics.median(walls[name]), 2),
                "wall_time_ratio_to_local": round(statistics.median(walls[name]) / base_wall, 3),
                "reported_rate_ratio_to_local": round(statistics.median(rates[name]) / base_rate, 3),
            }
            for name in CONFIGS
        },
    }
    RESULTS.mkdir(exist_ok=True)
    stem = f"ray_vs_local_{len(rows)}"
    (RESULTS / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# `label --engine ray` against `--engine local`",
        "",
        f"Command: `{result['command']}` (commit {commit}, {os.cpu_count()} CPUs, no GPU).",
        f"Input: {len(rows):,} lines (SIB-200 dev sentences, 205 languages, 1-6 sentences a line) in "
        f"{args.shards} JSONL files; 7 labels, shipped prompt. Median of {args.repeats} interleaved rounds. "
        "Every configuration gave the same label for every row as local.",
        "",
        "| engine | rows/s (whole command) | wall time vs local | rows/s (reported by the run) | reported rate vs local |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, c in result["configs"].items():
        lines.append(f"| {name} | {c['rows_per_second_wall']:.1f} | {c['wall_time_ratio_to_local']:.2f}x | "
                     f"{statistics.median(c['reported_rows_per_second']):.1f} | {c['reported_rate_ratio_to_local']:.2f}x |")
    lines += [
        "",
        "The whole-command rate includes process start, model loading and, for Ray, starting a local Ray",
        "instance; the reported rate of a Ray run includes the workers' model loads, the local one's does not.",
    ]
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
