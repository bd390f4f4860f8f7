"""`rosprompt train`: learn a soft prompt for a frozen backbone from a few labelled examples."""

from __future__ import annotations

from typing import Annotated

import typer

from rosprompt_cli.commands import common
from rosprompt_cli.labels import load_label_file
from rosprompt_cli.training_config import ROSPROMPT_DEFAULTS, TrainConfig, TrainJob

_JOB_DEFAULTS = common.field_defaults(TrainJob)

HELP = (
    "Train a soft prompt on labelled INPUT (a table file, a datasets save_to_disk folder, or hf:NAME[:split]) "
    "and save it as a .safetensors prompt file. Only the prompt is trained; the backbone stays frozen."
)

_DEFAULTS = ROSPROMPT_DEFAULTS


@common.with_scorer_options(common.TRAINING_SCORER_OPTIONS)
def train(
    input: Annotated[str, typer.Argument(help="Labelled training data.", show_default=False)],
    out: Annotated[str, typer.Option("--out", "-o", help="Where to save the prompt (.safetensors).", show_default=False)],
    text_col: common.TextCol = _JOB_DEFAULTS["text_col"],
    label_col: Annotated[str, typer.Option("--label-col", help="Column holding the gold label.")] = _JOB_DEFAULTS["label_col"],
    labels_file: common.LabelsFile = None,
    shots: Annotated[
        int | None, typer.Option("--shots", help="Examples per class, sampled with --seed. Default: all rows.", show_default=False)
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed for sampling, shuffling and initialisation.")] = _DEFAULTS.seed,
    dev: Annotated[
        str | None, typer.Option("--dev", help="Labelled dev data; the epoch with the lowest dev loss is kept. Default: none, the last epoch is kept.", show_default=False)
    ] = None,
    epochs: Annotated[int, typer.Option("--epochs", help="Passes over the training examples.")] = _DEFAULTS.epochs,
    lr: Annotated[float, typer.Option("--lr", help="AdamW learning rate for the prompt vectors.")] = _DEFAULTS.lr,
    prompt_len: Annotated[int, typer.Option("--prompt-len", help="Number of soft prompt vectors.")] = _DEFAULTS.prompt_length,
    batch_size: common.BatchSize = _DEFAULTS.batch_size,
    max_length: Annotated[int, typer.Option("--max-length", help="Truncate training texts to this many tokens.")] = _DEFAULTS.max_length,
    label_template: Annotated[
        str, typer.Option("--label-template", help="How a label name is phrased before it is embedded.")
    ] = _DEFAULTS.label_template,
    language_keep: Annotated[
        float, typer.Option("--language-keep", help="Label-language dropout: fraction of label languages kept per step (1 = off).")
    ] = _DEFAULTS.language_keep,
    smoothing: Annotated[
        float, typer.Option("--smoothing", help="Contrastive label smoothing ε, spread by label similarity (0 = off).")
    ] = _DEFAULTS.smoothing,
    penalty: Annotated[
        str, typer.Option("--penalty", help="Robustness penalty: none, kl (to zero-shot), variance (across label languages), l2 (to init), or several joined by + (kl+l2), each weighted by --penalty-weight.")
    ] = _DEFAULTS.penalty,
    penalty_weight: Annotated[float, typer.Option("--penalty-weight", help="Weight λ of the penalty.")] = _DEFAULTS.penalty_weight,
    lexicon: Annotated[
        bool,
        typer.Option("--lexicon/--no-lexicon", help="Multilingual labels: also name each training label the built-in lexicon knows in its ~40 languages."),
    ] = True,
    negatives: Annotated[
        bool,
        typer.Option("--negatives/--no-negatives", help="Open-world negatives: lexicon topics outside the training labels join the softmax as classes that are never the answer (off by default: it hurt on SIB-200 dev)."),
    ] = False,
    negative_max_similarity: Annotated[
        float, typer.Option("--negative-max-similarity", help="Leave out negatives this close (cosine) to a training label: near-synonyms, not contrasts.")
    ] = _DEFAULTS.negative_max_similarity,
    fmt: common.Format = None,
    split: common.Split = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing prompt file.")] = False,
    scorer_options: common.ScorerOptions = common.ScorerOptions(),  # --model, --device, --verbalizer, MLM (common.py)
    progress_every: common.ProgressEvery = None,
) -> None:
    mlm = scorer_options.mlm()
    config = TrainConfig(
        prompt_length=prompt_len, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
        max_length=max_length, label_template=label_template, language_keep=language_keep,
        smoothing=smoothing, penalty=penalty, penalty_weight=penalty_weight,
        negative_max_similarity=negative_max_similarity, verbalizer=scorer_options.verbalizer,
    )
    job = TrainJob(
        input=input, out=out, config=config, text_col=text_col, label_col=label_col,
        labels=load_label_file(labels_file) if labels_file else None, shots=shots, dev=dev, fmt=fmt, split=split,
        force=force, model=scorer_options.model, device=scorer_options.device, lexicon=lexicon, negatives=negatives, mlm=mlm,
    )
    from rosprompt_cli.training import run_train  # torch: only once the job is made and checked

    run_train(job, common.Renderer(progress_every))
