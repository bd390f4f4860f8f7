"""Throughput benchmark of `rosprompt label` (issue 7), all on the same texts, in one run.

    python bench/throughput.py --out bench/results/throughput

Sections (each a ratio against a baseline measured in this same process, or for memory by this
same script, so that the noise of a shared machine cancels out):
  bare      `label` end to end (read JSONL, tokenise, score, write Parquet) against the bare
            backbone forward pass over the same padded batches (the same tensor shapes), with the
            shipped prompt and with --no-prompt;
  labels    `label` with 2, 10, 50 and 200 labels;
  batch     `label` with several --batch-size values (the default is chosen from this);
  int8      --quantize int8 against float32: speed, and accuracy on all 205 SIB-200 dev languages;
  runtimes  `label` on torch and on ONNX Runtime (float32, int8) and in bfloat16 where the CPU has
            it, against today's default (torch float32) and against the bare ONNX Runtime forward
            pass over the same batches (issue 17);
  rivals    sentence-transformers `encode` + cosine, and the zero-shot-classification pipeline
            (one forward per text and label) on the same encoder;
  memory    peak resident memory of the `rosprompt label` CLI on 10k and on 200k lines.
Writes OUT.md and OUT.json with the command and the git commit; `--profile` also writes a
pyinstrument profile of one `label` run (OUT.profile.txt).

The corpus: lines of 1 to 6 consecutive sentences of one SIB-200 dev language (all 205, in
turn), plus the multilingual samples, so lengths range from a few tokens to the model's limit.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import polars as pl
import torch

from rosprompt_cli import LabelSet, load_backbone
from rosprompt_cli.batching import Batching
from rosprompt_cli.file_run import FileRun, RunRequest
from rosprompt_cli.frames import LabelOptions
from rosprompt_cli.lexicon import load_lexicon
from rosprompt_cli.spec import ScorerSpec, build_scorer
from rosprompt_cli.verbalizers.embed import EmbeddingScorer
from provenance import source_commit  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SIB = REPO.parent / "shared" / "data" / "sib200"
CORPUS_SEED = 7
SENTENCES_PER_LINE = (1, 1, 1, 1, 2, 2, 3, 4, 6)
REGIONS = ("Africa", "Asia", "Europe", "the Americas")
T = TypeVar("T")


# ---------------------------------------------------------------- corpus and label sets


def build_corpus(lines: int, seed: int = CORPUS_SEED) -> list[dict]:
    """`lines` rows {id, lang, text}: languages in turn, each line 1-6 consecutive sentences."""
    rng = random.Random(seed)
    by_language = {
        path.stem: pl.read_csv(path, separator="\t", quote_char=None)["text"].to_list()
        for path in sorted((SIB / "dev").glob("*.tsv"))
    }
    samples = pl.read_ndjson(REPO / "samples" / "news_multilingual.jsonl")
    rows = [{"id": i, "lang": str(lang), "text": text} for i, (lang, text) in
            enumerate(zip(samples["lang"], samples["text"]))][: lines // 10]
    languages = list(by_language)
    while len(rows) < lines:
        lang = languages[len(rows) % len(languages)]
        sentences = by_language[lang]
        k = rng.choice(SENTENCES_PER_LINE)
        start = rng.randrange(len(sentences))
        text = " ".join(sentences[(start + j) % len(sentences)] for j in range(k))
        rows.append({"id": len(rows), "lang": lang, "text": text})
    return rows


def cpu_model() -> str:
    """The CPU's model name and its vector extensions that decide these speeds (they differ
    between the machines the bench runs on)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown CPU"
    fields = {key.strip(): value.strip() for key, value in (line.split(":", 1) for line in info.splitlines() if ":" in line)}
    name = fields.get("model name", "unknown CPU")
    flags = set(fields.get("flags", "").split())
    wanted = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16") if f in flags]
    return f"{name}; {' '.join(wanted) or 'no AVX2'}"


def write_jsonl(rows: list[dict], path: Path) -> Path:
    pl.DataFrame(rows).write_ndjson(path)
    return path


