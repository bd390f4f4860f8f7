"""Calibration of `score` (issue 30): temperature scaling fitted on SIB-200 dev, and what it does
on rows and label sets it never saw.

    python bench/calibration.py --out bench/results/calibration [--cache DIR]

Text vectors are computed once per setting (shipped prompt; no prompt with the lexicon's label
names) and kept in --cache, so the fits and tables are cheap to redo. In one run:

  fit         T fitted on all 20,295 SIB-200 dev rows (the tuning set), 7 labels by name; also
              fitted on half of the languages and measured on the other half (and the reverse),
              which shows whether rows it never saw do as well;
  ece         expected calibration error (10 bins) before and after, overall, per language
              family, in and out of XLM-R's languages, for the shipped prompt, the open-data prompt
              (prompts/open_data.safetensors, when there) and no prompt; with
              --adapt-by lang, at the plain T and at a T fitted for centred vectors (the --adapt
              temperature);
  transfer    the shipped prompt's T on label sets and texts it was not fitted on: SIB-200's
              14-class English set (train and dev rows, 1,104) and samples/news_multilingual.csv;
  min-score   share of rows kept and their accuracy at thresholds 0.1 ... 0.9 (calibrated);
  rows        how many labelled rows `eval --calibrate` needs: T fitted on n random rows of a
              set, ECE measured on the rest, 100 draws per n (median and 90th percentile).

Writes OUT.md, OUT.json, and with --write-defaults the fitted defaults into
rosprompt_cli/data/calibration.json and the shipped prompt's calibration into its file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import source_commit  # noqa: E402

from rosprompt_cli.adapt import AdaptOptions, estimate_centres  # noqa: E402
from rosprompt_cli.calibration import Calibration, expected_calibration_error, fit_temperature, softmax  # noqa: E402
from rosprompt_cli.frames import text_vectors_in_order  # noqa: E402
from rosprompt_cli.labels import LabelSet  # noqa: E402
from rosprompt_cli.prompt import SoftPrompt, shipped_prompt_path  # noqa: E402
from rosprompt_cli.spec import ScorerSpec, build_scorer, label_set_for  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SIB = REPO.parent / "shared" / "data" / "sib200"
SIB_LABELS = ["science/technology", "travel", "politics", "sports", "health", "entertainment", "geography"]
OPEN_DATA_PROMPT = REPO / "prompts" / "open_data.safetensors"
THRESHOLDS = [round(0.1 * k, 1) for k in range(1, 10)]
ROW_COUNTS = [10, 20, 30, 50, 100, 200, 400]


def sib_dev() -> pl.DataFrame:
    languages = pl.read_csv(SIB / "languages.tsv", separator="\t")
    frames = [pl.read_csv(p, separator="\t", quote_char=None).select("category", "text").with_columns(lang=pl.lit(p.stem))
              for p in sorted((SIB / "dev").glob("*.tsv"))]
    return pl.concat(frames).join(languages.select(pl.col("code").alias("lang"), "family", "in_xlmr"), on="lang",
                                  how="left")


def vectors(scorer, texts: list[str], cache: Path, name: str) -> torch.Tensor:
    path = cache / f"{name}.npy"
    if path.exists():
        return torch.from_numpy(np.load(path))
    found = text_vectors_in_order(scorer, texts)
    np.save(path, found.numpy())
    return found


def cache_name(setting: str, scorer) -> str:
    """A setting's vector cache, named by its prompt vectors too: a retrained prompt is recomputed."""
    name = setting.replace(" ", "_")
    if scorer.prompt is None:
        return name
    digest = hashlib.sha256(scorer.prompt.vectors.float().numpy().tobytes()).hexdigest()[:12]
    return f"{name}-{digest}"


def logits_of(scorer, text_vectors: torch.Tensor, label_set: LabelSet) -> np.ndarray:
    with torch.inference_mode():
        return scorer.logits(text_vectors, scorer.label_vectors(label_set)).float().numpy()


