"""Labelled examples for `train` and `eval`: a table file, or a Hugging Face dataset."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from rosprompt_cli.formats import DELIMITED
from rosprompt_cli.errors import RosPromptError
from rosprompt_cli.readers import open_source, require_columns

HF_PREFIX = "hf:"


@dataclass
class LabelledData:
    texts: list[str]
    labels: list[str]
    languages: list[str] | None
    source: str

    def __len__(self) -> int:
        return len(self.texts)

    def label_names(self) -> list[str]:
        """Gold labels in order of first appearance."""
        return list(dict.fromkeys(self.labels))

    def sample_per_class(self, shots: int, seed: int) -> LabelledData:
        """`shots` examples of each class (all of a class that has fewer), reproducible by seed."""
        by_class: dict[str, list[int]] = defaultdict(list)
        for i, label in enumerate(self.labels):
            by_class[label].append(i)
        rng = random.Random(seed)
        chosen: list[int] = []
        for label in sorted(by_class):
            rows = by_class[label]
            chosen += rows if len(rows) <= shots else rng.sample(rows, shots)
        chosen.sort()
        return LabelledData(
            [self.texts[i] for i in chosen],
            [self.labels[i] for i in chosen],
            [self.languages[i] for i in chosen] if self.languages is not None else None,
            self.source,
        )


def _is_hf_dataset_dir(path: Path) -> bool:
    return path.is_dir() and (
        (path / "dataset_dict.json").exists() or (path / "dataset_info.json").exists() or (path / "state.json").exists()
    )


def _from_hf(spec: str, split: str | None, default_splits: tuple[str, ...]) -> tuple[pl.DataFrame, str]:
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    try:
        if spec.startswith(HF_PREFIX):
            name, _, split_in_spec = spec[len(HF_PREFIX) :].partition(":")
            ds = datasets.load_dataset(name, split=split or split_in_spec or None)
        else:
            ds = datasets.load_from_disk(spec)
    except Exception as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RosPromptError(f"{spec}: cannot load the dataset ({message})") from exc
    if isinstance(ds, (datasets.DatasetDict, dict)):
        wanted = split or next((s for s in default_splits if s in ds), None)
        if wanted is None and len(ds) == 1:
            wanted = next(iter(ds))
        if wanted not in ds:
            raise RosPromptError(f"{spec}: no split {wanted!r}; the dataset has {', '.join(ds)}; pass --split")
        ds = ds[wanted]
        spec = f"{spec}[{wanted}]"
    frame = ds.to_polars()
    # Class-label columns hold integers; turn them into their names.
    for column, feature in ds.features.items():
        if isinstance(feature, datasets.ClassLabel):
            mapping = dict(enumerate(feature.names))
            frame = frame.with_columns(pl.col(column).replace_strict(mapping, return_dtype=pl.String))
    return frame, spec


def load_labelled(
    spec: str,
    text_col: str,
    label_col: str,
    lang_col: str | None = None,
    fmt: str | None = None,
    split: str | None = None,
    default_splits: tuple[str, ...] = ("train",),
) -> LabelledData:
    if spec.startswith(HF_PREFIX) or _is_hf_dataset_dir(Path(spec)):
        frame, display = _from_hf(spec, split, default_splits)
        missing = [c for c in (text_col, label_col, lang_col) if c and c not in frame.columns]
        if missing:
            raise RosPromptError(
                f"{display}: no column {missing[0]!r} (the dataset has: {', '.join(frame.columns)}); "
                f"pass --text-col/--label-col/--lang-col"
            )
        header_lines = 0
    else:
        with open_source(spec, fmt) as source:
            wanted = {"--text-col": text_col, "--label-col": label_col}
            if lang_col:
                wanted["--lang-col"] = lang_col
            require_columns(source, wanted)
            frame = source.read_all()
            display = source.display
            header_lines = 1 if source.fmt in DELIMITED else 0
    texts = frame.get_column(text_col).cast(pl.String, strict=False).to_list()
    labels = frame.get_column(label_col).cast(pl.String, strict=False).to_list()
    for i, (text, label) in enumerate(zip(texts, labels)):
        where = f"{display}: row {i + 1}" + (f" (line {i + 1 + header_lines})" if header_lines else "")
        if text is None or not text.strip():
            raise RosPromptError(f"{where}: empty text in column {text_col!r}; fill it in or remove the row")
        if label is None or not label.strip():
            raise RosPromptError(f"{where}: empty label in column {label_col!r}; fill it in or remove the row")
    languages = frame.get_column(lang_col).cast(pl.String).fill_null("").to_list() if lang_col else None
    if not texts:
        raise RosPromptError(f"{display}: no rows")
    return LabelledData(texts, [label.strip() for label in labels], languages, display)
