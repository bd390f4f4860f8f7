"""The built-in multilingual label lexicon (rosprompt_cli/data/lexicon.yaml).

Common news topics, each named in 30+ languages (FLORES-200 codes), so a label can be
verbalised in many languages (RoSPrompt's multilingual labels) and open-world negative classes
can be drawn from topics outside a training set.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml

LEXICON_PATH = Path(__file__).resolve().parent / "data" / "lexicon.yaml"

Lexicon = dict[str, dict[str, list[str]]]  # label -> language -> names


@lru_cache(maxsize=1)
def load_lexicon() -> Lexicon:
    """Label -> language -> names, duplicates removed within each language's list.

    The same word may name a label in two languages (Hindi and Nepali both write विज्ञान);
    it stays under both, and training embeds it once (training.NamePool).
    """
    raw = yaml.safe_load(LEXICON_PATH.read_text(encoding="utf-8"))
    lexicon: Lexicon = {}
    for label, by_language in raw.items():
        entry = {str(lang): list(dict.fromkeys(str(n).strip() for n in names if str(n).strip()))
                 for lang, names in by_language.items()}
        lexicon[str(label)] = {lang: names for lang, names in entry.items() if names}
    return lexicon


def lookup(label: str) -> dict[str, list[str]] | None:
    """The lexicon entry of `label` (case-insensitive on the label key), or None."""
    lexicon = load_lexicon()
    return lexicon.get(label) or lexicon.get(label.strip().lower())
