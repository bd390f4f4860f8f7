"""SIB-200 dev accuracy (all 20,295 rows, 7 English label names, shipped prompt) of the encoder in
float32 (torch), int8 on ONNX Runtime (every MatMul; or the feed-forward down-projections kept in
float32, what --quantize int8 --runtime onnx does) and bfloat16 (weights, or autocast), for issue 17.

    python bench/precision_accuracy.py [variant,variant,...]

Writes bench/results/precision_accuracy.json (accuracy, seconds, agreement with float32 in %,
predictions kept in $WORK). Run alone: it takes ~20 minutes on 2 cores.
"""
import os, sys, json, time, copy
from pathlib import Path
from types import SimpleNamespace
import torch, onnx, onnxruntime as ort
from onnxruntime.quantization import quantize_dynamic, QuantType
import polars as pl
from rosprompt_cli import LabelSet
from rosprompt_cli.runtime import cache_entry, onnx_encoder, OnnxEncoder
from rosprompt_cli.spec import ScorerSpec, build_scorer
from rosprompt_cli.evaluation import predict
torch.set_num_threads(2)
REPO = Path(__file__).resolve().parents[1]
SIB = REPO.parent / "shared" / "data" / "sib200" / "dev"
WORK = Path(os.environ.get("WORK", "/tmp/rosprompt-precision"))
WORK.mkdir(parents=True, exist_ok=True)
RESULT = REPO / "bench" / "results" / "precision_accuracy.json"
scorer = build_scorer(ScorerSpec(runtime="torch"))
bb = scorer.backbone
torch_model = bb.model
onnx_encoder(bb); graph = str(cache_entry(bb).graph)
m = onnx.load(graph)
mm = [n.name for n in m.graph.node if n.op_type == "MatMul"]
down = [n for n in mm if "/output/dense/" in n and "attention" not in n]
scores = [n for n in mm if n.endswith("/attention/self/MatMul") or n.endswith("/attention/self/MatMul_1")]
print(len(scores), scores[:2])
q = {"int8_all": [], "int8_keepdown": down, "int8_keepscores": scores, "int8_keepdown_scores": down + scores}
for name, excl in q.items():
    p = str(WORK / f"{name}.onnx")
    if not os.path.exists(p):
        quantize_dynamic(graph, p, per_channel=True, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"], nodes_to_exclude=excl)
def sess(p):
    o = ort.SessionOptions(); o.intra_op_num_threads = 2; o.inter_op_num_threads = 1; o.log_severity_level = 3
    return ort.InferenceSession(p, o, providers=["CPUExecutionProvider"])
class Bf16:
    def __init__(self, model, autocast):
        self.autocast = autocast
        self.model = model if autocast else copy.deepcopy(model).to(torch.bfloat16)
        self.config = model.config
    def get_input_embeddings(self): return torch_model.get_input_embeddings()
    def __call__(self, input_ids=None, attention_mask=None, inputs_embeds=None):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast):
            if inputs_embeds is None:
                inputs_embeds = torch_model.get_input_embeddings()(input_ids)
            if not self.autocast: inputs_embeds = inputs_embeds.to(torch.bfloat16)
            h = self.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask).last_hidden_state
        return SimpleNamespace(last_hidden_state=h.float())
variants = {"torch_fp32": lambda: torch_model}
for name in q: variants[name] = (lambda name=name: OnnxEncoder(sess(str(WORK / f"{name}.onnx")), torch_model))
variants["bf16_weights"] = lambda: Bf16(torch_model, False)
variants["bf16_autocast"] = lambda: Bf16(torch_model, True)
only = sys.argv[1].split(",") if len(sys.argv) > 1 else list(variants)
texts, gold, langs = [], [], []
for path in sorted(SIB.glob("*.tsv")):
    f = pl.read_csv(path, separator="\t", quote_char=None)
    texts += f["text"].to_list(); gold += f["category"].to_list(); langs += [path.stem] * f.height
labels = LabelSet.from_names(sorted(set(gold)))
PREDS = WORK / "predictions.json"  # kept out of the repository
out = json.load(open(PREDS)) if os.path.exists(PREDS) else {}
for name in only:
    bb.model = variants[name]()
    t = time.perf_counter()
    pred = predict(scorer, texts, labels, 8)
    acc = 100 * sum(a == b for a, b in zip(pred, gold)) / len(gold)
    out[name] = {"accuracy": acc, "seconds": time.perf_counter() - t, "pred": pred}
    if "torch_fp32" in out:
        agree = 100 * sum(a == b for a, b in zip(pred, out["torch_fp32"]["pred"])) / len(gold)
        out[name]["agree"] = agree
    print(name, round(acc, 2), round(out[name]["seconds"]), out[name].get("agree"), flush=True)
    json.dump(out, open(PREDS, "w"))
    json.dump({"command": "python bench/precision_accuracy.py " + " ".join(sys.argv[1:]), "rows": len(gold),
               "variants": {k: {m: v for m, v in r.items() if m != "pred"} for k, r in out.items()}},
              open(RESULT, "w"), indent=2)
