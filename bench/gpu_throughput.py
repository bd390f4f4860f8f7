"""`label` on one CUDA GPU, where it stays on torch (issue 17): texts/s of the bare forward pass
and of `label` end to end, per dtype and batch size, with and without a prompt, and with 2 and
200 labels. Run on a machine with a GPU:

    python bench/gpu_throughput.py --corpus CORPUS.jsonl --model MODEL_DIR --out bench/results/gpu_throughput

CORPUS.jsonl: the corpus of bench/throughput.py (`python bench/throughput.py --write-corpus F`).
MODEL_DIR: a model folder. `--random-weights` first replaces its weights by random ones of the
same shapes (the device machines here cannot install the bundled weights): texts/s depend on the
shapes, not on the values, so the timings hold for the bundled model; its labels mean nothing
and are not reported. The prompt is trained on this machine with `rosprompt train` (its length
is the shipped prompt's, 16), which also runs the training path on the GPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import bare_batches, label_names, label_run, time_settings  # noqa: E402

from rosprompt_cli.batching import Batching  # noqa: E402

from rosprompt_cli import load_backbone  # noqa: E402
from rosprompt_cli.prompt import SoftPrompt  # noqa: E402
from rosprompt_cli.verbalizers.embed import EmbeddingScorer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def randomise(model_dir: Path, target: Path) -> Path:
    """A copy of `model_dir`'s architecture and tokenizer with random weights (fixed seed)."""
    import shutil

    from transformers import AutoConfig, AutoModel

    torch.manual_seed(0)
    AutoModel.from_config(AutoConfig.from_pretrained(model_dir)).save_pretrained(target)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(model_dir / name, target / name)
    return target


@torch.inference_mode()
def bare_seconds(scorer: EmbeddingScorer, batches: list[tuple]) -> float:
    model, device = scorer.backbone.model, scorer.backbone.device
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    synchronize()
    started = time.perf_counter()
    for ids, mask in batches:
        model(input_ids=ids.to(device, non_blocking=True), attention_mask=mask.to(device, non_blocking=True))
    synchronize()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--random-weights", action="store_true")
    parser.add_argument("--batchings", default="64,256,512/16384",
                        help="forward-pass bounds to time: TEXTS or TEXTS/TOKENS, comma-separated")
    parser.add_argument("--dtypes", default="float32,bfloat16,float16")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cuda", help="cpu: a dry run of this script")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "gpu_throughput"))
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    model_dir = Path(args.model)
    if args.random_weights:
        model_dir = randomise(model_dir, tmp / "model")
    corpus = Path(args.corpus)
    texts = pl.read_ndjson(corpus)["text"].to_list()
    prompt_path = tmp / "prompt.safetensors"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "rosprompt_cli", "train", str(REPO / "samples" / "train_en.csv"),
                    "--model", str(model_dir), "--epochs", "2", "--prompt-len", "16", "--device", args.device, "--out", str(prompt_path)],
                   check=True, cwd=REPO)
    train_seconds = time.perf_counter() - started
    prompt = SoftPrompt.load(prompt_path)
    sizes = [Batching(int(rows), int(tokens) if tokens else None)
             for rows, _, tokens in (item.partition("/") for item in args.batchings.split(","))]
    rows = []
    for dtype in args.dtypes.split(","):
        backbone = load_backbone(str(model_dir), args.device, dtype=dtype)
        scorers = {"prompt": EmbeddingScorer(backbone, prompt), "no prompt": EmbeddingScorer(backbone)}
        for setting, scorer in scorers.items():
            for size in sizes:
                batches = bare_batches(scorer, texts, size, 20_000)
                bare_seconds(scorer, batches[:4])  # warm-up: kernels, allocator
                label_run(scorer, corpus, tmp / "warm.parquet", label_names(7), size)
                times = time_settings(["label", "bare"], lambda what: (
                    label_run(scorer, corpus, tmp / "out.parquet", label_names(7), size) if what == "label"
                    else bare_seconds(scorer, batches)), args.repeats)
                row = {"dtype": dtype, "setting": setting, "batch_size": size.rows, "batch_tokens": size.tokens,
                       "label_texts_per_s": len(texts) / min(times["label"]),
                       "bare_texts_per_s": len(texts) / min(times["bare"])}
                row["ratio"] = row["label_texts_per_s"] / row["bare_texts_per_s"]
                rows.append(row)
                print(json.dumps(row), flush=True)
    best = max((r for r in rows if r["setting"] == "prompt"), key=lambda r: r["label_texts_per_s"])
    backbone = load_backbone(str(model_dir), args.device, dtype=best["dtype"])
    scorer = EmbeddingScorer(backbone, prompt)
    best_batching = Batching(best["batch_size"], best["batch_tokens"])
    labels_times = time_settings([2, 200], lambda n: label_run(scorer, corpus, tmp / "n.parquet", label_names(n),
                                                               best_batching), args.repeats)
    result = {
        "command": "python bench/gpu_throughput.py " + " ".join(sys.argv[1:]),
        "gpu": torch.cuda.get_device_name(0) if args.device != "cpu" else "none (cpu dry run)", "torch": torch.__version__, "python": platform.python_version(),
        "cpu_threads": torch.get_num_threads(), "texts": len(texts), "random_weights": args.random_weights,
        "train_2_epochs_seconds": train_seconds, "rows": rows,
        "labels": {str(n): len(texts) / min(t) for n, t in labels_times.items()}, "best": best,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# `rosprompt label` on one GPU (torch)", "",
        f"Command: `{result['command']}`. {result['gpu']}, torch {result['torch']}, {result['cpu_threads']} CPU "
        f"threads; {len(texts):,} corpus lines of bench/throughput.py; 7 labels; best of {args.repeats} runs. "
        + ("Random weights of the bundled model's shapes (speed only). " if args.random_weights else ""),
        "`label` = read JSONL, tokenise, score, write Parquet; bare = the model's forward pass over the same "
        "padded batches (tokenised beforehand), synchronised.", "",
        "| dtype | prompt | texts / tokens per pass | label texts/s | bare texts/s | label / bare |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(f"| {r['dtype']} | {r['setting']} | {r['batch_size']} / {r['batch_tokens'] or '-'} | {r['label_texts_per_s']:,.0f} | "
                     f"{r['bare_texts_per_s']:,.0f} | {r['ratio']:.2f} |")
    per_dtype = {}
    for r in rows:
        if r["setting"] == "prompt":
            per_dtype[r["dtype"]] = max(per_dtype.get(r["dtype"], 0.0), r["ratio"])
    lines += ["", "Best label / bare forward per precision (prompt): "
              + ", ".join(f"{dtype} {ratio:.2f}" for dtype, ratio in per_dtype.items()) + "."]
    lines += ["", f"Labels, at the best setting ({best['dtype']}, {best['batch_size']} texts / "
              f"{best['batch_tokens'] or '-'} tokens, prompt): 2 labels "
              f"{result['labels']['2']:,.0f} texts/s, 200 labels {result['labels']['200']:,.0f} texts/s.", ""]
    out.with_suffix(".md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
