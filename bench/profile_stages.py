"""Where the wall time of one `rosprompt label` run goes, thread by thread and stage by stage
(issue 34), from a py-spy profile of every Python thread (idle time included).

    python bench/profile_stages.py --out bench/results/cpu_side_profile -- LABEL ARGS...
    python bench/profile_stages.py --ref a65c667 --out bench/results/cpu_side_profile_before -- LABEL ARGS...

Each sample is put in the stage of the innermost frame that names one (STAGE_FRAMES, which also
knows the names of the code before the pipeline, so the same table can be made of an older
commit: `--ref` runs the label command from a git worktree of that commit). The Rust tokenizer's
own threads are not Python threads: the time they work shows as the thread that waits for them.
Writes OUT.md (shares per thread and stage) and OUT.txt (py-spy's collapsed stacks).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Innermost match wins: a function of this name on the stack puts the sample in that stage.
STAGE_FRAMES = {
    "read": ("iter_batches", "_csv_batches", "rechunk", "prepared_chunks"),
    "check": ("texts_with_text", "adapt_groups"),
    "tokenise": ("encode_texts", "encode_with_template", "clip_texts"),
    "score": ("score_chunk", "score_encoded", "text_vectors", "batch_vectors"),
    "assemble": ("assemble", "label_prepared", "_multi_labels"),
    "write": ("timed_write", "write", "checkpoint", "commit", "save", "tally_labels"),
    "pre-pass (input check)": ("check_jsonl", "check_csv", "_check_parquet", "_check_jsonl"),
    "start-up (imports, model, label vectors)": ("build_scorer", "load_backbone", "label_vectors", "_find_and_load",
                                                 "prepare", "fingerprint"),
    "waiting for another stage": ("get", "put", "wait", "join", "acquire"),
}


def stage_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        name = frame.split(" (", 1)[0].rsplit(".", 1)[-1]
        for stage, names in STAGE_FRAMES.items():
            if name in names:
                return stage
    return "other"


def summarise(collapsed: str) -> tuple[dict[str, Counter], int]:
    by_thread: dict[str, Counter] = defaultdict(Counter)
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frames = stack.split(";")
        thread = frames[0].split(":", 1)[-1].strip() if frames[0].startswith("thread") else "?"
        by_thread[thread][stage_of(frames[1:])] += int(count)
        total += int(count)
    return by_thread, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--ref", help="profile the code of this git commit (a worktree of it)")
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("label_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    label_args = [a for a in args.label_args if a != "--"]
    env = dict(os.environ)
    cwd = REPO
    if args.ref:
        cwd = Path(tempfile.mkdtemp(prefix="rosprompt-ref-")) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", str(cwd), args.ref], cwd=REPO, check=True,
                       capture_output=True)
        env["PYTHONPATH"] = str(cwd)
    out = Path(args.out)
    raw = Path(tempfile.mkdtemp(prefix="rosprompt-spy-")) / "stacks.txt"
    try:
        subprocess.run(["py-spy", "record", "--threads", "--idle", "--format", "raw", "--rate", str(args.rate),
                        "-o", str(raw), "--", sys.executable, "-m", "rosprompt_cli", "label", *label_args],
                       check=True, cwd=cwd, env=env, capture_output=True)
    finally:
        if args.ref:
            subprocess.run(["git", "worktree", "remove", "--force", str(cwd)], cwd=REPO, capture_output=True)
    collapsed = raw.read_text()
    by_thread, total = summarise(collapsed)
    commit = args.ref or subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                        text=True).stdout.strip()
    lines = [f"# Where `rosprompt label` spends its wall time, by thread and stage ({commit})", "",
             f"`python bench/profile_stages.py {' '.join(sys.argv[1:])}`: py-spy, every Python thread, idle "
             f"time included, {args.rate} samples/s. Each thread's row shares add up to 100% of that thread's "
             f"samples; a thread's samples are its wall time while it lived.", ""]
    stages = list(STAGE_FRAMES) + ["other"]
    lines += ["| thread | seconds | " + " | ".join(stages) + " |", "| --- | ---: | " + " | ".join("---:" for _ in stages) + " |"]
    for thread, counts in sorted(by_thread.items(), key=lambda item: -sum(item[1].values())):
        n = sum(counts.values())
        shares = " | ".join(f"{counts[s] / n:.0%}" if counts[s] else "" for s in stages)
        lines.append(f"| {thread} | {n / args.rate:.1f} | {shares} |")
    lines.append("")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text("\n".join(lines))
    out.with_suffix(".txt").write_text(collapsed)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