def label_names(count: int) -> list[str]:
    """The lexicon's topics first; beyond 50, each topic per region ("sports in Asia")."""
    topics = list(load_lexicon())
    if count <= len(topics):
        return topics[:count]
    names = [f"{topic} in {region}" for region in REGIONS for topic in topics]
    return names[:count]


# ---------------------------------------------------------------- timed runs


def label_run(scorer: EmbeddingScorer, corpus: Path, out: Path, names: list[str], batching: Batching | int) -> float:
    """Seconds for one in-process `label` run: input check, label vectors, scoring, Parquet output."""
    started = time.perf_counter()
    batching = Batching(batching) if isinstance(batching, int) else batching
    options = LabelOptions(batch_size=batching.rows, max_batch_tokens=batching.tokens or 0)
    with FileRun(RunRequest(input=str(corpus), out=str(out), force=True), options, names) as run:
        run.prepare()
        run.execute(scorer, LabelSet.from_names(names))
    return time.perf_counter() - started


def bare_batches(scorer: EmbeddingScorer, texts: list[str], batching: Batching | int, chunk_rows: int) -> list[tuple]:
    """The padded batches `label` feeds the model, as token ids: the prompt's positions are
    filled with an ordinary token so that the bare forward pass sees the same shapes."""
    n = scorer.prompt_length
    filler = scorer.backbone.tokenizer.convert_tokens_to_ids("▁")
    batches = []
    for start in range(0, len(texts), chunk_rows):
        encoded = scorer.encode(texts[start : start + chunk_rows])
        for _, ids, mask in encoded.batches(batching):
            if n:
                ids = torch.cat([ids[:, :1], ids.new_full((ids.shape[0], n), filler), ids[:, 1:]], dim=1)
                mask = torch.cat([mask[:, :1], mask.new_ones(mask.shape[0], n), mask[:, 1:]], dim=1)
            batches.append((ids, mask))
    return batches


@torch.inference_mode()
def bare_forward(scorer: EmbeddingScorer, batches: list[tuple]) -> float:
    model = scorer.backbone.model
    started = time.perf_counter()
    for ids, mask in batches:
        model(input_ids=ids, attention_mask=mask)
    return time.perf_counter() - started


def time_settings(settings: list[T], run: Callable[[T], float], repeats: int) -> dict[T, list[float]]:
    """Seconds of `run(setting)` for every setting, `repeats` rounds, interleaved so that a slow
    spell of the machine does not fall on one setting only."""
    times: dict[T, list[float]] = {setting: [] for setting in settings}
    for _ in range(repeats):
        for setting in settings:
            times[setting].append(run(setting))
    return times


# ---------------------------------------------------------------- sections


def section_bare(scorers: dict[str, EmbeddingScorer], corpus: Path, texts: list[str], tmp: Path,
                 batch_size: Batching, repeats: int) -> dict:
    result = {}
    for name, scorer in scorers.items():
        batches = bare_batches(scorer, texts, batch_size, RunRequest(input="-").chunk_rows)
        runs = {
            "label": lambda: label_run(scorer, corpus, tmp / "bare.parquet", label_names(2), batch_size),
            "bare": lambda: bare_forward(scorer, batches),
        }
        times = time_settings(list(runs), lambda kind: runs[kind](), repeats)
        label_times, bare_times = times["label"], times["bare"]
        label_s, bare_s = min(label_times), min(bare_times)
        result[name] = {
            "texts": len(texts),
            "label_s": label_s, "bare_forward_s": bare_s,
            "label_texts_per_s": len(texts) / label_s, "bare_texts_per_s": len(texts) / bare_s,
            "ratio": bare_s / label_s,
            "label_runs_s": label_times, "bare_runs_s": bare_times,
        }
        print(f"bare [{name}]: label {len(texts) / label_s:.1f} texts/s, bare forward "
              f"{len(texts) / bare_s:.1f} texts/s, ratio {bare_s / label_s:.3f}", flush=True)
    return result


