"""How far the frozen bundled backbone goes on SIB-200 dev without any prompt: a reference for
protocol X of bench/quality.py.

    python bench/frozen_ceiling.py --out bench/results/frozen_ceiling

Rows (all on the prompt-free sentence vectors of the bundled e5-small; dev splits only; the
evaluation rows are bench/quality.py's fixed subsample of --per-language rows per language):
  zero-shot           cosine against "This text is about {label}" (quality.py's "no prompt")
  prototypes, 8 shots cosine against the mean vector of 8 English training texts per class
                      (the same shots as protocol X; mean ± std over the seeds)
  prototypes, all     the same from every English training text (701), i.e. ~88 per class
  logistic regression a linear classifier on every English training text
  centring (global / per language)
                      zero-shot after subtracting the mean text vector of the evaluation
                      corpus, or of each language's corpus (--pool-per-language unlabeled dev
                      rows of that language, the evaluated rows among them). Transductive: it
                      uses unlabeled texts of the target languages, never their labels.
  shipped prompt      the same three views (plain, centred globally, per language) with the
                      shipped default prompt (prompts/default.safetensors), for comparison.
Writes OUT.md and OUT.json with the command and git commit.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality as Q  # noqa: E402  (the benchmark's data loading and scoring)

from rosprompt_cli import load_backbone  # noqa: E402
from rosprompt_cli.prompt import SoftPrompt, shipped_prompt_path  # noqa: E402
from rosprompt_cli.verbalizers.embed import prompted_embeddings, tokenize  # noqa: E402
from provenance import source_commit  # noqa: E402


def embed(backbone, texts: list[str], prompt: SoftPrompt | None = None, batch_size: int = 32) -> torch.Tensor:
    out = []
    length = 0 if prompt is None else prompt.meta.prompt_length
    vectors = None if prompt is None else prompt.vectors
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            enc = tokenize(backbone, texts[start : start + batch_size], backbone.text_prefix, length, 128)
            out.append(prompted_embeddings(backbone, enc["input_ids"], enc["attention_mask"], vectors))
        vectors = torch.cat(out)
    return vectors.clone()  # cloned outside inference mode: usable with autograd


def mean_accuracy(evalset: Q.EvalSet, logits: torch.Tensor) -> float:
    return statistics.fmean(m["accuracy"] for m in Q.score(evalset, logits).values())


def prototypes(vectors: torch.Tensor, gold: torch.Tensor, n_classes: int) -> torch.Tensor:
    return F.normalize(torch.stack([vectors[gold == c].mean(0) for c in range(n_classes)]), dim=-1)


def logistic_regression(vectors: torch.Tensor, gold: torch.Tensor, n_classes: int, seed: int = 0) -> torch.nn.Linear:
    torch.manual_seed(seed)
    model = torch.nn.Linear(vectors.shape[1], n_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(500):
        loss = F.cross_entropy(model(vectors), gold) + 1e-3 * model.weight.pow(2).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-language", type=int, default=8, help="evaluated dev rows per language")
    parser.add_argument("--pool-per-language", type=int, default=24, help="unlabeled dev rows per language for centring")
    parser.add_argument("--seeds", default="0,1,2,3")
    parser.add_argument("--out", default=str(Q.REPO / "bench" / "results" / "frozen_ceiling"))
    args = parser.parse_args()
    started = time.perf_counter()
    backbone = load_backbone(None, "cpu")
    languages = sorted(p.stem for p in (Q.SIB / "dev").glob("*.tsv"))
    evalset = Q.load_sib_dev(languages, args.per_language)
    names = evalset.labels.names

    # The centring pool: the evaluated rows plus other dev rows of the same language, no labels used.
    extra = Q.load_sib_dev(languages, args.pool_per_language)
    evaluated = set(zip(evalset.languages, evalset.texts))
    more = [i for i, key in enumerate(zip(extra.languages, extra.texts)) if key not in evaluated]
    pool_texts = evalset.texts + [extra.texts[i] for i in more]
    pool_languages = evalset.languages + [extra.languages[i] for i in more]
    pool = embed(backbone, pool_texts)
    vectors = pool[: len(evalset.texts)]
    label_vectors = Q.LabelVectors(backbone).get(evalset.labels, False)

    by_language: dict[str, list[int]] = {}
    for i, language in enumerate(pool_languages):
        by_language.setdefault(language, []).append(i)

    def centring_rows(name: str, pool: torch.Tensor) -> dict[str, float]:
        vectors = pool[: len(evalset.texts)]
        language_means = {lang: pool[idx].mean(0) for lang, idx in by_language.items()}
        centres = torch.stack([language_means[lang] for lang in evalset.languages])
        return {
            name: mean_accuracy(evalset, vectors @ label_vectors.T),
            f"{name}, centred on the whole corpus": mean_accuracy(evalset, (vectors - pool.mean(0)) @ label_vectors.T),
            f"{name}, centred per language": mean_accuracy(evalset, (vectors - centres) @ label_vectors.T),
        }

    rows: dict[str, float | list[float]] = {}
    rows.update(centring_rows("zero-shot", pool))

    rows["prototypes, 8 shots/class"] = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        shots, _ = Q.sib_train(8, seed)
        gold = torch.tensor([names.index(y) for y in shots.labels])
        rows["prototypes, 8 shots/class"].append(mean_accuracy(evalset, vectors @ prototypes(embed(backbone, shots.texts), gold, len(names)).T))
    train = Q.read_tsv(Q.SIB / "eng_Latn" / "train.tsv")
    train_vectors = embed(backbone, train["text"].to_list())
    gold = torch.tensor([names.index(y) for y in train["category"].to_list()])
    rows[f"prototypes, all {len(gold)} English train texts"] = mean_accuracy(evalset, vectors @ prototypes(train_vectors, gold, len(names)).T)
    classifier = logistic_regression(train_vectors, gold, len(names))
    with torch.no_grad():
        rows[f"logistic regression, all {len(gold)} English train texts"] = mean_accuracy(evalset, classifier(vectors))
    shipped = shipped_prompt_path()
    if shipped is not None:
        rows.update(centring_rows("shipped prompt", embed(backbone, pool_texts, SoftPrompt.load(shipped))))

    commit = source_commit()
    command = ("python bench/frozen_ceiling.py " + shlex.join(sys.argv[1:])).strip()
    seconds = time.perf_counter() - started
    payload = {"command": command, "commit": commit, "backbone": backbone.name, "per_language_rows": args.per_language,
               "pool_per_language_rows": args.pool_per_language, "languages": len(languages),
               "seconds": round(seconds, 1), "accuracy": rows}
    lines = [
        "# The frozen backbone on SIB-200 dev: prompt-free references, and corpus centring",
        "",
        f"Command: `{command}` at commit `{commit}`; backbone {backbone.name}; {args.per_language} dev rows per "
        f"language (bench/quality.py's subsample), {len(languages)} languages; {seconds / 60:.1f} min on a 2-core CPU. "
        "Mean accuracy over languages, in percent. Dev splits only.",
        "",
        "| system | accuracy |",
        "| --- | ---: |",
    ]
    for name, value in rows.items():
        if isinstance(value, list):
            spread = f" ± {100 * statistics.stdev(value):.1f}" if len(value) > 1 else ""
            lines.append(f"| {name} (seeds {args.seeds}) | {100 * statistics.fmean(value):.1f}{spread} |")
        else:
            lines.append(f"| {name} | {100 * value:.1f} |")
    lines += ["", "Centring subtracts a mean text vector computed from unlabeled texts of the evaluation corpus "
              f"({args.pool_per_language} dev rows per language, the evaluated ones among them): transductive, "
              "not comparable with the inductive rows of bench/results/quality.md.", ""]
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text("\n".join(lines), encoding="utf-8")
    print(f"[frozen_ceiling] wrote {out.with_suffix('.md')} in {seconds:.0f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
