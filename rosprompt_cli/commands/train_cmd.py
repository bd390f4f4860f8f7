"""`rosprompt train`: learn a soft prompt for a frozen backbone from a few labelled examples."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rosprompt_cli.backbone import load_backbone
from rosprompt_cli.commands import common
from rosprompt_cli.errors import RosPromptError
from rosprompt_cli.labelled import load_labelled
from rosprompt_cli.labels import GIVEN, resolve_label_set
from rosprompt_cli.lexicon import names_by_language, open_world_negatives
from rosprompt_cli.mlm import MlmOptions
from rosprompt_cli.scorers import check_choices, choose_verbalizer, refuse_mlm_options
from rosprompt_cli.training import ROSPROMPT_DEFAULTS, EpochLog, TrainConfig, train_prompt

HELP = (
    "Train a soft prompt on labelled INPUT (a table file, a datasets save_to_disk folder, or hf:NAME[:split]) "
    "and save it as a .safetensors prompt file. Only the prompt is trained; the backbone stays frozen."
)

_DEFAULTS = ROSPROMPT_DEFAULTS


def train(
    input: Annotated[str, typer.Argument(help="Labelled training data.", show_default=False)],
    out: Annotated[str, typer.Option("--out", "-o", help="Where to save the prompt (.safetensors).", show_default=False)],
    text_col: common.TextCol = "text",
    label_col: Annotated[str, typer.Option("--label-col", help="Column holding the gold label.")] = "label",
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
        str, typer.Option("--penalty", help="Robustness penalty: none, kl (to zero-shot), variance (across label languages), l2 (to init).")
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
    model: common.Model = None,
    device: common.Device = "auto",
    verbalizer: common.Verbalizer = "auto",
    mlm_template: common.MlmTemplate = None,
    neighbours: common.Neighbours = None,
    aggregate: common.Aggregate = None,
    word_pieces: common.WordPieces = None,
) -> None:
    if Path(out).exists() and not force:
        raise RosPromptError(f"{out}: prompt file exists; pass --force to overwrite it")
    if shots is not None and shots < 1:
        raise RosPromptError("--shots must be at least 1")
    given_mlm_options = common.mlm_options(mlm_template, neighbours, aggregate, word_pieces)
    check_choices(verbalizer, given_mlm_options)
    config = TrainConfig(
        prompt_length=prompt_len, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
        max_length=max_length, label_template=label_template, language_keep=language_keep,
        smoothing=smoothing, penalty=penalty, penalty_weight=penalty_weight,
        negative_max_similarity=negative_max_similarity, verbalizer=verbalizer,
        mlm=MlmOptions().with_overrides(**given_mlm_options),
    )
    data = load_labelled(input, text_col, label_col, None, fmt, split)
    if shots is not None:
        data = data.sample_per_class(shots, seed)
    dev_data = load_labelled(dev, text_col, label_col, None, None, None, ("validation", "dev", "test")) if dev else None
    label_set = resolve_label_set(None, labels_file, fallback=sorted(data.label_names()))
    backbone = load_backbone(model, device, dtype="float32")  # gradients through the frozen model in full precision
    chosen = choose_verbalizer(verbalizer, backbone)
    if chosen == "embed":
        refuse_mlm_options(given_mlm_options)
    common.info(
        f"training a {prompt_len}-vector prompt for {backbone.name} ({chosen} verbalizer) on {len(data)} examples, "
        f"{len(label_set)} labels"
    )

    def report(log: EpochLog) -> None:
        dev_part = f", dev loss {log.dev_loss:.4f}, dev acc {log.dev_accuracy:.3f}" if log.dev_loss is not None else ""
        common.info(f"epoch {log.epoch}/{epochs}: train loss {log.train_loss:.4f}{dev_part}")

    extra = names_by_language(label_set) if lexicon else None
    negative_topics = open_world_negatives(label_set, None if lexicon else {GIVEN}) if negatives else None
    prompt = train_prompt(backbone, data, label_set, config, dev_data, on_epoch=report,
                          extra_names=extra, negatives=negative_topics)
    prompt.save(out)
    common.info(f"saved {out} (epoch {prompt.meta.metrics['selected_epoch']} kept)")
