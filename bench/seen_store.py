"""What `--new-only-by` costs on a store that has grown large (issue 32).

    python bench/seen_store.py --out bench/results/seen_store [--keys 1000000] [--repeats 3]

The case of the issue: a store already holding --keys keys (committed by earlier runs), then a
10,000-row fetch of which 9,000 rows were seen before and 1,000 are new. Measured in this one
process, best of --repeats, each repeat on a fresh copy of the store:

  label new      `run_label` over the 1,000 new rows alone, without --new-only-by (the baseline:
                 the work that cannot be avoided);
  label fetch    `run_label` over the 10,000-row fetch with --new-only-by: the same 1,000 rows
                 labelled and written, the 9,000 others checked, looked up and skipped;
  store alone    the store's part of that run: opening and settling it, looking up the 10,000
                 keys a chunk at a time and storing the 1,000 new ones, committing.

The skip's cost is (label fetch - label new), as a share of label new. Peak memory: a child
process per store size (empty, 10k, 100k, --keys) opens the store and skips the same fetch;
its peak resident memory (wait4) must not grow with the keys stored.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import source_commit  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import polars as pl  # noqa: E402

LABELS = ["sports", "politics", "health", "science", "entertainment", "travel", "geography"]
FETCH_ROWS, NEW_ROWS = 10_000, 1_000
CHUNK = 2048


def texts() -> list[str]:
    rows = [json.loads(line)["text"] for line in (REPO / "samples/news_multilingual.jsonl").read_text().splitlines()]
    return rows


def fill_store(path: Path, keys: int) -> None:
    """A store whose one committed run holds `keys` keys (key-0 … key-N), written straight
    through the store's own class, a chunk of 50,000 at a time."""
    from rosprompt_cli.seen import SeenStore

    out = path.parent / "earlier.jsonl"
    store = SeenStore(path, out)
    store.open()
    store.begin(None, False, CHUNK)
    for start in range(0, keys, 50_000):
        frame = pl.DataFrame({"url": [f"key-{i}" for i in range(start, min(start + 50_000, keys))]})
        store.new_rows(frame, "url", start // CHUNK)
    store.publishing(store.path)  # any existing file: the run is committed right after
    store.published()
    store.close()


def write_fetch(folder: Path, keys: int) -> tuple[Path, Path]:
    """The fetch (9,000 keys stored before, 1,000 new) and the 1,000 new rows alone."""
    pool = texts()
    seen_keys = [f"key-{i}" for i in range(min(keys, FETCH_ROWS - NEW_ROWS))]
    new_keys = [f"new-{i}" for i in range(FETCH_ROWS - len(seen_keys))]
    rows = [{"url": key, "text": pool[i % len(pool)]} for i, key in enumerate(seen_keys + new_keys)]
    fetch, new = folder / "fetch.jsonl", folder / "new.jsonl"
    pl.DataFrame(rows).write_ndjson(fetch)
    pl.DataFrame(rows[len(seen_keys):]).write_ndjson(new)
    return fetch, new


def memory_child(store: str, fetch: str) -> None:
    """In a child: open the store and skip the fetch's seen rows, chunk by chunk (no model)."""
    from rosprompt_cli.readers import open_source
    from rosprompt_cli.seen import SeenStore

    before = _status_mib("VmRSS")  # the interpreter and its imports (torch among them)
    seen = SeenStore(Path(store), Path(store).parent / "night.jsonl")
    seen.open()
    seen.begin(None, False, CHUNK)
    source = open_source(fetch, None)
    source.key_col = "url"
    source.check("text")
    kept = 0
    for index, frame in enumerate(source.iter_batches(CHUNK)):
        frame, _ = seen.new_rows(frame, "url", index)
        kept += frame.height
    seen.abandon()
    seen.close()
    print(kept, before, _status_mib("VmHWM"))


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def peak_mib(store: Path, fetch: Path) -> tuple[float, float, int]:
    """(peak MiB of the child, its growth past the MiB it had after its imports, rows kept)."""
    out = subprocess.run([sys.executable, __file__, "--memory-child", str(store), str(fetch)],
                         capture_output=True, text=True, cwd=REPO, check=True).stdout.split()
    kept, before, peak = int(out[0]), float(out[1]), float(out[2])
    return peak, peak - before, kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/seen_store")
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(*args.memory_child)
        return

    from rosprompt_cli.job import LabelJob, run_label
    from rosprompt_cli.labels import LabelSet
    from rosprompt_cli.seen import SeenStore
    from rosprompt_cli.spec import ScorerCache, ScorerSpec

    work = Path(tempfile.mkdtemp(prefix="rosprompt-seen-bench-"))
    scorers = ScorerCache()
    label_set = LabelSet.from_names(LABELS)
    results: dict = {"keys": args.keys, "fetch_rows": FETCH_ROWS, "new_rows": NEW_ROWS, "repeats": args.repeats,
                     "python": platform.python_version(), "cpus": os.cpu_count(), "commit": source_commit()}
    try:
        master = work / "master"
        master.mkdir()
        started = time.perf_counter()
        fill_store(master / "keys.sqlite", args.keys)
        results["fill_seconds"] = round(time.perf_counter() - started, 1)
        results["store_mib"] = round((master / "keys.sqlite").stat().st_size / 2**20, 1)
        fetch, new = write_fetch(work, args.keys)
        scorers(ScorerSpec())  # the model loads before anything is timed
        times: dict[str, list[float]] = {"label new": [], "label fetch": [], "store alone": []}
        for repeat in range(args.repeats):
            run = work / f"run{repeat}"
            run.mkdir()
            shutil.copy(master / "keys.sqlite", run / "keys.sqlite")
            started = time.perf_counter()
            run_label(LabelJob(input=str(new), labels=label_set, out=str(run / "new.jsonl")), scorer=scorers)
            times["label new"].append(time.perf_counter() - started)
            started = time.perf_counter()
            result = run_label(LabelJob(input=str(fetch), labels=label_set, out=str(run / "fetch.jsonl"),
                                        new_only_by="url", seen_store=str(run / "keys.sqlite")), scorer=scorers)
            times["label fetch"].append(time.perf_counter() - started)
            assert result.summary["rows"] == NEW_ROWS and result.summary["skipped_seen"] == FETCH_ROWS - NEW_ROWS
            assert (run / "fetch.jsonl").read_bytes() == (run / "new.jsonl").read_bytes()
            shutil.copy(master / "keys.sqlite", run / "again.sqlite")
            started = time.perf_counter()
            store = SeenStore(run / "again.sqlite", run / "again.jsonl")
            store.open()
            store.begin(None, False, CHUNK)
            frame = pl.read_ndjson(fetch)
            for index in range(0, FETCH_ROWS, CHUNK):
                store.new_rows(frame.slice(index, CHUNK), "url", index // CHUNK)
            store.publishing(fetch)
            store.published()
            store.close()
            times["store alone"].append(time.perf_counter() - started)
        best = {name: min(values) for name, values in times.items()}
        results["seconds"] = {name: round(value, 3) for name, value in best.items()}
        results["skip_share_end_to_end"] = round((best["label fetch"] - best["label new"]) / best["label new"], 4)
        results["store_share"] = round(best["store alone"] / best["label new"], 4)

        memory = {}
        for keys in sorted({0, 10_000, 100_000, args.keys}):
            folder = work / f"mem{keys}"
            folder.mkdir()
            if keys:
                fill_store(folder / "keys.sqlite", keys)
            peak, growth, kept = peak_mib(folder / "keys.sqlite", fetch)
            assert kept == FETCH_ROWS - min(keys, FETCH_ROWS - NEW_ROWS)
            memory[keys] = {"peak_mib": round(peak, 1), "growth_mib": round(growth, 1)}
        results["peak_mib_by_keys_stored"] = memory
    finally:
        shutil.rmtree(work, ignore_errors=True)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "# `--new-only-by` on a large store (issue 32)",
        "",
        f"`python bench/seen_store.py --keys {args.keys}` on {results['cpus']} CPUs, commit {results['commit']}; "
        f"best of {args.repeats}. A store holding {args.keys:,} keys ({results['store_mib']} MiB), a "
        f"{FETCH_ROWS:,}-row fetch of which {FETCH_ROWS - NEW_ROWS:,} rows were seen before.",
        "",
        "| what | seconds |",
        "| --- | ---: |",
        *(f"| {name} | {value:.3f} |" for name, value in results["seconds"].items()),
        "",
        f"- The skip's cost, end to end (label fetch - label new) / label new: "
        f"**{results['skip_share_end_to_end']:.1%}** (target: under 10%). The outputs are byte for byte the same.",
        f"- The store's own work (open, settle, 10,000 lookups, 1,000 keys stored, commit) / label new: "
        f"**{results['store_share']:.1%}**.",
        "- Memory of a process that opens the store and skips the same fetch (no model), by keys already stored: "
        "its peak resident memory, and how far the peak rose past what the process held after its imports (the "
        "store's and the fetch's own share):",
        "",
        "| keys stored | peak MiB | rise past the imports, MiB |",
        "| ---: | ---: | ---: |",
        *(f"| {keys:,} | {m['peak_mib']} | {m['growth_mib']} |" for keys, m in results["peak_mib_by_keys_stored"].items()),
        "",
    ]
    args.out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
