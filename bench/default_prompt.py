"""Train the shipped default prompt (prompts/default.safetensors) for the bundled backbone.

    python bench/default_prompt.py --variant NAME [--seed S] --out prompts/default.safetensors

NAME is one of the training variants of bench/prompt_search.py (its table, in
bench/results/prompt_search.md, is where the shipped one was chosen, on SIB-200 dev only). With
one --seed the prompt of that seed is written; without, every seed of the variant is trained and,
for the variants that average, the mean of their prompt vectors is written. None of the training
data has any SIB-200 row, so the prompt's SIB-200 dev numbers measure transfer to new classes and
languages.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from prompt_search import VARIANTS, train_variant, training_data  # noqa: E402

from rosprompt_cli import load_backbone  # noqa: E402
from rosprompt_cli.prompt import SoftPrompt  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", required=True, choices=[v.name for v in VARIANTS])
    parser.add_argument("--seed", type=int, default=None, help="one seed of the variant (default: all of them)")
    parser.add_argument("--out", default="prompts/default.safetensors")
    args = parser.parse_args()

    variant = next(v for v in VARIANTS if v.name == args.variant)
    seeds = variant.seeds if args.seed is None else (args.seed,)
    backbone = load_backbone(None, "cpu")
    trained: list[SoftPrompt] = []
    for seed in seeds:
        trained.append(train_variant(backbone, variant, seed))
        print(f"seed {seed}: {trained[-1].meta.metrics}", file=sys.stderr)
    prompt = trained[0]
    if len(trained) > 1:
        prompt = SoftPrompt(torch.stack([p.vectors for p in trained]).mean(0), prompt.meta)
    prompt.meta.hyperparameters["seed"] = ",".join(map(str, seeds))
    source = training_data(variant.data, seeds[0])[0].source
    prompt.meta.metrics["training_data"] = f"{variant.name} ({source}), seeds {','.join(map(str, seeds))}" + (
        ", prompt vectors averaged" if len(trained) > 1 else "")
    prompt.save(args.out)
    print(f"saved {args.out}: {prompt.meta.metrics}", file=sys.stderr)


if __name__ == "__main__":
    main()
