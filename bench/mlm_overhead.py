"""Costs of the masked-LM verbalizer: building the NPPrompt expansion, and scoring per batch.

1. Expansion build time for 200 labels over a ~250k vocabulary, on two embedding matrices:
   the bundled e5's real one (250,037 x 384) and one shaped like xlm-roberta-base's
   (250,002 x 768, random values: the cost of a matrix product and a top-k does not depend on
   them). 200 labels: the lexicon's 50 topics and 150 "topic in region" labels, named once each
   ("one name"), or the 50 topics also by their lexicon names in ~40 languages ("lexicon names").
2. Per-batch overhead against the bare forward pass, on a masked LM shaped like
   xlm-roberta-base (12 layers, hidden 768, random weights; speed does not depend on them):
   bare = the encoder over the templated batches; mlm = the same batches through the MLM
   verbalizer (encoder, head transform at the mask only, word scores through the decoder rows
   folded into the expansion, class scores) for 7 and 200 labels.
   Timings are interleaved over --repeats rounds; the ratio of medians is reported.

    python bench/mlm_overhead.py --texts 400 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import build_corpus, label_names  # noqa: E402

from rosprompt_cli.backbone import load_backbone  # noqa: E402
from rosprompt_cli.verbalizers.expansion import expand_words  # noqa: E402
from rosprompt_cli.labels import LabelSet  # noqa: E402
from rosprompt_cli.lexicon import expand  # noqa: E402
from rosprompt_cli.verbalizers.mlm import MlmScorer, excluded_tokens  # noqa: E402
from provenance import source_commit  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def xlmr_base_shaped(folder: Path, tokenizer_source: Path) -> Path:
    """A randomly initialised XLMRobertaForMaskedLM with xlm-roberta-base's shapes."""
    import shutil

    from transformers import XLMRobertaConfig, XLMRobertaForMaskedLM

    torch.manual_seed(0)
    config = XLMRobertaConfig(vocab_size=250002, pad_token_id=1, bos_token_id=0, eos_token_id=2)
    XLMRobertaForMaskedLM(config).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tokenizer_source / name, folder / name)
    return folder


def expansion_seconds(tokenizer, embeddings: torch.Tensor, label_set: LabelSet, repeats: int) -> tuple[float, int]:
    names, owner, languages = label_set.name_table()
    excluded = excluded_tokens(tokenizer, embeddings.shape[0])
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        expand_words(tokenizer, embeddings, names, owner, languages, len(label_set), excluded=excluded)
        times.append(time.perf_counter() - started)
    return statistics.median(times), len(names)


@torch.inference_mode()
def batch_overhead(scorer: MlmScorer, texts: list[str], label_sets: dict[str, LabelSet], repeats: int,
                   batch_size: int) -> dict[str, float]:
    encoded = scorer.encode(texts)
    batches = [(ids, mask) for _, ids, mask in encoded.batches(batch_size)]
    expansions = {name: scorer.label_vectors(ls) for name, ls in label_sets.items()}
    model = scorer.backbone.model

    def bare() -> None:
        for ids, mask in batches:
            model(input_ids=ids, attention_mask=mask)

    def verbalized(expansion) -> None:
        for ids, mask in batches:
            scorer.logits(scorer.batch_vectors(ids, mask), expansion)

    runs: dict[str, list[float]] = {"bare": []} | {name: [] for name in expansions}
    bare()  # warm-up
    for _ in range(repeats):
        started = time.perf_counter()
        bare()
        runs["bare"].append(time.perf_counter() - started)
        for name, expansion in expansions.items():
            started = time.perf_counter()
            verbalized(expansion)
            runs[name].append(time.perf_counter() - started)
    medians = {name: statistics.median(values) for name, values in runs.items()}
    return {"bare_seconds": medians["bare"], "texts": len(texts), "batches": len(batches),
            **{f"{name}_seconds": medians[name] for name in expansions},
            **{f"{name}_ratio": medians[name] / medians["bare"] for name in expansions}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", type=Path, default=RESULTS / "mlm_overhead")
    args = parser.parse_args()
    torch.manual_seed(0)
    started = time.perf_counter()
    bundled = load_backbone(None, "cpu")
    from rosprompt_cli.bundled import bundled_model_dir

    names200 = label_names(50) + label_names(150)  # the 50 lexicon topics, then 150 topics per region
    one_name = LabelSet.from_names(names200)
    with_lexicon = expand(one_name)
    results: dict = {"expansion": []}
    random_xlmr = torch.randn(250002, 768)
    for matrix_name, tokenizer, matrix in (
        ("bundled e5 (250,037 x 384)", bundled.tokenizer, bundled.word_embeddings.weight),
        ("xlm-roberta-base shape (250,002 x 768, random)", bundled.tokenizer, random_xlmr),
    ):
        for set_name, label_set in (("one name", one_name), ("lexicon names", with_lexicon)):
            seconds, words = expansion_seconds(tokenizer, matrix, label_set, args.repeats)
            results["expansion"].append({"matrix": matrix_name, "labels": len(label_set), "names": set_name,
                                         "words": words, "seconds": round(seconds, 3)})
            print(results["expansion"][-1], flush=True)
    del random_xlmr
    texts = [row["text"] for row in build_corpus(args.texts)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = xlmr_base_shaped(Path(tmp) / "xlmr-base-shaped", bundled_model_dir())
        scorer = MlmScorer(load_backbone(str(folder), "cpu"))
        label_sets = {"7 labels": LabelSet.from_names(label_names(7)), "200 labels": one_name}
        results["per_batch"] = batch_overhead(scorer, texts, label_sets, args.repeats, args.batch_size)
    print(results["per_batch"], flush=True)
    commit = source_commit()
    results["meta"] = {"command": "python bench/mlm_overhead.py " + " ".join(sys.argv[1:]), "commit": commit,
                       "torch_threads": torch.get_num_threads(), "seconds": round(time.perf_counter() - started, 1)}
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(render(results))


def render(results: dict) -> str:
    meta = results["meta"]
    lines = [
        "# MLM verbalizer costs", "",
        f"`{meta['command']}` on commit {meta['commit']}, CPU, {meta['torch_threads']} torch threads, "
        f"{meta['seconds']} s in all.", "",
        "## Building the NPPrompt expansion (k = 12, first piece), once per label set", "",
        "| embedding matrix | labels | names | label words | seconds |", "| --- | ---: | --- | ---: | ---: |",
    ]
    for row in results["expansion"]:
        lines.append(f"| {row['matrix']} | {row['labels']} | {row['names']} | {row['words']:,} | {row['seconds']} |")
    pb = results["per_batch"]
    lines += [
        "", "## Per batch, against the bare forward pass", "",
        f"A masked LM shaped like xlm-roberta-base (random weights), {pb['texts']} SIB-200 dev lines in "
        f"{pb['batches']} length-bucketed batches, the template 'A {{mask}} news: {{text}}', no prompt.", "",
        "| run | seconds | ratio to bare |", "| --- | ---: | ---: |",
        f"| bare encoder forward | {pb['bare_seconds']:.2f} | 1.000 |",
    ]
    for name in ("7 labels", "200 labels"):
        lines.append(f"| MLM verbalizer, {name} | {pb[name + '_seconds']:.2f} | {pb[name + '_ratio']:.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
