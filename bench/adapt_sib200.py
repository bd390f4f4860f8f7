"""Corpus adaptation (`--adapt`) on all SIB-200 dev rows: no prompt and the shipped prompt, each
without adaptation, centred on the whole corpus, and centred per language; overall, in and not
in XLM-R's languages, and per language family.

    python bench/adapt_sib200.py [--dtype bfloat16] [--out bench/results/adapt_sib200]

The text vectors of the 20,295 rows are computed once per prompt setting; each adaptation then
goes through `evaluation.adapted_report`, the code `eval --adapt` runs (English label names, the
lexicon default of the CLI). Writes OUT.md and OUT.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from provenance import source_commit  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SIB = REPO.parent / "shared" / "data" / "sib200"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtype", default="auto", help="scorer precision (bfloat16 is faster on CPUs that have it)")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "adapt_sib200"))
    args = parser.parse_args()
    if not SIB.is_dir():
        sys.exit(f"{SIB} not found: this bench needs ../shared/data/sib200")

    from rosprompt_cli import LabelledData, LabelSet, ScorerSpec, build_scorer, load_labelled
    from rosprompt_cli.adapt import AdaptOptions
    from rosprompt_cli.evaluation import adapted_report
    from rosprompt_cli.frames import text_vectors_in_order
    from rosprompt_cli.metrics import evaluate_predictions
    from rosprompt_cli.spec import label_set_for

    texts, labels, langs = [], [], []
    for path in sorted((SIB / "dev").glob("*.tsv")):
        part = load_labelled(str(path), "text", "category")
        texts += part.texts
        labels += part.labels
        langs += [path.stem] * len(part)
    data = LabelledData(texts, labels, langs, "SIB-200 dev")
    gold = LabelSet.from_names(sorted(set(labels)))
    table = {row.split("\t")[0]: row.split("\t") for row in (SIB / "languages.tsv").read_text(encoding="utf-8").splitlines()[1:]}

    results: dict[str, dict] = {}
    for setting, use_prompt in (("no prompt", False), ("shipped prompt", True)):
        scorer = build_scorer(ScorerSpec(use_prompt=use_prompt, dtype=args.dtype))
        scored, _ = label_set_for(scorer, gold, None)
        started = time.perf_counter()
        vectors = text_vectors_in_order(scorer, data.texts)
        print(f"{setting}: vectors in {time.perf_counter() - started:.0f}s", file=sys.stderr)
        plain = evaluate_predictions(data.labels, _plain(scorer, vectors, scored), scored.names, data.languages)
        results[f"{setting}"] = plain.as_dict()
        for name, adapt in (("--adapt", AdaptOptions()), ("--adapt-by lang", AdaptOptions(by="lang"))):
            report, _ = adapted_report(scorer, vectors, data, scored, adapt, data.languages)
            results[f"{setting}, {name}"] = report.as_dict()

    def share(report: dict, langs_in: list[str]) -> float:
        rows = [report["per_language"][lang] for lang in langs_in]
        return 100 * sum(r["accuracy"] * r["n"] for r in rows) / sum(r["n"] for r in rows)

    everyone = sorted(results["no prompt"]["per_language"])
    groups = {"all": everyone,
              "in XLM-R": [lang for lang in everyone if table[lang][4] == "yes"],
              "not in XLM-R": [lang for lang in everyone if table[lang][4] == "no"]}
    families: dict[str, list[str]] = defaultdict(list)
    for lang in everyone:
        families[table[lang][2]].append(lang)
    commit = source_commit()
    names = list(results)
    lines = [
        "# Corpus adaptation on all SIB-200 dev rows",
        "",
        f"`python bench/adapt_sib200.py --dtype {args.dtype}` at {commit}: 20,295 rows, 205 languages, 7 labels by "
        "their English names (and the lexicon's without a prompt, the CLI default); the shipped prompt is prompts/default.safetensors. Accuracy in %.",
        "",
        "| setting | " + " | ".join(groups) + " |",
        "| --- |" + " ---: |" * len(groups),
    ]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(f"{share(results[name], langs_in):.1f}" for langs_in in groups.values()) + " |")
    lines += ["", "Per language family:", "", "| family | languages | " + " | ".join(names) + " |",
              "| --- | ---: |" + " ---: |" * len(names)]
    for family, members in sorted(families.items()):
        lines.append(f"| {family} | {len(members)} | " + " | ".join(f"{share(results[n], members):.1f}" for n in names) + " |")
    out = Path(args.out)
    out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out.with_suffix(".json").write_text(json.dumps({"commit": commit, "dtype": args.dtype, "results": {
        n: {g: share(results[n], m) for g, m in groups.items()} for n in names}}, indent=2) + "\n", encoding="utf-8")
    print("\n".join(lines))


def _plain(scorer, vectors, scored) -> list[str]:
    """Predictions without adaptation, from the same vectors (what `eval` gives)."""
    logits = scorer.logits(vectors, scorer.label_vectors(scored).float())
    return [scored.names[j] for j in logits.argmax(-1).tolist()]


if __name__ == "__main__":
    main()
