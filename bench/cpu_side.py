"""The CPU side of `rosprompt label` against the bare fast tokenizer (issue 34), in one run.

    python bench/cpu_side.py --out bench/results/cpu_side

A near-free encoder makes the CPU side visible on any machine: a tiny XLM-R with random weights
(2 layers, hidden 32, fixed seed) saved with the bundled model's tokenizer, passed as
`--model DIR --no-prompt`. Everything `label` then spends beyond the model is reading,
checking, tokenising, scoring overhead, assembling and writing. On the same corpus (20,000
SIB-200 dev lines, every language in turn, as JSONL {id, lang, text}), in this one run:

  tokenizer   the bare fast tokenizer: the backend `tokenizers` object of the same tokenizer,
              truncating at the same length and padding to the longest of each batch of
              `--chunk-rows` texts, `encode_batch_fast` over prefix + text (all cores);
  read        polars reading the JSONL input (`pl.read_ndjson`);
  write       polars writing it back with two more columns (`write_parquet`);
  label       `rosprompt label CORPUS --model TINY --no-prompt --labels ... --out OUT.parquet` in a
              fresh process, minus the same command on a one-line input (the start-up), so
              texts/s is the steady state: lines / (T(corpus) - T(one line)).

Each timing is the best of `--repeats`, the settings interleaved. The target: label texts/s at
least 0.7 of the bare tokenizer's. The labelled run's `--summary` stage seconds and the share of
padding in its batches are reported beside; bench/profile_stages.py profiles every thread.
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

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import source_commit  # noqa: E402
from throughput import cpu_model, time_settings  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SIB = REPO.parent / "shared" / "data" / "sib200"
LABELS = "science/technology,travel,politics,sports,health,entertainment,geography"


def tiny_model(folder: Path) -> Path:
    """A 2-layer, hidden-32 XLM-R encoder (random weights, seed 0) with the bundled tokenizer."""
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaModel

    from rosprompt_cli.backbone import load_tokenizer
    from rosprompt_cli.bundled import bundled_model_dir

    source = bundled_model_dir()
    tokenizer = load_tokenizer(str(source), True)
    torch.manual_seed(0)
    config = XLMRobertaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                              intermediate_size=64, max_position_embeddings=514, pad_token_id=tokenizer.pad_token_id,
                              bos_token_id=0, eos_token_id=2)
    XLMRobertaModel(config, add_pooling_layer=False).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(source / name, folder / name)
    return folder


def sib_corpus(lines: int, path: Path) -> Path:
    """`lines` SIB-200 dev rows, the languages in turn (row i of every language, then row i+1)."""
    frames = [pl.read_csv(p, separator="\t", quote_char=None).select("text").with_columns(lang=pl.lit(p.stem))
              for p in sorted((SIB / "dev").glob("*.tsv"))]
    rows = []
    depth = max(f.height for f in frames)
    for i in range(depth):
        rows += [{"lang": f["lang"][i], "text": f["text"][i]} for f in frames if i < f.height]
    rows = rows[:lines]
    pl.DataFrame({"id": list(range(len(rows))), "lang": [r["lang"] for r in rows],
                  "text": [r["text"] for r in rows]}).write_ndjson(path)
    return path


def bare_tokenizer_seconds(model_dir: Path, texts: list[str], chunk_rows: int) -> float:
    """The backend tokenizer over the texts as `label` tokenises them: the model's prefix, its
    text limit, padded to the longest of each chunk, straight into one numpy array per chunk."""
    import numpy as np
    from tokenizers import Tokenizer

    from rosprompt_cli.backbone import load_backbone
    from rosprompt_cli.verbalizers.base import clip_texts, text_token_limit

    backbone = load_backbone(str(model_dir), "cpu")
    limit = text_token_limit(backbone, 0)
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.enable_truncation(limit)
    tokenizer.enable_padding(pad_id=backbone.tokenizer.pad_token_id)
    prefixed = clip_texts(texts, backbone.text_prefix, limit)
    started = time.perf_counter()
    for start in range(0, len(prefixed), chunk_rows):
        encodings = tokenizer.encode_batch_fast(prefixed[start:start + chunk_rows])
        np.array([e.ids for e in encodings], dtype=np.int64)
    return time.perf_counter() - started


def padding_share(model_dir: Path, texts: list[str], chunk_rows: int) -> dict[str, float]:
    """The share of the positions a forward pass computes that are padding, with `label`'s
    length-bucketed batches at the CPU and the CUDA defaults: what padding-free attention could
    save at most."""
    from rosprompt_cli.spec import ScorerSpec, build_scorer
    from rosprompt_cli.batching import DEFAULT_BATCHING

    scorer = build_scorer(ScorerSpec(model=str(model_dir), use_prompt=False, runtime="torch"))
    shares = {}
    for device, batching in DEFAULT_BATCHING.items():
        real = computed = 0
        for start in range(0, len(texts), chunk_rows):
            encoded = scorer.encode(texts[start:start + chunk_rows])
            order, ranges = encoded.bounds(batching)
            widths = encoded.lengths[order]
            computed += sum((end - begin) * int(widths[end - 1]) for begin, end in ranges)
            real += encoded.tokens
        shares[f"{device} ({batching.rows} texts, {batching.tokens} tokens)"] = 1 - real / computed
    return shares


def label_seconds(model_dir: Path, corpus: Path, out: Path, env: dict) -> float:
    command = [sys.executable, "-m", "rosprompt_cli", "label", str(corpus), "--model", str(model_dir), "--no-prompt",
               "--labels", LABELS, "--out", str(out), "--force", "--summary", str(out.with_suffix(".json"))]
    started = time.perf_counter()
    subprocess.run(command, check=True, env=env, cwd=REPO, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", help="also keep the tiny model and the corpus in this folder (for profile_stages.py)")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "cpu_side"))
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="rosprompt-cpu-side-"))
    env = os.environ | {"ROSPROMPT_HOME": os.environ.get("ROSPROMPT_HOME", str(tmp / "home"))}
    os.environ["ROSPROMPT_HOME"] = env["ROSPROMPT_HOME"]
    model_dir = tiny_model(tmp / "tiny-xlmr")
    corpus = sib_corpus(args.lines, tmp / "corpus.jsonl")
    one_line = tmp / "one.jsonl"
    one_line.write_text(corpus.read_text(encoding="utf-8").splitlines(keepends=True)[0], encoding="utf-8")
    frame = pl.read_ndjson(corpus)
    texts = frame["text"].to_list()
    chunk_rows = 2048
    label_seconds(model_dir, one_line, tmp / "warm.parquet", env)  # exports the tiny model's ONNX graph once

    def run(what: str) -> float:
        if what == "tokenizer":
            return bare_tokenizer_seconds(model_dir, texts, chunk_rows)
        if what == "read":
            started = time.perf_counter()
            pl.read_ndjson(corpus)
            return time.perf_counter() - started
        if what == "write":
            labelled = frame.with_columns(label=pl.lit("sports"), score=pl.lit(0.5))
            started = time.perf_counter()
            labelled.write_parquet(tmp / "bare.parquet")
            return time.perf_counter() - started
        if what == "label":
            return label_seconds(model_dir, corpus, tmp / "out.parquet", env)
        return label_seconds(model_dir, one_line, tmp / "one.parquet", env)

    kinds = ["tokenizer", "read", "write", "label", "label-one-line"]
    times = time_settings(kinds, run, args.repeats)
    best = {kind: min(values) for kind, values in times.items()}
    steady = best["label"] - best["label-one-line"]
    rates = {"tokenizer": len(texts) / best["tokenizer"], "label": len(texts) / steady,
             "read": len(texts) / best["read"], "write": len(texts) / best["write"]}
    ratio = rates["label"] / rates["tokenizer"]
    stages = json.loads((tmp / "out.json").read_text()).get("stage_seconds")
    padding = padding_share(model_dir, texts, chunk_rows)
    result = {
        "command": "python bench/cpu_side.py " + " ".join(sys.argv[1:]), "commit": source_commit(),
        "machine": f"{cpu_model()}, {os.cpu_count()} cores", "python": platform.python_version(),
        "lines": len(texts), "best_seconds": best, "runs_seconds": times, "texts_per_s": rates,
        "label_steady_seconds": steady, "label_over_tokenizer": ratio, "label_stage_seconds": stages,
        "padding_share": padding,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.keep:
        shutil.copytree(model_dir, Path(args.keep) / "tiny-xlmr", dirs_exist_ok=True)
        shutil.copy(corpus, Path(args.keep) / "corpus.jsonl")
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# The CPU side of `label` against the bare fast tokenizer", "",
        f"Command: `{result['command']}` at {result['commit']}; {result['machine']}; {len(texts):,} SIB-200 dev "
        f"lines (JSONL); tiny random XLM-R (2 layers, hidden 32) with the bundled tokenizer, `--no-prompt`, 7 "
        f"labels, Parquet output; best of {args.repeats}, interleaved.", "",
        "| what | seconds | texts/s |", "| --- | ---: | ---: |",
        f"| bare tokenizer (encode_batch_fast, {chunk_rows}-text batches, into numpy) | {best['tokenizer']:.2f} | "
        f"{rates['tokenizer']:,.0f} |",
        f"| polars read_ndjson | {best['read']:.2f} | {rates['read']:,.0f} |",
        f"| polars write_parquet (+2 columns) | {best['write']:.2f} | {rates['write']:,.0f} |",
        f"| `rosprompt label`, whole run | {best['label']:.2f} | |",
        f"| `rosprompt label`, one line (start-up) | {best['label-one-line']:.2f} | |",
        f"| `rosprompt label`, steady state (difference) | {steady:.2f} | {rates['label']:,.0f} |", "",
        f"**label / bare tokenizer: {ratio:.2f}** (target: at least 0.7).", "",
    ]
    lines += ["Share of the positions computed that are padding, with `label`'s length-bucketed batches "
              "(the most padding-free attention could save): "
              + "; ".join(f"{name}: {share:.1%}" for name, share in padding.items()) + ".", ""]
    if stages:
        lines += ["Stage seconds of the labelled run (`--summary` stage_seconds; stages overlap, so they need not "
                  "add up to the wall time):", "", "| stage | seconds |", "| --- | ---: |"]
        lines += [f"| {stage} | {seconds:.2f} |" for stage, seconds in stages.items()] + [""]
    out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