def gold_index(labels: list[str], names: list[str]) -> np.ndarray:
    index = {name: i for i, name in enumerate(names)}
    return np.array([index[label] for label in labels])


def ece_table(logits: np.ndarray, gold: np.ndarray, temperature: float, groups: pl.Series | None = None) -> dict:
    out = {"all": {"rows": len(gold), "before": expected_calibration_error(logits, gold),
                   "after": expected_calibration_error(logits, gold, temperature),
                   "accuracy": float((logits.argmax(1) == gold).mean())}}
    if groups is not None:
        values = groups.to_numpy()
        for group in sorted(set(values.tolist())):
            rows = values == group
            out[str(group)] = {"rows": int(rows.sum()), "before": expected_calibration_error(logits[rows], gold[rows]),
                               "after": expected_calibration_error(logits[rows], gold[rows], temperature),
                               "accuracy": float((logits[rows].argmax(1) == gold[rows]).mean())}
    return out


def coverage(logits: np.ndarray, gold: np.ndarray, temperature: float) -> list[dict]:
    probs = softmax(logits, temperature)
    top, right = probs.max(1), probs.argmax(1) == gold
    rows = []
    for threshold in THRESHOLDS:
        kept = top >= threshold
        rows.append({"threshold": threshold, "kept": float(kept.mean()),
                     "accuracy": float(right[kept].mean()) if kept.any() else None})
    return rows


