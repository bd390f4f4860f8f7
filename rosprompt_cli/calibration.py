"""Calibrated scores: `score` as a probability a user can put a threshold on.

A verbalizer's logits (for the embedding verbalizer: cosine / 0.05) give a softmax that is far
too modest: on SIB-200 dev the shipped prompt's predicted label scored below 0.6 on every row
while rows scored 0.4-0.6 were right 94-100% of the time. Temperature scaling divides the logits
by one number T fitted on labelled rows (the T that minimises their negative log-likelihood)
before the softmax: each row's ranking of the labels, and so its label, is unchanged, only how
sure the score says it is. One T per prompt (and one for running without a prompt) transfers
across label sets and datasets for softmax-over-similarity classifiers; bench/calibration.py
measures how well it does here.

A prompt file stores its calibration (`PromptMeta.calibration`); `train` fits one on `--dev`
(else the training rows), `eval --calibrate` on a user's own labelled sample. A prompt file
without one, and a run without a prompt, take DEFAULTS (data/calibration.json: fitted on
SIB-200 dev by bench/calibration.py), or none (T = 1) for a backbone no default was fitted for.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from importlib import resources

import numpy as np

from rosprompt_cli.errors import RosPromptError

# eval --calibrate needs at least this many labelled rows (bench/results/calibration.md: with
# fewer, the fitted T's error on unseen rows spreads too wide).
MIN_ROWS = 50
_SEARCH = (-4.0, 4.0)  # log(T) between about 0.02 and 55


@dataclass(frozen=True)
class Calibration:
    """Divide the logits by `temperature` before the softmax. `adapted_temperature`: the T for
    logits of text vectors centred by --adapt, which spread wider (None: use `temperature`).
    `fitted_on`: what it was fitted on, for status lines ("" for none: the raw softmax); `rows`
    and the ECE before and after, as measured on those rows."""

    temperature: float = 1.0
    fitted_on: str = ""
    rows: int = 0
    ece_before: float | None = None
    ece_after: float | None = None
    adapted_temperature: float | None = None

    def __post_init__(self) -> None:
        for value in (self.temperature, self.adapted_temperature):
            if value is not None and not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
                raise ValueError(f"calibration temperature must be a positive number, not {value}")

    def temperature_for(self, centred: bool) -> float:
        return self.adapted_temperature if centred and self.adapted_temperature is not None else self.temperature

    @property
    def note(self) -> str:
        if not self.fitted_on:
            return "scores not calibrated (no calibration for this model: eval --calibrate fits one)"
        adapted = "" if self.adapted_temperature is None else f", with --adapt T={self.adapted_temperature:.3f}"
        return f"scores calibrated ({self.fitted_on}, T={self.temperature:.3f}{adapted})"

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Calibration:
        return cls(**{key: data[key] for key in cls.__dataclass_fields__ if key in data})


NONE = Calibration()


def _defaults() -> dict:
    text = resources.files("rosprompt_cli").joinpath("data/calibration.json").read_text(encoding="utf-8")
    return json.loads(text)


def default_calibration(backbone_hash: str, verbalizer: str, with_prompt: bool) -> Calibration:
    """The calibration of a run without a prompt, or with a prompt file that stores none, on this
    backbone and verbalizer (data/calibration.json); NONE when none was fitted for them."""
    entry = _defaults().get(backbone_hash, {}).get(verbalizer, {}).get("prompt" if with_prompt else "no prompt")
    return NONE if entry is None else Calibration.from_dict(entry)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    scaled = logits.astype(np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)


def negative_log_likelihood(logits: np.ndarray, gold: np.ndarray, temperature: float) -> float:
    scaled = logits.astype(np.float64) / temperature
    top = scaled.max(axis=1)
    log_norm = top + np.log(np.exp(scaled - top[:, None]).sum(axis=1))
    return float(np.mean(log_norm - scaled[np.arange(len(gold)), gold]))


def fit_temperature(logits: np.ndarray, gold: np.ndarray) -> float:
    """The T that minimises the mean negative log-likelihood of `gold` (label indices) under
    softmax(logits / T): a golden-section search on log T (the likelihood has one minimum in 1/T)."""
    if len(gold) == 0:
        raise ValueError("no rows to fit a temperature on")
    low, high = _SEARCH
    ratio = (math.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = (negative_log_likelihood(logits, gold, math.exp(x)) for x in (a, b))
    for _ in range(80):
        if fa < fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = negative_log_likelihood(logits, gold, math.exp(a))
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = negative_log_likelihood(logits, gold, math.exp(b))
    return math.exp((low + high) / 2)


def expected_calibration_error(logits: np.ndarray, gold: np.ndarray, temperature: float = 1.0) -> float:
    """ECE of the predicted label's probability (10 equal-width bins, as metrics.calibration)."""
    from rosprompt_cli.metrics import calibration

    probs = softmax(logits, temperature)
    predicted = probs.argmax(axis=1)
    return calibration((predicted == gold).tolist(), probs.max(axis=1).tolist()).ece


def check_rows_to_fit(rows: int, source: str) -> None:
    if rows < MIN_ROWS:
        raise RosPromptError(
            f"{source}: --calibrate needs at least {MIN_ROWS} labelled rows to fit a calibration that holds on "
            f"other rows (bench/results/calibration.md); it has {rows}"
        )


def fit(logits: np.ndarray, gold: np.ndarray, fitted_on: str, min_rows: int = MIN_ROWS) -> Calibration:
    """A calibration fitted on labelled rows: `logits` [N, L], `gold` [N] label indices."""
    if len(gold) < min_rows:
        check_rows_to_fit(len(gold), fitted_on)
    temperature = fit_temperature(logits, gold)
    return Calibration(temperature, fitted_on, int(len(gold)), expected_calibration_error(logits, gold),
                       expected_calibration_error(logits, gold, temperature))
