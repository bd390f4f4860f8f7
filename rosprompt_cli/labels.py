"""Label sets: the classes a user names, each with one or more names (e.g. in several languages)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from rosprompt_cli.errors import RosPromptError

# "|" joins labels in the multi-label output column, so it cannot appear inside a label.
_FORBIDDEN = "|"
# Label language assumed for names the user gave without one (label names are usually English).
GIVEN = "eng_Latn"


@dataclass(frozen=True)
class Label:
    name: str  # the value written to the output
    # How the verbalizer names the label: the name itself first, then synonyms and translations.
    verbalisations: tuple[str, ...]
    # The label language of each name (FLORES-200 code), e.g. from the lexicon; names beyond
    # this tuple were given by the user and count as GIVEN (English).
    languages: tuple[str, ...] = ()

    def language_of(self, index: int) -> str:
        return self.languages[index] if index < len(self.languages) else GIVEN


@dataclass(frozen=True)
class LabelSet:
    labels: tuple[Label, ...]
    source: str | None = field(default=None, compare=False)  # the label file it was read from

    def __post_init__(self) -> None:
        if not self.labels:
            raise RosPromptError("the label set is empty; give at least two labels")
        seen: set[str] = set()
        for label in self.labels:
            if not label.name.strip():
                raise RosPromptError("a label name is empty; remove the stray comma or blank entry")
            if _FORBIDDEN in label.name:
                raise RosPromptError(f"label {label.name!r}: the character '|' is not allowed in label names")
            if label.name in seen:
                raise RosPromptError(f"label {label.name!r} is given twice; each label must be unique")
            seen.add(label.name)
            if not label.verbalisations or any(not n.strip() for n in label.verbalisations):
                raise RosPromptError(f"label {label.name!r} has an empty name in its list of names")

    @property
    def names(self) -> list[str]:
        """The label names, in order: the values the output holds (not their verbalisations)."""
        return [label.name for label in self.labels]

    def require_choice(self, what: str) -> LabelSet:
        """This set, if it offers a choice: with one label, `what` would be decided before any text is read."""
        if len(self.labels) < 2:
            raise RosPromptError(
                f"only one label ({self.labels[0].name!r}): {what}; give at least two labels"
            )
        return self

    def __len__(self) -> int:
        return len(self.labels)

    def name_table(self) -> tuple[list[str], list[int], list[str]]:
        """Every name of every label, flat: (names, owning label index, label language)."""
        names, owner, languages = [], [], []
        for i, label in enumerate(self.labels):
            for j, name in enumerate(label.verbalisations):
                names.append(name)
                owner.append(i)
                languages.append(label.language_of(j))
        return names, owner, languages

    def with_names(self, by_language: dict[str, dict[str, list[str]]]) -> LabelSet:
        """Each label with more names, label -> language -> names, appended in that order with
        their languages; a name the label already has is not added again."""
        labels = []
        for label in self.labels:
            names = list(label.verbalisations)
            languages = [label.language_of(j) for j in range(len(names))]
            seen = set(names)
            for language, extra in by_language.get(label.name, {}).items():
                for name in extra:
                    if name not in seen:
                        seen.add(name)
                        names.append(name)
                        languages.append(language)
            labels.append(Label(label.name, tuple(names), tuple(languages)))
        return LabelSet(tuple(labels))

    def as_dict(self) -> dict[str, list[str]]:
        return {label.name: list(label.verbalisations) for label in self.labels}

    @classmethod
    def from_names(cls, names: list[str]) -> LabelSet:
        return cls(tuple(Label(n, (n,)) for n in names))

    @classmethod
    def from_mapping(cls, mapping: dict[str, list[str]]) -> LabelSet:
        labels = []
        for name, names in mapping.items():
            ordered = [name] + [n for n in names if n != name]
            labels.append(Label(name, tuple(dict.fromkeys(ordered))))
        return cls(tuple(labels))


def parse_label_arg(text: str) -> LabelSet:
    """`sports,politics` -> two labels; whitespace around names is ignored."""
    parts = [p.strip() for p in text.split(",")]
    if any(not p for p in parts):
        raise RosPromptError(f"--labels {text!r}: empty label name (check for doubled or trailing commas)")
    return LabelSet.from_names(parts)


def load_label_file(path: str | Path) -> LabelSet:
    """YAML or JSON: a mapping label -> list of names (or a single name), or a list of labels."""
    path = Path(path)
    if path.is_dir():
        raise RosPromptError(f"{path}: is a folder; give a YAML or JSON label file")
    if not path.is_file():
        raise RosPromptError(f"{path}: label file not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RosPromptError(f"{path}: byte {exc.start} is not UTF-8; save the label file as UTF-8") from exc
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text, object_pairs_hook=_refuse_repeated_keys)
        else:
            data = _load_yaml_text(text)
    except json.JSONDecodeError as exc:
        raise RosPromptError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON ({exc.msg})") from exc
    except RosPromptError as exc:
        raise RosPromptError(f"{path}: {exc}") from exc
    except Exception as exc:  # yaml.YAMLError carries a position in problem_mark
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise RosPromptError(f"{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from exc
    if isinstance(data, list):
        return replace(LabelSet.from_names([str(x).strip() for x in data]), source=str(path))
    if isinstance(data, dict):
        mapping: dict[str, list[str]] = {}
        for key, value in data.items():
            if value is None or value == "":  # `sports:` with no names
                value = []
            elif isinstance(value, str):
                value = [value]
            elif not isinstance(value, list):
                raise RosPromptError(f"{path}: label {key!r} must map to a list of names")
            name = str(key).strip()  # as --labels does: spaces around a name are not part of it
            if name in mapping:
                raise RosPromptError(f"{path}: label {name!r} is given twice (as {key!r} and another spelling with "
                                     f"spaces around it); each label must be unique")
            mapping[name] = [str(v).strip() for v in value]
        return replace(LabelSet.from_mapping(mapping), source=str(path))
    raise RosPromptError(f"{path}: expected a mapping of label -> names, or a list of labels")


def _refuse_repeated_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    keys = [key for key, _ in pairs]
    repeated = next((key for key in keys if keys.count(key) > 1), None)
    if repeated is not None:
        raise RosPromptError(f"label {repeated!r} is given twice; each label must be unique")
    return dict(pairs)


def _load_yaml_text(text: str) -> object:
    """YAML with every value read as the text written: `yes`, `no`, `on`, `off` and `1.0` stay
    label names instead of turning into booleans and numbers; a key given twice is an error (a
    YAML mapping would keep only the last)."""
    import yaml

    class TextLoader(yaml.BaseLoader):
        pass

    def mapping(loader: yaml.BaseLoader, node: yaml.MappingNode) -> dict:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"label {key!r} is given twice", key_node.start_mark)
            seen.add(key)
        return loader.construct_mapping(node)

    TextLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    return yaml.load(text, Loader=TextLoader)  # noqa: S506 - BaseLoader builds only strings, lists and dicts


def resolve_label_set(labels: str | None, labels_file: str | None, fallback: list[str] | None = None) -> LabelSet:
    """--labels and/or --labels-file; names from the file extend labels given on the command line."""
    from_file = load_label_file(labels_file) if labels_file else None
    if labels:
        chosen = parse_label_arg(labels)
        if from_file is None:
            return chosen
        extra = from_file.as_dict()
        return LabelSet.from_mapping({n: extra.get(n, [n]) for n in chosen.names})
    if from_file is not None:
        return from_file
    if fallback:
        return LabelSet.from_names(fallback)
    raise RosPromptError("no labels given; pass --labels a,b,c or --labels-file FILE")
