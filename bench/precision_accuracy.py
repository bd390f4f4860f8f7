"""SIB-200 dev accuracy (all 20,295 rows, 7 English label names, shipped prompt) of the encoder in
float32 on torch and on ONNX Runtime (the fused graph `--runtime onnx` runs), int8 on ONNX Runtime
(what `--runtime onnx --quantize int8` runs; or every MatMul and attention quantised, to show what
keeping the feed-forward down-projections in float32 buys) and bfloat16 on torch (weights, or
autocast), for issue 17.

    python bench/precision_accuracy.py [--variant NAME ...]

Merges its rows into bench/results/precision_accuracy.json (accuracy, seconds, agreement with
torch float32 in %, the commit and ONNX cache format of each row); predictions are kept in $WORK
so that agreement can be computed across runs. Run alone: a row takes 3-6 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path
from types import SimpleNamespace

import polars as pl
import torch

from rosprompt_cli import LabelSet
from rosprompt_cli.evaluation import predict
from rosprompt_cli.runtime import FORMAT, OnnxEncoder, _session, cache_entry, onnx_encoder
from rosprompt_cli.spec import ScorerSpec, build_scorer
from provenance import source_commit  # noqa: E402

THREADS = 2
REPO = Path(__file__).resolve().parents[1]
SIB = REPO.parent / "shared" / "data" / "sib200" / "dev"
WORK = Path(os.environ.get("WORK", "/tmp/rosprompt-precision"))
RESULT = REPO / "bench" / "results" / "precision_accuracy.json"


class Bf16Encoder:
    """The torch encoder in bfloat16: weights cast (`autocast=False`) or float32 weights under
    CPU autocast; hidden states returned in float32."""

    def __init__(self, model: torch.nn.Module, autocast: bool) -> None:
        self.autocast = autocast
        self.embeddings = model.get_input_embeddings()
        self.model = model if autocast else copy.deepcopy(model).to(torch.bfloat16)
        self.config = model.config

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.embeddings

    def __call__(self, input_ids=None, attention_mask=None, inputs_embeds=None) -> SimpleNamespace:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast):
            if inputs_embeds is None:
                inputs_embeds = self.embeddings(input_ids)
            if not self.autocast:
                inputs_embeds = inputs_embeds.to(torch.bfloat16)
            hidden = self.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask).last_hidden_state
        return SimpleNamespace(last_hidden_state=hidden.float())


def int8_every_matmul(backbone) -> OnnxEncoder:
    """The fused float32 graph with every MatMul and attention quantised (no layer kept in float32)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    import onnx

    graph = WORK / f"int8_all_format{FORMAT}.onnx"
    if not graph.exists():
        quantize_dynamic(str(cache_entry(backbone).graph), str(graph), per_channel=True, weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul", "Attention"],
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return OnnxEncoder(_session(graph, THREADS), backbone.config, backbone.embedding_table())


def sib_dev() -> tuple[list[str], list[str]]:
    texts, gold = [], []
    for path in sorted(SIB.glob("*.tsv")):
        frame = pl.read_csv(path, separator="\t", quote_char=None)
        texts += frame["text"].to_list()
        gold += frame["category"].to_list()
    return texts, gold


def main() -> None:
    torch.set_num_threads(THREADS)
    scorer = build_scorer(ScorerSpec(runtime="torch", device="cpu"))
    backbone = scorer.backbone
    torch_model = backbone.model
    onnx_encoder(backbone)  # the float32 graph exists before int8_every_matmul reads it
    variants = {
        "torch_fp32": lambda: torch_model,
        "onnx_fp32": lambda: onnx_encoder(backbone, THREADS),
        "onnx_int8": lambda: onnx_encoder(backbone, THREADS, quantize="int8"),
        "onnx_int8_every_matmul": lambda: int8_every_matmul(backbone),
        "bf16_weights": lambda: Bf16Encoder(torch_model, autocast=False),
        "bf16_autocast": lambda: Bf16Encoder(torch_model, autocast=True),
    }
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", action="append", choices=list(variants), help="repeatable; default: all")
    only = parser.parse_args().variant or list(variants)

    WORK.mkdir(parents=True, exist_ok=True)
    preds_path = WORK / "predictions.json"
    preds = json.loads(preds_path.read_text()) if preds_path.exists() else {}
    result = json.loads(RESULT.read_text()) if RESULT.exists() else {}
    rows = result.setdefault("variants", {})
    commit = source_commit()
    texts, gold = sib_dev()
    labels = LabelSet.from_names(sorted(set(gold)))
    for name in only:
        backbone.model = variants[name]()
        started = time.perf_counter()
        pred = predict(scorer, texts, labels, 8)
        seconds = time.perf_counter() - started
        backbone.model = torch_model
        preds[name] = pred
        row = {"accuracy": 100 * sum(a == b for a, b in zip(pred, gold)) / len(gold), "seconds": seconds,
               "commit": commit, "onnx_cache_format": FORMAT if name.startswith("onnx") else None}
        if "torch_fp32" in preds:
            row["agree"] = 100 * sum(a == b for a, b in zip(pred, preds["torch_fp32"])) / len(gold)
        rows[name] = row
        print(name, round(row["accuracy"], 2), round(seconds), row.get("agree"), flush=True)
        preds_path.write_text(json.dumps(preds))
        result |= {"rows": len(gold), "threads": THREADS,
                   "command": "python bench/precision_accuracy.py [--variant NAME ...]; each row names its commit"}
        RESULT.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
