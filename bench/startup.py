"""Start-up of `rosprompt label`: one row, so the time is almost all start-up, in one run.

    python bench/startup.py [--repeats 5] [--compare-ref REF] --out bench/results/startup

Interleaved runs of, each a fresh process on a warm cache (converted model, ONNX graph):
  floor          `python -c "import torch"`: the interpreter and torch, which every run pays;
  onnx (auto)    `rosprompt label one.csv --labels sports,politics` (ONNX Runtime on a CPU);
  torch          the same with --runtime torch;
  --help         `rosprompt label --help`;
  refused        the label line with --top-k 0, refused (exit 1) before any model is needed;
and with --compare-ref, the same two `label` lines on the code of git REF (checked out in a
temporary worktree), so that a change to the start-up is measured against its baseline in the
same run. Times are the best of --repeats, peak resident memory the largest; ratios compare runs
of this same script. The cache (ROSPROMPT_HOME) is warmed by one run of each setting first.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from provenance import source_commit  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ROW = "text\nThe home side scored twice in the last ten minutes to win the cup final.\n"


def timed(command: list[str], cwd: Path, log: Path, exit_code: int = 0) -> tuple[float, float]:
    """Seconds and peak resident MiB of one run of `command` (a child of its own, so wait4's
    usage is its alone), which must end with `exit_code`."""
    started = time.perf_counter()
    with open(log, "wb") as err:
        proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != exit_code:
        sys.exit(f"{' '.join(command)} failed:\n{log.read_text(errors='replace')}")
    return seconds, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compare-ref", default=None, help="a git ref whose code is timed beside this tree's")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "startup"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rosprompt-startup-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "one.csv").write_text(ROW, encoding="utf-8")
        label = [sys.executable, "-m", "rosprompt_cli", "label", str(tmp / "one.csv"), "--labels", "sports,politics",
                 "--out", str(tmp / "out.csv"), "--force"]
        trees = {"this tree": REPO}
        if args.compare_ref:
            worktree = tmp / "ref"
            subprocess.run(["git", "worktree", "add", "--detach", str(worktree), args.compare_ref], cwd=REPO,
                           check=True, capture_output=True)
            trees[args.compare_ref] = worktree
        # `python -m` from a tree's root imports that tree's rosprompt_cli before the installed one
        settings: dict[str, tuple[list[str], Path, int]] = {"floor: python -c 'import torch'": (
            [sys.executable, "-c", "import torch"], tmp, 0)}
        for tree, root in trees.items():
            settings[f"onnx (auto), {tree}"] = (label, root, 0)
            settings[f"torch, {tree}"] = (label + ["--runtime", "torch"], root, 0)
            settings[f"label --help, {tree}"] = ([sys.executable, "-m", "rosprompt_cli", "label", "--help"], root, 0)
            settings[f"refused (--top-k 0), {tree}"] = (label + ["--top-k", "0"], root, 1)
        try:
            for command, cwd, code in settings.values():
                timed(command, cwd, tmp / "stderr.txt", code)  # warm the cache and the page cache
            times: dict[str, list[float]] = {name: [] for name in settings}
            peak: dict[str, float] = {}
            for _ in range(args.repeats):
                for name, (command, cwd, code) in settings.items():
                    seconds, rss = timed(command, cwd, tmp / "stderr.txt", code)
                    times[name].append(seconds)
                    peak[name] = max(peak.get(name, 0.0), rss)
        finally:
            if args.compare_ref:
                subprocess.run(["git", "worktree", "remove", "--force", str(tmp / "ref")], cwd=REPO,
                               capture_output=True)
    best = {name: min(t) for name, t in times.items()}
    base = best["torch, this tree"]
    commit = source_commit()
    data = {"command": "python bench/startup.py " + " ".join(sys.argv[1:]),
            "commit": commit,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}",
            "settings": {name: {"best_s": best[name], "vs_torch_this_tree": best[name] / base, "runs_s": times[name],
                                "peak_rss_mib": peak[name]} for name in settings}}
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    lines = ["# Start-up of `rosprompt label` (one row, warm cache), its --help and a refused run", "",
             f"`{data['command']}` on commit `{data['commit']}`; {data['machine']}. Best of {args.repeats} "
             "interleaved runs, each a fresh process.", "",
             "| setting | seconds | vs torch (this tree) | peak RSS MiB |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| {name} | {r['best_s']:.2f} | {r['vs_torch_this_tree']:.2f} | {r['peak_rss_mib']:.0f} |"
              for name, r in data["settings"].items()]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
