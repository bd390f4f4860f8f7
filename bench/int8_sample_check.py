"""The suite's int8 test on a CPU without VNNI (issue 47): the sample labelled in float32 and in
int8 on ONNX Runtime, and the two compared as tests/test_runtime.py's int8 test compares them
(label agreement; mean change of the best label's plain softmax probability, bound 0.03).

    python bench/int8_sample_check.py float32                                  # here: the reference
    python bench/int8_sample_check.py int8 [--bits 7|8]                        # here
    qemu-x86_64 -cpu EPYC-Rome .venv/bin/python bench/int8_sample_check.py int8  # an AVX2-only EPYC

`--bits` forces the int8 weights' range; without it, what this CPU's cpuid asks for (7 bits
without VNNI). Under qemu, ONNX Runtime runs the AVX2-only kernels, emulated. Prints one line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from conftest import SAMPLES, SIB_LABELS  # noqa: E402
from test_runtime import _plain_scores  # noqa: E402

from rosprompt_cli import LabelJob, LabelOptions, ScorerSpec, parse_label_arg, run_label, runtime  # noqa: E402

REFERENCE = Path("/tmp/rosprompt-int8-sample-float32.parquet")


def label(quantize: str, out: Path) -> pl.DataFrame:
    run_label(LabelJob(str(SAMPLES / "news_multilingual.jsonl"), parse_label_arg(SIB_LABELS), out=str(out), force=True,
                       options=LabelOptions(all_scores=True),
                       scorer=ScorerSpec(runtime="onnx", quantize=quantize, threads=2)))
    return pl.read_parquet(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", choices=["float32", "int8"])
    parser.add_argument("--bits", type=int, choices=[7, 8])
    args = parser.parse_args()
    if args.run == "float32":
        label("none", REFERENCE)
        return
    if args.bits is not None:
        runtime.int8_weights_reduced = lambda: args.bits == 7
    bits = 7 if runtime.int8_weights_reduced() else 8
    float32, int8 = pl.read_parquet(REFERENCE), label("int8", Path(f"/tmp/rosprompt-int8-sample-{bits}.parquet"))
    agree = (float32["label"] == int8["label"]).mean()
    change = (_plain_scores(float32) - _plain_scores(int8)).abs().mean()
    print(f"int8, {bits}-bit weights: label agreement {agree:.4f}, mean plain score change {change:.4f}")


if __name__ == "__main__":
    main()
