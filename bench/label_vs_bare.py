"""`label` end to end against the bare forward pass, for whichever rosprompt_cli is imported.

It uses only APIs that older commits have too, so the same script gives a before/after ratio:

    git worktree add /tmp/before <commit>
    PYTHONPATH=/tmp/before python bench/label_vs_bare.py --lines 1500   # before
    python bench/label_vs_bare.py --lines 1500                          # after

Bare = the model alone over the corpus tokenised beforehand, sorted by token count, in batches
of --bare-batch-size with the prompt's positions included: the fastest way this machine can run
this model over these texts, whatever `label` does.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import build_corpus, label_names, write_jsonl  # noqa: E402

import rosprompt_cli  # noqa: E402
from rosprompt_cli.labels import LabelSet  # noqa: E402

try:  # since the structure refactor (one ScorerSpec, file_run.py, frames.py)
    from rosprompt_cli.file_run import FileRun, RunRequest  # noqa: E402
    from rosprompt_cli.frames import LabelOptions  # noqa: E402
    from rosprompt_cli.spec import ScorerSpec, build_scorer  # noqa: E402

    def load_scorer():
        return build_scorer(ScorerSpec(device="cpu"))
except ImportError:  # earlier commits
    from rosprompt_cli.label_run import LabelRun as FileRun, RunRequest  # noqa: E402
    from rosprompt_cli.labeling import LabelOptions  # noqa: E402

    try:
        from rosprompt_cli.scorers import build_scorer as build_old  # noqa: E402
    except ImportError:  # commits before the MLM verbalizer kept it in scoring.py
        from rosprompt_cli.scoring import build_scorer as build_old  # noqa: E402

    def load_scorer():
        return build_old(None, "cpu")[0]


@torch.inference_mode()
def bare_seconds(scorer, texts: list[str], batch_size: int) -> float:
    backbone, n = scorer.backbone, scorer.prompt_length
    limit = backbone.max_length - n
    ids = [backbone.tokenizer(backbone.text_prefix + t, truncation=True, max_length=limit)["input_ids"] for t in texts]
    ids.sort(key=len)
    filler = backbone.tokenizer.convert_tokens_to_ids("▁")
    pad = backbone.tokenizer.pad_token_id
    batches = []
    for start in range(0, len(ids), batch_size):
        group = ids[start : start + batch_size]
        width = max(map(len, group)) + n
        input_ids = torch.full((len(group), width), pad)
        mask = torch.zeros((len(group), width), dtype=torch.long)
        for row, seq in enumerate(group):
            full = seq[:1] + [filler] * n + seq[1:]
            input_ids[row, : len(full)] = torch.tensor(full)
            mask[row, : len(full)] = 1
        batches.append((input_ids, mask))
    started = time.perf_counter()
    for input_ids, mask in batches:
        backbone.model(input_ids=input_ids, attention_mask=mask)
    return time.perf_counter() - started


def label_seconds(scorer, corpus: Path, out: Path, batch_size: int | None) -> float:
    names = label_names(7)
    options = LabelOptions(batch_size=batch_size) if batch_size else LabelOptions()
    started = time.perf_counter()
    with FileRun(RunRequest(input=str(corpus), out=str(out), force=True), options, names) as run:
        run.prepare()
        run.execute(scorer, LabelSet.from_names(names))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1500)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--bare-batch-size", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=None, help="for label; default: the library's")
    args = parser.parse_args()
    rows = build_corpus(args.lines)
    texts = [r["text"] for r in rows]
    scorer = load_scorer()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = write_jsonl(rows, Path(tmp) / "corpus.jsonl")
        label_seconds(scorer, corpus, Path(tmp) / "warm.parquet", args.batch_size)
        labels, bares = [], []
        for _ in range(args.repeats):
            labels.append(label_seconds(scorer, corpus, Path(tmp) / "out.parquet", args.batch_size))
            bares.append(bare_seconds(scorer, texts, args.bare_batch_size))
    print(f"rosprompt_cli from {Path(rosprompt_cli.__file__).parent}")
    print(f"label {len(texts) / min(labels):.1f} texts/s, bare forward {len(texts) / min(bares):.1f} texts/s, "
          f"ratio {min(bares) / min(labels):.3f} (label runs {[round(x, 1) for x in labels]} s, "
          f"bare {[round(x, 1) for x in bares]} s)")


if __name__ == "__main__":
    main()