def section_labels(scorer: EmbeddingScorer, corpus: Path, texts: list[str], tmp: Path, batch_size: Batching,
                   counts: list[int], repeats: int) -> dict:
    times = time_settings(
        counts, lambda count: label_run(scorer, corpus, tmp / "labels.parquet", label_names(count), batch_size), repeats
    )
    base = min(times[counts[0]])
    result = {str(c): {"seconds": min(t), "texts_per_s": len(texts) / min(t), "vs_first": min(t) / base,
                       "runs_s": t} for c, t in times.items()}
    for c in counts:
        print(f"labels {c}: {result[str(c)]['texts_per_s']:.1f} texts/s, {result[str(c)]['vs_first']:.3f}x",
              flush=True)
    return result


def section_batch(scorer: EmbeddingScorer, corpus: Path, texts: list[str], tmp: Path, sizes: list[int],
                  repeats: int) -> dict:
    times = time_settings(
        sizes, lambda size: label_run(scorer, corpus, tmp / "batch.parquet", label_names(7), size), repeats
    )
    best = min(min(t) for t in times.values())
    result = {str(s): {"seconds": min(t), "texts_per_s": len(texts) / min(t), "vs_best": min(t) / best,
                       "runs_s": t} for s, t in times.items()}
    for s in sizes:
        print(f"batch {s}: {result[str(s)]['texts_per_s']:.1f} texts/s ({result[str(s)]['vs_best']:.3f}x best)",
              flush=True)
    return result


def sib_dev() -> tuple[list[str], list[str], list[str]]:
    texts, gold, langs = [], [], []
    for path in sorted((SIB / "dev").glob("*.tsv")):
        frame = pl.read_csv(path, separator="\t", quote_char=None)
        texts += frame["text"].to_list()
        gold += frame["category"].to_list()
        langs += [path.stem] * frame.height
    return texts, gold, langs


def section_int8(fp32: EmbeddingScorer, int8: EmbeddingScorer, corpus: Path, texts: list[str], tmp: Path,
                 batch_size: Batching, repeats: int, accuracy: bool) -> dict:
    from rosprompt_cli.evaluation import predict
    from rosprompt_cli.metrics import accuracy as accuracy_of

    scorers = {"float32": fp32, "int8": int8}
    times = time_settings(
        list(scorers),
        lambda name: label_run(scorers[name], corpus, tmp / "int8.parquet", label_names(7), batch_size),
        repeats,
    )
    result: dict = {name: {"seconds": min(t), "texts_per_s": len(texts) / min(t), "runs_s": t}
                    for name, t in times.items()}
    result["speedup"] = min(times["float32"]) / min(times["int8"])
    print(f"int8: {result['speedup']:.2f}x the float32 speed", flush=True)
    if accuracy:
        dev_texts, gold, langs = sib_dev()
        labels = LabelSet.from_names(sorted(set(gold)))
        for name, scorer in (("float32", fp32), ("int8", int8)):
            predicted = predict(scorer, dev_texts, labels, batch_size.rows, batch_size.tokens or 0)
            per_language = {}
            for lang in sorted(set(langs)):
                rows = [i for i, x in enumerate(langs) if x == lang]
                per_language[lang] = accuracy_of([gold[i] for i in rows], [predicted[i] for i in rows])
            result[name]["sib200_dev_accuracy"] = 100 * accuracy_of(gold, predicted)
            result[name]["sib200_dev_language_mean"] = 100 * statistics.mean(per_language.values())
            result[name]["agreement_with_float32"] = None
            result[name]["_predicted"] = predicted
        agree = sum(a == b for a, b in zip(result["float32"].pop("_predicted"), result["int8"].pop("_predicted")))
        result["int8"]["agreement_with_float32"] = 100 * agree / len(dev_texts)
        result["accuracy_change_points"] = result["int8"]["sib200_dev_accuracy"] - result["float32"]["sib200_dev_accuracy"]
        result["dev_rows"] = len(dev_texts)
        print(f"int8 accuracy change on SIB-200 dev: {result['accuracy_change_points']:+.2f} points", flush=True)
    return result


