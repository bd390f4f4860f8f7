"""Does a temperature that depends on the text beat one temperature? (issue 30)

One T leaves the languages XLM-R was trained on under-confident (ECE 0.083 there, 0.039 in the
others; bench/results/calibration.md). A text the model knows well is cut into fewer, longer
tokens, so the tokens per character of a text say, without knowing its language, how far it is
from what the model knows. Here T(x) = T0 * exp(a * z(x)), z the standardised log tokens per
character, is fitted by likelihood (a on a grid, T0 by calculus for each a) on half of the
languages and measured on the other half, against one T fitted on the same half.

    python bench/calibration_by_language.py [--out bench/results/calibration_by_language]

Uses bench/calibration.py's cached text vectors of the shipped prompt (run that first).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from calibration import SIB_LABELS, cache_name, gold_index, logits_of, sib_dev  # noqa: E402
from provenance import source_commit  # noqa: E402

from rosprompt_cli.calibration import expected_calibration_error, fit_temperature  # noqa: E402
from rosprompt_cli.labels import LabelSet  # noqa: E402
from rosprompt_cli.spec import ScorerSpec, build_scorer, label_set_for  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SLOPES = [round(0.05 * k, 2) for k in range(-20, 21)]


def per_row_nll(logits: np.ndarray, gold: np.ndarray, temperatures: np.ndarray) -> float:
    scaled = logits.astype(np.float64) / temperatures[:, None]
    top = scaled.max(axis=1)
    log_norm = top + np.log(np.exp(scaled - top[:, None]).sum(axis=1))
    return float(np.mean(log_norm - scaled[np.arange(len(gold)), gold]))


def fit_text_temperature(logits: np.ndarray, gold: np.ndarray, z: np.ndarray) -> tuple[float, float]:
    """(T0, a) minimising the likelihood of T0 * exp(a * z): a on a grid, T0 by golden section."""
    best = (math.inf, 1.0, 0.0)
    for a in SLOPES:
        shape = np.exp(a * z)
        # for a fixed shape, T0 is one temperature applied to logits / shape
        t0 = fit_temperature(logits / shape[:, None], gold)
        nll = per_row_nll(logits, gold, t0 * shape)
        if nll < best[0]:
            best = (nll, t0, a)
    return best[1], best[2]


def ece_rows(logits: np.ndarray, gold: np.ndarray, temperatures: np.ndarray) -> float:
    # ECE at per-row temperatures: scale the logits first, then T = 1
    return expected_calibration_error(logits / temperatures[:, None], gold)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "calibration_by_language"))
    parser.add_argument("--cache", default=str(REPO / ".bench-cache" / "calibration"))
    args = parser.parse_args()
    dev = sib_dev()
    texts = dev["text"].to_list()
    scorer = build_scorer(ScorerSpec())
    cached = Path(args.cache) / f"{cache_name('shipped prompt', scorer)}.npy"
    if not cached.exists():
        raise SystemExit(f"{cached}: run bench/calibration.py first")
    import torch

    vectors = torch.from_numpy(np.load(cached))
    scored, _ = label_set_for(scorer, LabelSet.from_names(SIB_LABELS), None)
    logits = logits_of(scorer, vectors, scored)
    gold = gold_index(dev["category"].to_list(), SIB_LABELS)
    tokens = np.array([len(ids) for ids in scorer.backbone.tokenizer(texts, add_special_tokens=False)["input_ids"]])
    chars = np.array([max(len(t), 1) for t in texts])
    feature = np.log(tokens / chars)
    in_xlmr = dev["in_xlmr"].fill_null("no").to_numpy() == "yes"
    halves = dev["lang"].rank("dense").to_numpy() % 2 == 0
    lines = ["# A temperature that depends on the text (issue 30)", "",
             f"Command: `python bench/calibration_by_language.py` at {source_commit()}; shipped prompt, all "
             f"{len(gold):,} SIB-200 dev rows, 7 labels. T(x) = T0 * exp(a * z), z the standardised log tokens per "
             "character of the text; fitted on half of the languages, measured on the other half (ECE, 10 bins).", "",
             "| fitted on | measured on | one T | ECE, one T: all / in XLM-R / not | T0, a | ECE, T(x): all / in XLM-R / not |",
             "| --- | --- | ---: | --- | ---: | --- |"]
    for name, fit_rows in (("even languages", halves), ("odd languages", ~halves)):
        test = ~fit_rows
        mean, std = feature[fit_rows].mean(), feature[fit_rows].std()
        z = (feature - mean) / std
        one = fit_temperature(logits[fit_rows], gold[fit_rows])
        t0, a = fit_text_temperature(logits[fit_rows], gold[fit_rows], z[fit_rows])
        cells_one, cells_text = [], []
        for rows in (test, test & in_xlmr, test & ~in_xlmr):
            cells_one.append(f"{ece_rows(logits[rows], gold[rows], np.full(rows.sum(), one)):.3f}")
            cells_text.append(f"{ece_rows(logits[rows], gold[rows], t0 * np.exp(a * z[rows])):.3f}")
        other = "odd languages" if name == "even languages" else "even languages"
        lines.append(f"| {name} | {other} | {one:.4f} | {' / '.join(cells_one)} | {t0:.4f}, {a:+.2f} | "
                     f"{' / '.join(cells_text)} |")
        print(lines[-1], flush=True)
    out = Path(args.out).with_suffix(".md")
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