def rows_needed(logits: np.ndarray, gold: np.ndarray, draws: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for n in ROW_COUNTS:
        if n >= len(gold):
            continue
        eces, temps = [], []
        for _ in range(draws):
            chosen = rng.choice(len(gold), size=n, replace=False)
            rest = np.setdiff1d(np.arange(len(gold)), chosen)
            t = fit_temperature(logits[chosen], gold[chosen])
            temps.append(t)
            eces.append(expected_calibration_error(logits[rest], gold[rest], t))
        out.append({"rows": n, "ece_median": float(np.median(eces)), "ece_p90": float(np.percentile(eces, 90)),
                    "temperature_p10": float(np.percentile(temps, 10)), "temperature_p90": float(np.percentile(temps, 90))})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "calibration"))
    parser.add_argument("--cache", default=str(REPO / ".bench-cache" / "calibration"))
    parser.add_argument("--draws", type=int, default=100)
    parser.add_argument("--write-defaults", action="store_true")
    args = parser.parse_args()
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    dev = sib_dev()
    texts, labels = dev["text"].to_list(), dev["category"].to_list()
    sib_set = LabelSet.from_names(SIB_LABELS)
    gold = gold_index(labels, SIB_LABELS)
    result: dict = {"command": "python bench/calibration.py " + " ".join(sys.argv[1:]), "commit": source_commit(),
                    "rows": len(texts), "settings": {}}
    halves = dev["lang"].rank("dense").to_numpy() % 2 == 0  # every other language
    settings = [("shipped prompt", ScorerSpec()), ("no prompt", ScorerSpec(use_prompt=False))]
    if OPEN_DATA_PROMPT.exists():
        settings.insert(1, ("open-data prompt", ScorerSpec(prompt=str(OPEN_DATA_PROMPT))))
    for setting, spec in settings:
        scorer = build_scorer(spec)
        scored, _ = label_set_for(scorer, sib_set, None)
        found = vectors(scorer, texts, cache, cache_name(setting, scorer))
        logits = logits_of(scorer, found, scored)
        temperature = fit_temperature(logits, gold)
        fold = {}
        for name, fit_rows in (("fit on even languages, measured on odd", halves),
                               ("fit on odd languages, measured on even", ~halves)):
            t = fit_temperature(logits[fit_rows], gold[fit_rows])
            fold[name] = {"temperature": t, "ece": expected_calibration_error(logits[~fit_rows], gold[~fit_rows], t)}
        entry = {"temperature": temperature, "folds": fold,
                 "ece": ece_table(logits, gold, temperature),
                 "by_family": ece_table(logits, gold, temperature, dev["family"].fill_null("unknown")),
                 "by_xlmr": ece_table(logits, gold, temperature, dev["in_xlmr"].fill_null("no")),
                 "coverage": coverage(logits, gold, temperature)}
        centres = estimate_centres(dev["lang"].to_list(), AdaptOptions(by="lang"), lambda rows: found[rows].numpy())
        centred = centres.centre(found, dev["lang"].to_list())
        adapted = logits_of(scorer, centred, scored)
        adapted_t = fit_temperature(adapted, gold)
        entry["adapt_by_lang"] = {"same_temperature": ece_table(adapted, gold, temperature),
                                  "own_temperature": adapted_t, "own": ece_table(adapted, gold, adapted_t),
                                  "coverage": coverage(adapted, gold, adapted_t)}
        if setting == "shipped prompt":
            transfer = {}
            eng14 = pl.concat([pl.read_csv(SIB / "eng_14" / f"{split}.tsv", separator="\t", quote_char=None)
                               for split in ("train", "dev")])
            names14 = (SIB / "eng_14" / "labels.txt").read_text(encoding="utf-8").split()
            l14 = logits_of(scorer, text_vectors_in_order(scorer, eng14["text"].to_list()), LabelSet.from_names(names14))
            g14 = gold_index(eng14["category"].to_list(), names14)
            transfer["SIB-200 eng_14 (train+dev, 14 labels)"] = ece_table(l14, g14, temperature)["all"] | {
                "own_temperature": fit_temperature(l14, g14), "rows_needed": rows_needed(l14, g14, args.draws)}
            samples = pl.read_csv(REPO / "samples" / "news_multilingual.csv")
            ls = logits_of(scorer, text_vectors_in_order(scorer, samples["text"].to_list()), sib_set)
            gs = gold_index(samples["category"].to_list(), SIB_LABELS)
            transfer["samples/news_multilingual.csv (7 labels)"] = ece_table(ls, gs, temperature)["all"] | {
                "own_temperature": fit_temperature(ls, gs), "rows_needed": rows_needed(ls, gs, args.draws)}
            entry["transfer"] = transfer
            entry["rows_needed_sib_dev"] = rows_needed(logits, gold, args.draws)
        result["settings"][setting] = entry
        result["backbone_hash"] = scorer.backbone.content_hash
        print(setting, json.dumps({k: entry[k] for k in ("temperature", "folds", "ece")}, indent=1), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(report(result))
    print(report(result))
    if args.write_defaults:
        write_defaults(result)


def write_defaults(result: dict) -> None:
    path = REPO / "rosprompt_cli" / "data" / "calibration.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    entries = {}
    for setting, key in (("shipped prompt", "prompt"), ("no prompt", "no prompt")):
        entry = result["settings"][setting]
        entries[key] = {"temperature": round(entry["temperature"], 4),
                        "fitted_on": f"SIB-200 dev, {'shipped prompt' if key == 'prompt' else 'no prompt'}",
                        "rows": result["rows"], "ece_before": round(entry["ece"]["all"]["before"], 4),
                        "ece_after": round(entry["ece"]["all"]["after"], 4),
                        "adapted_temperature": round(entry["adapt_by_lang"]["own_temperature"], 4)}
    data[result["backbone_hash"]] = {"embed": entries}
    path.write_text(json.dumps(data, indent=2) + "\n")
    # the shipped prompts carry their own, as every prompt train writes does
    for setting, path in (("shipped prompt", shipped_prompt_path()), ("open-data prompt", OPEN_DATA_PROMPT)):
        if setting not in result["settings"]:
            continue
        entry = result["settings"][setting]
        stored = Calibration(round(entry["temperature"], 4), f"SIB-200 dev, {result['rows']:,} rows, 7 labels",
                             result["rows"], round(entry["ece"]["all"]["before"], 4),
                             round(entry["ece"]["all"]["after"], 4),
                             round(entry["adapt_by_lang"]["own_temperature"], 4))
        prompt = SoftPrompt.load(path)
        SoftPrompt(prompt.vectors, replace(prompt.meta, calibration=stored.as_dict())).save(path)


def coverage_table(title: str, rows: list[dict]) -> list[str]:
    """Markdown lines: what each --min-score keeps, and a blank line after."""
    lines = [title, "", "| T | rows kept | accuracy of the kept rows |", "| ---: | ---: | ---: |"]
    for row in rows:
        acc = "-" if row["accuracy"] is None else f"{row['accuracy']:.3f}"
        lines.append(f"| {row['threshold']:.1f} | {row['kept']:.1%} | {acc} |")
    return lines + [""]


def report(result: dict) -> str:
    lines = ["# Calibration of `score` (temperature scaling)", "",
             f"Command: `{result['command']}` at {result['commit']}; all {result['rows']:,} SIB-200 dev rows, 7 labels "
             "by name; ECE: expected calibration error of the predicted label's probability, 10 bins.", ""]
    for setting, entry in result["settings"].items():
        e = entry["ece"]["all"]
        lines += [f"## {setting}", "",
                  f"T fitted on all dev rows: {entry['temperature']:.4f}. ECE {e['before']:.3f} -> **{e['after']:.3f}**, "
                  f"accuracy {e['accuracy']:.4f} (unchanged: T keeps each row's order of labels).", ""]
        for name, fold in entry["folds"].items():
            lines.append(f"- {name}: T {fold['temperature']:.4f}, ECE {fold['ece']:.3f}")
        a = entry["adapt_by_lang"]
        lines += [f"- `--adapt-by lang` (accuracy {a['own']['all']['accuracy']:.4f}): ECE "
                  f"{a['same_temperature']['all']['before']:.3f} at T=1, {a['same_temperature']['all']['after']:.3f} "
                  f"with the plain T, **{a['own']['all']['after']:.3f}** with its own T {a['own_temperature']:.4f} "
                  "(stored as the --adapt temperature)", ""]
        lines += ["| group | rows | accuracy | ECE before | ECE after |", "| --- | ---: | ---: | ---: | ---: |"]
        for table in ("by_xlmr", "by_family"):
            for group, g in entry[table].items():
                if group == "all":
                    continue
                label = ("in XLM-R: " + group) if table == "by_xlmr" else group
                lines.append(f"| {label} | {g['rows']:,} | {g['accuracy']:.3f} | {g['before']:.3f} | {g['after']:.3f} |")
        lines += [""] + coverage_table("Threshold on the calibrated score (`label --min-score T`):", entry["coverage"])
        lines += coverage_table("With `--adapt-by lang` and its own T:", a["coverage"])
        if "transfer" in entry:
            lines += ["Transfer of the shipped prompt's T to label sets and texts it was not fitted on:", "",
                      "| set | rows | accuracy | ECE before | ECE after | its own T |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
            for name, t in entry["transfer"].items():
                lines.append(f"| {name} | {t['rows']:,} | {t['accuracy']:.3f} | {t['before']:.3f} | {t['after']:.3f} | "
                             f"{t['own_temperature']:.4f} |")
            lines += ["", "Rows `eval --calibrate` needs: T fitted on n random rows, ECE on the other rows "
                      "(median / 90th percentile over the draws):", "",
                      "| n | " + " | ".join(["SIB-200 dev"] + list(entry["transfer"])) + " |",
                      "| ---: | " + " | ".join("---:" for _ in range(1 + len(entry["transfer"]))) + " |"]
            sets = [entry["rows_needed_sib_dev"]] + [t["rows_needed"] for t in entry["transfer"].values()]
            for n in ROW_COUNTS:
                cells = []
                for found in sets:
                    row = next((r for r in found if r["rows"] == n), None)
                    cells.append("-" if row is None else f"{row['ece_median']:.3f} / {row['ece_p90']:.3f}")
                lines.append(f"| {n} | " + " | ".join(cells) + " |")
            lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
