"""How `label` cuts a chunk into forward passes on a CPU, with the bundled model (issue 34).

    python bench/cpu_batching.py --lines 800 --out bench/results/cpu_batching

`label` end to end in this process (read JSONL, tokenise, score, write Parquet), shipped prompt,
7 labels, on the corpus of bench/throughput.py (1 to 6 sentences of one SIB-200 dev language per
line, all 205 in turn), for several (texts, tokens) bounds per forward pass, interleaved, best of
`--repeats`. The near-free model's side of the same choice is in bench/cpu_side.py.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import source_commit  # noqa: E402
from throughput import build_corpus, cpu_model, time_settings, write_jsonl  # noqa: E402

from rosprompt_cli.file_run import FileRun, RunRequest  # noqa: E402
from rosprompt_cli.frames import LabelOptions  # noqa: E402
from rosprompt_cli.labels import LabelSet  # noqa: E402
from rosprompt_cli.spec import ScorerSpec, build_scorer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LABELS = ["science/technology", "travel", "politics", "sports", "health", "entertainment", "geography"]
SETTINGS = [(8, None), (16, 512), (16, 1024), (32, 1024), (64, 2048)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=800)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "cpu_batching"))
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="rosprompt-batching-"))
    corpus = write_jsonl(build_corpus(args.lines), tmp / "corpus.jsonl")
    scorer = build_scorer(ScorerSpec())

    def run(setting: tuple[int, int | None]) -> float:
        rows, tokens = setting
        started = time.perf_counter()
        options = LabelOptions(batch_size=rows, max_batch_tokens=tokens)
        with FileRun(RunRequest(input=str(corpus), out=str(tmp / "out.parquet"), force=True), options, LABELS) as one:
            one.prepare()
            one.execute(scorer, LabelSet.from_names(LABELS))
        return time.perf_counter() - started

    times = time_settings(SETTINGS, run, args.repeats)
    base = min(times[SETTINGS[0]])
    rows = [{"rows": r, "tokens": t, "seconds": min(times[(r, t)]), "vs_8_texts": min(times[(r, t)]) / base,
             "runs_s": times[(r, t)]} for r, t in SETTINGS]
    result = {"command": "python bench/cpu_batching.py " + " ".join(sys.argv[1:]), "commit": source_commit(),
              "machine": f"{cpu_model()}, {os.cpu_count()} cores", "runtime": scorer.backbone.execution,
              "lines": args.lines, "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# Forward-pass bounds of `label` on a CPU, bundled model", "",
             f"Command: `{result['command']}` at {result['commit']}; {result['machine']}; {result['runtime']}; "
             f"{args.lines} lines of bench/throughput.py's corpus; shipped prompt, 7 labels; best of {args.repeats}, "
             f"interleaved.", "",
             "| texts per pass | tokens per pass | seconds | vs 8 texts |", "| ---: | ---: | ---: | ---: |"]
    lines += [f"| {r['rows']} | {r['tokens'] or 'no bound'} | {r['seconds']:.2f} | {r['vs_8_texts']:.3f} |" for r in rows]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
