"""int8 on ONNX Runtime on a CPU without VNNI (issue 47): SIB-200 dev accuracy of int8 with
8-bit weights and with 7-bit weights (ONNX Runtime's reduce_range, what `--quantize int8` picks
on such a CPU) against float32, on every STEP-th row of the dev split (shipped prompt, the 7
English label names, as bench/precision_accuracy.py).

    python bench/int8_without_vnni.py reference                   # float32, here; builds both int8 graphs
    qemu-x86_64 -cpu EPYC-Rome .venv/bin/python bench/int8_without_vnni.py int8 --bits 8 --cpu NAME
    qemu-x86_64 -cpu EPYC-Rome .venv/bin/python bench/int8_without_vnni.py int8 --bits 7 --cpu NAME
    python bench/int8_without_vnni.py int8 --bits 8 --cpu NAME     # the same rows on this CPU

Each run merges its row into bench/results/int8_without_vnni_step{STEP}.json: accuracy, agreement with the
float32 labels, and the mean change of the `score` column; the rows' labels and scores, which
those are computed from, stay in $WORK (default /tmp/rosprompt-int8). ONNX Runtime picks its int8 kernels
from cpuid, so under qemu's AVX2-only EPYC-Rome model it runs the kernels an AVX2-only AMD EPYC
runs, emulated: the accuracy is that CPU's, the seconds are not. float32 does not depend on those
kernels and is measured once, natively. The graphs are built once in $ROSPROMPT_HOME.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import polars as pl
import torch

from provenance import source_commit  # noqa: E402
from rosprompt_cli import LabelSet, runtime
from rosprompt_cli.evaluation import predict_with_scores
from rosprompt_cli.spec import ScorerSpec, build_scorer

REPO = Path(__file__).resolve().parents[1]
SIB = REPO.parent / "shared" / "data" / "sib200" / "dev"
RESULTS = REPO / "bench" / "results"
WORK = Path(os.environ.get("WORK", "/tmp/rosprompt-int8"))
THREADS = 2


def rows(step: int) -> tuple[list[str], list[str]]:
    texts, gold = [], []
    for path in sorted(SIB.glob("*.tsv")):
        frame = pl.read_csv(path, separator="\t", quote_char=None)
        texts += frame["text"].to_list()
        gold += frame["category"].to_list()
    return texts[::step], gold[::step]


def scorer(quantize: str, bits: int | None = None):
    if bits is not None:  # the weights' range forced, whatever this CPU's cpuid says
        runtime.int8_weights_reduced = lambda: bits == 7
    return build_scorer(ScorerSpec(runtime="onnx", device="cpu", quantize=quantize, threads=THREADS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", choices=["reference", "int8"])
    parser.add_argument("--bits", type=int, choices=[7, 8], default=8, help="int8 weights' range")
    parser.add_argument("--cpu", default="this CPU", help="the CPU's name in the results")
    parser.add_argument("--step", type=int, default=200, help="every STEP-th dev row (200: 102 rows in 102 languages)")
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    texts, gold = rows(args.step)
    labels = LabelSet.from_names(sorted(set(gold)))
    result_file = RESULTS / f"int8_without_vnni_step{args.step}.json"
    result = json.loads(result_file.read_text()) if result_file.exists() else {}
    rows_file = WORK / f"step{args.step}.json"  # each run's labels and scores, row by row
    per_row = json.loads(rows_file.read_text()) if rows_file.exists() else {}
    if args.run == "reference":
        for bits in (8, 7):
            scorer("int8", bits)  # the graphs, built here once
        name, built = "float32", scorer("none")
    else:
        name, built = f"int8, {args.bits}-bit weights, {args.cpu}", scorer("int8", args.bits)
    started = time.perf_counter()
    pred, score = predict_with_scores(built, texts, labels, 8)
    row = {"accuracy": round(100 * sum(a == b for a, b in zip(pred, gold)) / len(gold), 2),
           "seconds": round(time.perf_counter() - started, 1), "commit": source_commit()}
    per_row[name] = {"predictions": pred, "scores": [round(s, 6) for s in score]}
    reference = per_row.get("float32")
    if reference is not None and name != "float32":
        row["agree_with_float32"] = round(100 * sum(a == b for a, b in zip(pred, reference["predictions"])) / len(gold), 2)
        row["points_vs_float32"] = round(row["accuracy"] - result["runs"]["float32"]["accuracy"], 2)
        row["mean_score_change"] = round(sum(abs(a - b) for a, b in zip(score, reference["scores"])) / len(gold), 4)
    result.setdefault("runs", {})[name] = row
    result |= {"rows": len(gold), "step": args.step, "threads": THREADS, "command": __doc__.split("\n\n")[1].strip()}
    result_file.write_text(json.dumps(result, indent=1) + "\n")
    WORK.mkdir(parents=True, exist_ok=True)
    rows_file.write_text(json.dumps(per_row))
    print(name, row, flush=True)


if __name__ == "__main__":
    main()