RUNTIME_SETTINGS = {  # name: (ScorerSpec overrides, with the shipped prompt)
    "torch float32 (--runtime torch)": ({"runtime": "torch"}, True),
    "onnx float32 (the default on a CPU)": ({"runtime": "onnx"}, True),
    "onnx int8": ({"runtime": "onnx", "quantize": "int8"}, True),
    "torch int8": ({"runtime": "torch", "quantize": "int8"}, True),
    "torch bfloat16": ({"runtime": "torch", "dtype": "bfloat16"}, True),
    "torch float32, --no-prompt": ({"runtime": "torch"}, False),
    "onnx float32, --no-prompt": ({"runtime": "onnx"}, False),
}


def onnx_bare_forward(scorer, batches: list[tuple]) -> float:
    """Seconds of the ONNX Runtime session alone over `batches`, input embeddings made beforehand."""
    with torch.inference_mode():
        feeds = [{"inputs_embeds": scorer.backbone.word_embeddings(ids).float().numpy(),
                  "attention_mask": mask.numpy()} for ids, mask in batches]
    session = scorer.backbone.model.session
    started = time.perf_counter()
    for feed in feeds:
        session.run(None, feed)
    return time.perf_counter() - started


def section_runtimes(corpus: Path, texts: list[str], tmp: Path, batch_size: Batching, repeats: int) -> dict:
    from rosprompt_cli.backbone import cpu_has_native_bf16

    scorers = {}
    for name, (overrides, use_prompt) in RUNTIME_SETTINGS.items():
        if overrides.get("dtype") == "bfloat16" and not cpu_has_native_bf16():
            continue
        scorers[name] = build_scorer(ScorerSpec(device="cpu", use_prompt=use_prompt, **overrides))
        label_run(scorers[name], corpus, tmp / "warm.parquet", label_names(7), batch_size)
    runs = {name: (lambda scorer=scorer: label_run(scorer, corpus, tmp / "rt.parquet", label_names(7), batch_size))
            for name, scorer in scorers.items()}
    for name in ("onnx float32 (the default on a CPU)", "onnx float32, --no-prompt"):
        batches = bare_batches(scorers[name], texts, batch_size, RunRequest(input="-").chunk_rows)
        runs[f"bare ONNX Runtime: {name}"] = lambda scorer=scorers[name], batches=batches: onnx_bare_forward(scorer, batches)
    times = time_settings(list(runs), lambda name: runs[name](), repeats)
    base = min(times["torch float32 (--runtime torch)"])
    result = {name: {"seconds": min(t), "texts_per_s": len(texts) / min(t), "vs_torch_float32": base / min(t),
                     "runs_s": t} for name, t in times.items()}
    for prompt in ("onnx float32 (the default on a CPU)", "onnx float32, --no-prompt"):
        result[prompt]["vs_bare_onnx"] = min(times[f"bare ONNX Runtime: {prompt}"]) / min(times[prompt])
    for name, r in result.items():
        print(f"runtimes [{name}]: {r['texts_per_s']:.1f} texts/s, {r['vs_torch_float32']:.2f}x torch float32",
              flush=True)
    return result


