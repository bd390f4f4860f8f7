"""The built-in multilingual label lexicon (rosprompt_cli/data/lexicon.yaml).

Common news topics, each named in 30+ languages (FLORES-200 codes), so a label can be
verbalised in many languages (RoSPrompt's multilingual labels) and open-world negative classes
can be drawn from topics outside a training set.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml

from rosprompt_cli.labels import LabelSet

LEXICON_PATH = Path(__file__).resolve().parent / "data" / "lexicon.yaml"

Lexicon = dict[str, dict[str, list[str]]]  # label -> language -> names


@lru_cache(maxsize=1)
def load_lexicon() -> Lexicon:
    """Label -> language -> names, duplicates removed within each language's list.

    The same word may name a label in two languages (Hindi and Nepali both write विज्ञान);
    it stays under both, and training embeds it once (training.NamePool).
    """
    # libyaml's loader where PyYAML has it: the same data, parsed in 0.03 s instead of 0.12 s of
    # every start of a run that uses the lexicon (train, and label or eval without a prompt)
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    raw = yaml.load(LEXICON_PATH.read_text(encoding="utf-8"), Loader=loader)  # noqa: S506 - a safe loader
    lexicon: Lexicon = {}
    for label, by_language in raw.items():
        entry = {str(lang): list(dict.fromkeys(str(n).strip() for n in names if str(n).strip()))
                 for lang, names in by_language.items()}
        lexicon[str(label)] = {lang: names for lang, names in entry.items() if names}
    return lexicon


# Common short forms a user (or a dataset such as BBC News) uses for a lexicon topic.
ALIASES = {
    "tech": "technology",
    "sport": "sports",
    "sci/tech": "science/technology",
    "scitech": "science/technology",
    "world": "diplomacy",
    "movies": "film",
    "disaster": "disasters",
    "religions": "religion",
}


def lookup(label: str) -> dict[str, list[str]] | None:
    """The lexicon entry of `label` (case-insensitive on the key, common short forms such as
    "tech" included), or None."""
    lexicon = load_lexicon()
    key = label.strip().lower()
    return lexicon.get(label) or lexicon.get(key) or lexicon.get(ALIASES.get(key, ""))


def names_by_language(label_set: LabelSet) -> dict[str, dict[str, list[str]]]:
    """Lexicon names of every label of the set that the lexicon knows: label -> language -> names."""
    found = {}
    for label in label_set.labels:
        entry = lookup(label.name)
        if entry is not None:
            found[label.name] = entry
    return found


def expand(label_set: LabelSet) -> LabelSet:
    """Each label verbalised by its own names plus its lexicon names in every language; a label
    the lexicon does not know keeps just its own names."""
    return label_set.with_names(names_by_language(label_set))


def open_world_negatives(
    exclude: LabelSet | list[str], languages: set[str] | None = None
) -> dict[str, dict[str, list[str]]]:
    """Lexicon topics to use as never-target classes in training: every topic except the labels
    in `exclude` (and the topics those labels are aliases of); only their names in `languages`
    when given."""
    names = exclude.names if isinstance(exclude, LabelSet) else list(exclude)
    skip = set()
    for name in names:
        key = name.strip().lower()
        skip.update({name, key, ALIASES.get(key, key)})
    chosen = {}
    for topic, entry in load_lexicon().items():
        if topic in skip:
            continue
        kept = {lang: n for lang, n in entry.items() if languages is None or lang in languages}
        if kept:
            chosen[topic] = kept
    return chosen
