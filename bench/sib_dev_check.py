"""Quick SIB-200 dev check: plain zero-shot vs a prompt trained on English 8-shot, a few languages.

    python bench/sib_dev_check.py --out bench/results/sib_dev_check

Trains on SIB-200 eng_Latn train (k shots per class, --seed), selects the epoch on eng_Latn dev,
and evaluates both on the dev split of each language given. Writes OUT.md and OUT.json with the
command and git commit. The full protocol (205 languages, seeds, ablations) is bench/quality.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from rosprompt_cli import LabelSet, evaluate, load_backbone, load_labelled
from rosprompt_cli.verbalizers.embed import EmbeddingScorer
from rosprompt_cli.training import TrainConfig, train_prompt
from provenance import source_commit  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SIB = REPO.parent / "shared" / "data" / "sib200"
LANGS = "eng_Latn,fra_Latn,rus_Cyrl,zho_Hans,arb_Arab,hin_Deva,swh_Latn,amh_Ethi,yor_Latn,hau_Latn,quy_Latn,khm_Khmr"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--langs", default=LANGS)
    parser.add_argument("--shots", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "sib_dev_check"))
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    started = time.perf_counter()
    backbone = load_backbone(None, "cpu")
    labels = LabelSet.from_names([line.strip() for line in open(SIB / "eng_Latn" / "labels.txt") if line.strip()])
    train = load_labelled(str(SIB / "eng_Latn" / "train.tsv"), "text", "category").sample_per_class(args.shots, args.seed)
    dev = load_labelled(str(SIB / "eng_Latn" / "dev.tsv"), "text", "category")
    prompt = train_prompt(backbone, train, labels, TrainConfig(seed=args.seed, epochs=args.epochs), dev)

    scorers = {"no prompt": EmbeddingScorer(backbone), "trained prompt": EmbeddingScorer(backbone, prompt)}
    rows = []
    for lang in args.langs.split(","):
        data = load_labelled(str(SIB / "dev" / f"{lang}.tsv"), "text", "category")
        row = {"language": lang, "n": len(data)}
        for name, scorer in scorers.items():
            report = evaluate(scorer, data, labels, lexicon=False)  # English label names, as recorded
            row[name] = {"accuracy": report.accuracy, "macro_f1": report.macro_f1}
        rows.append(row)
        print(lang, {k: round(v["accuracy"], 3) for k, v in row.items() if isinstance(v, dict)}, file=sys.stderr)

    mean = {name: sum(r[name]["accuracy"] for r in rows) / len(rows) for name in scorers}
    commit = source_commit()
    command = "python bench/sib_dev_check.py " + " ".join(sys.argv[1:])
    result = {"command": command, "commit": commit, "shots": args.shots, "seed": args.seed,
              "prompt_metrics": prompt.meta.metrics, "rows": rows, "mean_accuracy": mean,
              "seconds": round(time.perf_counter() - started, 1)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# SIB-200 dev: plain zero-shot vs an English 8-shot prompt (cross-entropy)",
        "",
        f"Command: `{command}` at commit `{commit}`; backbone {backbone.name} (bundled); "
        f"{args.shots} shots/class from eng_Latn train, seed {args.seed}, epoch chosen on eng_Latn dev "
        f"(epoch {prompt.meta.metrics['selected_epoch']}). Dev splits only; {result['seconds']} s on CPU.",
        "",
        "| language | n | no prompt acc | no prompt macro-F1 | prompt acc | prompt macro-F1 |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        a, b = r["no prompt"], r["trained prompt"]
        lines.append(f"| {r['language']} | {r['n']} | {a['accuracy']:.3f} | {a['macro_f1']:.3f} | {b['accuracy']:.3f} | {b['macro_f1']:.3f} |")
    lines.append(f"| **mean** | | **{mean['no prompt']:.3f}** | | **{mean['trained prompt']:.3f}** | |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