def section_rivals(scorer: EmbeddingScorer, corpus: Path, texts: list[str], tmp: Path, batch_size: Batching,
                   label_time_by_count: dict, pipeline_plan: list[tuple[int, int]]) -> dict:
    """sentence-transformers encode + cosine on every text; the zero-shot pipeline on a sample of
    texts per label count (its cost grows with texts x labels, so a sample measures it)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import AutoModelForSequenceClassification, pipeline

    model_dir = str(_model_dir())
    result: dict = {}
    encoder = Transformer(model_dir, max_seq_length=scorer.backbone.max_length)
    pooling = Pooling(encoder.get_embedding_dimension(), pooling_mode="mean")
    st = SentenceTransformer(modules=[encoder, pooling, Normalize()], device="cpu")
    names = label_names(2)
    prefix = scorer.backbone.text_prefix
    started = time.perf_counter()
    text_vectors = st.encode([prefix + t for t in texts], batch_size=batch_size.rows, convert_to_tensor=True)
    label_vectors = st.encode([prefix + n for n in names], batch_size=batch_size.rows, convert_to_tensor=True)
    (text_vectors @ label_vectors.T).argmax(-1)
    st_s = time.perf_counter() - started
    ours = label_time_by_count["2"]["seconds"]
    result["sentence_transformers"] = {
        "texts": len(texts), "seconds": st_s, "texts_per_s": len(texts) / st_s,
        "rosprompt_speedup": st_s / ours,
        "note": "encode + cosine + argmax only, no file reading or writing (rosprompt's time includes them)",
    }
    print(f"sentence-transformers: {len(texts) / st_s:.1f} texts/s; rosprompt {st_s / ours:.2f}x", flush=True)

    torch.manual_seed(0)
    nli = AutoModelForSequenceClassification.from_pretrained(
        model_dir, num_labels=3, id2label={0: "contradiction", 1: "neutral", 2: "entailment"},
        label2id={"contradiction": 0, "neutral": 1, "entailment": 2},
    ).eval()
    classify = pipeline("zero-shot-classification", model=nli, tokenizer=scorer.backbone.tokenizer, device="cpu")
    result["zero_shot_pipeline"] = {"note": "randomly initialised 3-way head on the same encoder: cost only",
                                    "by_labels": {}}
    for count, sample in pipeline_plan:
        chosen = texts[:: max(1, len(texts) // sample)][:sample]  # spread over the corpus: its length mix
        started = time.perf_counter()
        classify(chosen, candidate_labels=label_names(count), batch_size=batch_size.rows)
        seconds = time.perf_counter() - started
        per_text = seconds / sample
        ours_per_text = label_time_by_count[str(count)]["seconds"] / len(texts)
        result["zero_shot_pipeline"]["by_labels"][str(count)] = {
            "texts": sample, "seconds": seconds, "texts_per_s": sample / seconds,
            "rosprompt_speedup": per_text / ours_per_text,
        }
        print(f"pipeline {count} labels: {sample / seconds:.2f} texts/s; rosprompt {per_text / ours_per_text:.1f}x",
              flush=True)
    return result


def _model_dir() -> Path:
    from rosprompt_cli.bundled import bundled_model_dir

    return bundled_model_dir()


def peak_rss_mib(command: list[str]) -> float:
    """Peak resident memory of `command`, from a wrapper process that has no other child."""
    probe = (
        "import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:]).returncode; "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(rc)"
    )
    done = subprocess.run([sys.executable, "-c", probe, *command], capture_output=True, text=True, check=True)
    return int(done.stdout.strip().splitlines()[-1]) / 1024


def section_memory(corpus_rows: list[dict], tmp: Path, sizes: list[int], max_length: int, runtime: str) -> dict:
    """The CLI with --no-prompt and a short --max-length, so that 200k rows take minutes: what could
    grow with the row count (input check, chunks, writer, summary) is the same code either way."""
    result = {}
    for size in sizes:
        rows = [dict(r, id=i) for i, r in enumerate(corpus_rows[i % len(corpus_rows)] for i in range(size))]
        path = write_jsonl(rows, tmp / f"memory_{size}.jsonl")
        command = [sys.executable, "-m", "rosprompt_cli", "label", str(path), "--labels", ",".join(label_names(7)),
                   "--out", str(tmp / f"memory_{size}.parquet"), "--force", "--max-length", str(max_length),
                   "--no-prompt", "--no-lexicon", "--runtime", runtime]
        started = time.perf_counter()
        rss = peak_rss_mib(command)
        seconds = time.perf_counter() - started
        out_rows = pl.scan_parquet(tmp / f"memory_{size}.parquet").select(pl.len()).collect().item()
        assert out_rows == size, f"{out_rows} rows written of {size}"
        result[str(size)] = {"peak_rss_mib": rss, "seconds": seconds, "rows_out": out_rows}
        print(f"memory {size:,} lines: peak RSS {rss:.0f} MiB in {seconds:.0f}s", flush=True)
    first, last = (result[str(s)]["peak_rss_mib"] for s in (sizes[0], sizes[-1]))
    result["ratio_last_to_first"] = last / first
    result["max_length"] = max_length
    return result


def profile_label(scorer: EmbeddingScorer, corpus: Path, tmp: Path, batch_size: Batching, out: Path) -> None:
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.005)
    profiler.start()
    label_run(scorer, corpus, tmp / "profile.parquet", label_names(7), batch_size)
    profiler.stop()
    out.write_text(profiler.output_text(unicode=False, color=False, show_all=False))
    print(f"wrote {out}", flush=True)


# ---------------------------------------------------------------- report


def write_report(out: Path, data: dict) -> None:
    out.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n")
    runs = "; ".join(f"`{r['command']}` on commit `{r['commit']}` ({', '.join(r['sections'])})" for r in data["runs"])
    lines = [
        "# `rosprompt label` throughput",
        "",
        f"Commands: {runs}. Machine: {data['machine']}; torch "
        f"{data['torch']} with {data['torch_threads']} threads. Corpus: {data['corpus_lines']:,} lines "
        f"({data['corpus_tokens']:,} tokens, {data['languages']} languages; 1-6 SIB-200 dev sentences per line "
        f"plus the samples). Runtime of every section but runtimes: {data.get('runtime', 'torch')}. "
        f"Batch size {data['batch_size']}. Times are the best of {data['repeats']} interleaved "
        f"runs (labels: {data['label_repeats']}); every ratio compares runs of this same process.",
        "",
    ]
    if "bare" in data:
        lines += ["## End to end against the bare forward pass (target ratio >= 0.9)", "",
                  "`label` = read JSONL, check input, label vectors, tokenise, score, write Parquet. Bare = "
                  "`model(input_ids, attention_mask)` alone over the same padded batches (prompt positions "
                  "included), tokenised beforehand.", "",
                  "| setting | label texts/s | bare forward texts/s | ratio |", "| --- | ---: | ---: | ---: |"]
        for name, r in data["bare"].items():
            lines.append(f"| {name} | {r['label_texts_per_s']:.1f} | {r['bare_texts_per_s']:.1f} | {r['ratio']:.3f} |")
        lines.append("")
    if "labels" in data:
        lines += ["## Cost against the number of labels (target: 200 labels <= 1.2x of 2)", "",
                  "| labels | texts/s | time vs 2 labels |", "| ---: | ---: | ---: |"]
        for count, r in data["labels"].items():
            lines.append(f"| {count} | {r['texts_per_s']:.1f} | {r['vs_first']:.3f}x |")
        lines.append("")
    if "batch" in data:
        lines += ["## --batch-size", "", f"On the first {data['batch_lines']:,} corpus lines, 7 labels.", "",
                  "| batch size | texts/s | time vs best |", "| ---: | ---: | ---: |"]
        for size, r in data["batch"].items():
            lines.append(f"| {size} | {r['texts_per_s']:.1f} | {r['vs_best']:.3f}x |")
        lines.append("")
    if "int8" in data:
        r = data["int8"]
        lines += ["## --quantize int8 (CPU; int8 weights per output channel, feed-forward down-projections kept in float32)", "",
                  f"Speed: {r['speedup']:.2f}x the float32 texts/s ({r['int8']['texts_per_s']:.1f} against "
                  f"{r['float32']['texts_per_s']:.1f})."]
        if "accuracy_change_points" in r:
            lines += ["", f"Accuracy on all {r['dev_rows']:,} SIB-200 dev rows (205 languages, 7 labels, shipped "
                      f"prompt): float32 {r['float32']['sib200_dev_accuracy']:.2f}, int8 "
                      f"{r['int8']['sib200_dev_accuracy']:.2f} ({r['accuracy_change_points']:+.2f} points); "
                      f"language means {r['float32']['sib200_dev_language_mean']:.2f} and "
                      f"{r['int8']['sib200_dev_language_mean']:.2f}; int8 gives the float32 label to "
                      f"{r['int8']['agreement_with_float32']:.1f}% of rows."]
        lines.append("")
    if "runtimes" in data:
        lines += ["## Runtimes and precisions (issue 17)", "",
                  "`label` end to end with 7 labels; bare ONNX Runtime = the session alone over the same padded "
                  "batches, input embeddings made beforehand (the speed limit of `--runtime onnx`).", "",
                  "| setting | texts/s | vs torch float32 | label / bare ONNX Runtime |",
                  "| --- | ---: | ---: | ---: |"]
        for name, r in data["runtimes"].items():
            bare = f"{r['vs_bare_onnx']:.3f}" if "vs_bare_onnx" in r else ""
            lines.append(f"| {name} | {r['texts_per_s']:.1f} | {r['vs_torch_float32']:.2f}x | {bare} |")
        lines.append("")
    if "rivals" in data:
        r = data["rivals"]
        st = r["sentence_transformers"]
        lines += ["## Against what a user would write instead (same backbone)", "",
                  f"- sentence-transformers `encode` + cosine: {st['texts_per_s']:.1f} texts/s over all "
                  f"{st['texts']:,} texts; rosprompt `label` (2 labels, with its file I/O and the prompt) is "
                  f"{st['rosprompt_speedup']:.2f}x its speed. Timed: {st['note']}.",
                  "- transformers zero-shot-classification pipeline (one forward per text and label; "
                  f"{r['zero_shot_pipeline']['note']}), on a sample of the corpus:", "",
                  "| labels | pipeline texts/s | texts timed | rosprompt speed-up |", "| ---: | ---: | ---: | ---: |"]
        for count, p in r["zero_shot_pipeline"]["by_labels"].items():
            lines.append(f"| {count} | {p['texts_per_s']:.2f} | {p['texts']} | {p['rosprompt_speedup']:.1f}x |")
        lines.append("")
    if "memory" in data:
        m = data["memory"]
        sizes = [k for k in m if k.isdigit()]
        lines += ["## Peak resident memory of the CLI (target: within 15%)", "",
                  f"`rosprompt label FILE.jsonl --labels <7 labels> --out FILE.parquet --max-length "
                  f"{m['max_length']} --no-prompt --no-lexicon --runtime {data.get('runtime', 'torch')}` in a subprocess, on the corpus lines repeated "
                  f"(the short --max-length keeps the 200k run to minutes; it does not change what could grow "
                  f"with the row count).", "",
                  "| lines | peak RSS MiB | seconds |", "| ---: | ---: | ---: |"]
        for size in sizes:
            lines.append(f"| {int(size):,} | {m[size]['peak_rss_mib']:.0f} | {m[size]['seconds']:.0f} |")
        lines += ["", f"Ratio {int(sizes[-1]):,} to {int(sizes[0]):,} lines: {m['ratio_last_to_first']:.3f}.", ""]
    out.with_suffix(".md").write_text("\n".join(lines))
    print(f"wrote {out.with_suffix('.md')}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench/results/throughput")
    parser.add_argument("--lines", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the CLI's")
    parser.add_argument("--max-batch-tokens", type=int, default=0, help="with --batch-size; 0: no bound")
    parser.add_argument("--repeats", type=int, default=2, help="runs per setting (best kept): bare, batch, int8")
    parser.add_argument("--label-repeats", type=int, default=1)
    parser.add_argument("--batch-lines", type=int, default=1500, help="corpus lines for the --batch-size sweep")
    parser.add_argument("--sections", default="bare,labels,batch,int8,rivals,memory")
    parser.add_argument("--batch-sizes", default="4,8,16,32,64")
    parser.add_argument("--label-counts", default="2,10,50,200")
    parser.add_argument("--memory-lines", default="10000,200000")
    parser.add_argument("--memory-max-length", type=int, default=16)
    parser.add_argument("--runtime", default="torch", choices=["torch", "onnx"],
                        help="runtime of every section but runtimes (torch: as these sections were first measured)")
    parser.add_argument("--pipeline-plan", default="2:100,10:40,50:10,200:3", help="labels:texts,...")
    parser.add_argument("--no-accuracy", action="store_true", help="skip the int8 SIB-200 dev accuracy")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--merge", action="store_true", help="keep the other sections of an existing OUT.json")
    parser.add_argument("--render", action="store_true", help="only rewrite OUT.md from OUT.json")
    args = parser.parse_args()
    if args.render:
        write_report(Path(args.out), json.loads(Path(args.out).with_suffix(".json").read_text()))
        return
    sections = set(args.sections.split(","))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = build_corpus(args.lines)
    texts = [r["text"] for r in rows]
    previous = json.loads(out.with_suffix(".json").read_text()) if args.merge else {}
    run_info = {
        "command": "python bench/throughput.py " + " ".join(sys.argv[1:]),
        "commit": source_commit(),
        "sections": sorted(sections),
    }
    data: dict = previous | {
        "runs": previous.get("runs", []) + [run_info],
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores ({cpu_model()}), {platform.system()}",
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "repeats": args.repeats,
        "label_repeats": args.label_repeats,
        "corpus_lines": len(rows), "languages": len({r["lang"] for r in rows}),
    }
    with tempfile.TemporaryDirectory(prefix="rosprompt-bench-") as tmp_name:
        tmp = Path(tmp_name)
        corpus = write_jsonl(rows, tmp / "corpus.jsonl")
        prompted = build_scorer(ScorerSpec(device="cpu", runtime=args.runtime))
        data["runtime"] = args.runtime
        batch_size = Batching(args.batch_size, args.max_batch_tokens or None) if args.batch_size else prompted.default_batching
        data["batch_size"] = f"{batch_size.rows} texts, {batch_size.tokens or 'no bound on'} tokens"
        data["corpus_tokens"] = prompted.encode(texts).tokens
        plain = EmbeddingScorer(prompted.backbone, None)
        label_run(prompted, corpus, tmp / "warmup.parquet", label_names(2), batch_size)  # warm-up
        if args.profile:
            profile_label(prompted, corpus, tmp, batch_size, out.with_suffix(".profile.txt"))
        if "bare" in sections:
            data["bare"] = section_bare({"shipped prompt": prompted, "--no-prompt": plain}, corpus, texts, tmp,
                                        batch_size, args.repeats)
            write_report(out, data)  # after every section: a later failure keeps it
        counts = [int(c) for c in args.label_counts.split(",")]
        if "labels" in sections or "rivals" in sections:
            data["labels"] = section_labels(prompted, corpus, texts, tmp, batch_size, counts, args.label_repeats)
            write_report(out, data)  # after every section: a later failure keeps it
        if "batch" in sections:
            sizes = [int(s) for s in args.batch_sizes.split(",")]
            subset = write_jsonl(rows[: args.batch_lines], tmp / "batch_corpus.jsonl")
            data["batch"] = section_batch(prompted, subset, texts[: args.batch_lines], tmp, sizes, args.repeats)
            data["batch_lines"] = min(args.batch_lines, len(rows))
            write_report(out, data)  # after every section: a later failure keeps it
        if "int8" in sections:
            int8_backbone = load_backbone(None, "cpu", quantize="int8")
            int8 = EmbeddingScorer(int8_backbone, prompted.prompt)
            data["int8"] = section_int8(prompted, int8, corpus, texts, tmp, batch_size, args.repeats,
                                        not args.no_accuracy)
            write_report(out, data)  # after every section: a later failure keeps it
            del int8, int8_backbone
        if "runtimes" in sections:
            data["runtimes"] = section_runtimes(corpus, texts, tmp, batch_size, args.repeats)
            write_report(out, data)  # after every section: a later failure keeps it
        if "rivals" in sections:
            plan = [tuple(int(x) for x in item.split(":")) for item in args.pipeline_plan.split(",")]
            data["rivals"] = section_rivals(prompted, corpus, texts, tmp, batch_size, data["labels"], plan)
            write_report(out, data)  # after every section: a later failure keeps it
        if "memory" in sections:
            sizes = [int(s) for s in args.memory_lines.split(",")]
            data["memory"] = section_memory(rows, tmp, sizes, args.memory_max_length, args.runtime)
            write_report(out, data)  # after every section: a later failure keeps it
    data["peak_rss_this_process_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    write_report(out, data)


if __name__ == "__main__":
    main()
