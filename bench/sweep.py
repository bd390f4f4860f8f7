"""Training-setting sweep for the RoSPrompt system of bench/quality.py, on SIB-200 dev.

    python bench/sweep.py --protocol X --seeds 0,1 --out bench/results/sweep_X

Each row changes one setting of the RoSPrompt default (TrainConfig, as `rosprompt train` uses
it) and reports the mean accuracy over the 205 languages of quality.py's fixed dev subsample,
per seed and on average. The seeds draw different training shots, so a difference smaller than
the spread between seeds is noise. Dev splits only. Writes OUT.md and OUT.json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality as Q  # noqa: E402  (the benchmark's data loading and scoring)

from rosprompt_cli import load_backbone  # noqa: E402
from rosprompt_cli.lexicon import names_by_language  # noqa: E402
from rosprompt_cli.training import train_prompt  # noqa: E402
from rosprompt_cli.training_config import ROSPROMPT_DEFAULTS  # noqa: E402
from provenance import source_commit  # noqa: E402

# One setting changed at a time from the default (max_length 128 as in quality.py). The key
# "lexicon" (default True) says whether the training labels get the lexicon's names.
SPT = {"language_keep": 1.0, "smoothing": 0.0, "penalty": "none", "penalty_weight": 0.0, "lexicon": False}
VARIANTS: dict[str, dict[str, object]] = {
    "default (30 epochs, lr 1e-2, 16 vectors, batch 16)": {},
    "15 epochs": {"epochs": 15},
    "60 epochs": {"epochs": 60},
    "lr 3e-3": {"lr": 3e-3},
    "lr 3e-2": {"lr": 3e-2},
    "32 prompt vectors": {"prompt_length": 32},
    "batch 8": {"batch_size": 8},
    "label-language keep 0.3": {"language_keep": 0.3},
    "smoothing 0.2": {"smoothing": 0.2},
    "KL weight 3": {"penalty_weight": 3.0},
    "temperature 0.02": {"temperature": 0.02},
    "standard SPT (all three ingredients off)": SPT,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protocol", choices=["X", "G"], default="X")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--per-language", type=int, default=8)
    parser.add_argument("--variants", default="all", help="row names separated by semicolons, or 'all'")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    started = time.perf_counter()
    out = Path(args.out or Q.REPO / "bench" / "results" / f"sweep_{args.protocol}")
    seeds = [int(s) for s in args.seeds.split(",")]
    wanted = list(VARIANTS) if args.variants == "all" else [k.strip() for k in args.variants.split(";")]
    unknown = [k for k in wanted if k not in VARIANTS]
    if unknown:
        parser.error(f"unknown --variants {unknown}; known: {'; '.join(VARIANTS)}")
    variants = {k: VARIANTS[k] for k in wanted}

    backbone = load_backbone(None, "cpu")
    languages = sorted(p.stem for p in (Q.SIB / "dev").glob("*.tsv"))
    evalset = Q.load_sib_dev(languages, args.per_language)
    label_vectors = Q.LabelVectors(backbone)
    classes = label_vectors.get(evalset.labels, False)
    load_train = Q.sib_train if args.protocol == "X" else Q.bbc_train
    base = replace(ROSPROMPT_DEFAULTS, max_length=128)

    rows: dict[str, list[float]] = {}
    for name, overrides in variants.items():
        settings = dict(overrides)
        use_lexicon = bool(settings.pop("lexicon", True))
        config = replace(base, **settings)
        evalset.prepare(backbone, config.prompt_length)
        rows[name] = []
        for seed in seeds:
            shots, train_labels = load_train(8, seed)
            prompt = train_prompt(backbone, shots, train_labels, replace(config, seed=seed),
                                  extra_names=names_by_language(train_labels) if use_lexicon else None)
            logits = label_vectors.logits(evalset.vectors(backbone, prompt.vectors), classes)
            rows[name].append(statistics.fmean(m["accuracy"] for m in Q.score(evalset, logits).values()))
            Q.log(f"sweep {args.protocol} {name} seed {seed}: {rows[name][-1]:.4f} ({time.perf_counter() - started:.0f}s)")

    seconds = time.perf_counter() - started
    commit = source_commit()
    command = ("python bench/sweep.py " + shlex.join(sys.argv[1:])).strip()
    payload = {"command": command, "commit": commit, "protocol": args.protocol, "seeds": seeds,
               "per_language_rows": args.per_language, "languages": len(languages), "seconds": round(seconds, 1),
               "base": asdict(base), "variants": variants, "accuracy": rows}
    out.with_suffix(".json").write_text(json.dumps(payload, indent=1, default=str) + "\n", encoding="utf-8")
    default_mean = statistics.fmean(next(iter(rows.values())))
    lines = [
        f"# RoSPrompt training settings, protocol {args.protocol}, SIB-200 dev",
        "",
        f"Command: `{command}` at commit `{commit}`; {args.per_language} dev rows per language (bench/quality.py's "
        f"subsample), {len(languages)} languages; {seconds / 60:.1f} min on a 2-core CPU. Mean accuracy over "
        "languages, in percent; each row changes one setting of the default. Dev splits only.",
        "",
        "| setting | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | vs default |",
        "| --- |" + " ---: |" * (len(seeds) + 2),
    ]
    for name, values in rows.items():
        mean = statistics.fmean(values)
        lines.append(f"| {name} | " + " | ".join(f"{100 * v:.1f}" for v in values)
                     + f" | {100 * mean:.1f} | {100 * (mean - default_mean):+.1f} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    Q.log(f"wrote {out.with_suffix('.md')} in {seconds:.0f}s")


if __name__ == "__main__":
    main()
