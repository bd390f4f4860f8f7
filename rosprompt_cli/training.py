"""Training a soft prompt for a frozen backbone (only the prompt vectors receive gradients).

`train_prompt` runs three phases, each a function of its own:
1. `prepare`: check the labels, build the label-name pool and the verbalizer's training head,
   leave out open-world negatives too close to a training label, tokenise, build the penalties;
2. `fit`: the epoch loop (AdamW with warm-up and linear decay; loss = soft cross-entropy on
   contrastively smoothed targets + λ · each penalty), keeping the epoch with the lowest dev loss;
3. `package`: the kept vectors and everything a prompt file records.
The loss terms are in objective.py, the penalties in penalties.py, the verbalizers' heads in
verbalizers/.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from rosprompt_cli.backbone import Backbone, load_backbone
from rosprompt_cli.errors import RosPromptError
from rosprompt_cli.events import OnEvent, RowsDone, RowsFinished, RowsStarted, ignore, info
from rosprompt_cli.examples import LabelledData, load_labelled
from rosprompt_cli.labels import GIVEN, LabelSet
from rosprompt_cli.lexicon import names_by_language, open_world_negatives
from rosprompt_cli.objective import language_dropout_mask, smoothed_targets, soft_cross_entropy
from rosprompt_cli.penalties import Penalty, PenaltyContext, Step, build_penalties
from rosprompt_cli.training_config import DEV_SPLITS, TrainConfig, TrainJob
from rosprompt_cli.prompt import PromptMeta, SoftPrompt
from rosprompt_cli.verbalizers import (
    check_verbalizer_options,
    choose_verbalizer,
    prompt_fields,
    training_head,
)
from rosprompt_cli.verbalizers.base import NamePool, TrainingHead
from rosprompt_cli.verbalizers.label_vectors import class_vectors
from rosprompt_cli.verbalizers.options import MlmOptions

# Label names keyed by language code, per label: {"sports": {"eng_Latn": ["sports"], ...}}.
NamesByLanguage = dict[str, dict[str, list[str]]]


@dataclass
class EpochLog:
    epoch: int
    train_loss: float
    dev_loss: float | None
    dev_accuracy: float | None


def initial_prompt(backbone: Backbone, config: TrainConfig) -> torch.Tensor:
    """The init text's token embeddings, repeated or trimmed to the prompt length."""
    ids = backbone.tokenizer(config.init_text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise RosPromptError("--init-text produced no tokens")
    reps = math.ceil(config.prompt_length / len(ids))
    ids = (ids * reps)[: config.prompt_length]
    with torch.no_grad():
        return backbone.word_embeddings(torch.tensor(ids, device=backbone.device)).detach().float().clone()


def _trim(ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    width = int(mask.sum(1).max().item())
    return ids[:, :width], mask[:, :width]


def drop_close_negatives(
    pool: NamePool, name_vectors: torch.Tensor, n_train: int, groups: torch.Tensor | None, limit: float
) -> tuple[NamePool, list[int]]:
    """Leave out the negative classes within `limit` cosine of a training class; returns the
    pool left and the rows of the old pool it keeps.

    Closeness is measured between class vectors centred on the mean of all classes: raw sentence
    embeddings of label names are all alike (cosine ~0.95 for unrelated topics), and centring
    leaves what tells the topics apart (travel-tourism ~0.7, travel-sports ~0).
    """
    owner = torch.tensor(pool.owner, device=name_vectors.device)
    n_classes = pool.n_classes
    vectors = class_vectors(name_vectors, owner, n_classes, groups=groups)
    vectors = F.normalize(vectors - vectors.mean(0, keepdim=True), dim=-1)
    closeness = (vectors[n_train:] @ vectors[:n_train].T).max(1).values
    kept = [n_train + k for k in range(n_classes - n_train) if closeness[k] <= limit]
    new_class = {c: c for c in range(n_train)} | {c: n_train + i for i, c in enumerate(kept)}
    rows = [i for i, c in enumerate(pool.owner) if c in new_class]
    return pool.subset(rows, new_class), rows


def _features(head: TrainingHead, encoded: tuple[torch.Tensor, torch.Tensor], prompt: torch.Tensor | None,
              batch_size: int = 64) -> torch.Tensor:
    """Features of pre-tokenised texts, batch by batch, without gradients."""
    ids, mask = encoded
    with torch.inference_mode():
        features = torch.cat([
            head.features(*_trim(ids[i : i + batch_size], mask[i : i + batch_size]), prompt)
            for i in range(0, ids.shape[0], batch_size)
        ])
    return features.clone()  # clone: usable outside inference mode


@dataclass
class TrainingSetup:
    """What `prepare` builds and `fit` trains with."""

    config: TrainConfig
    verbalizer: str
    head: TrainingHead
    pool: NamePool  # training classes first, then the open-world negatives kept
    n_train: int  # training classes
    similarity: torch.Tensor  # [C, C] class-to-class similarity, for label smoothing
    encoded: tuple[torch.Tensor, torch.Tensor]  # the training texts' ids and mask
    targets: torch.Tensor
    dev_encoded: tuple[torch.Tensor, torch.Tensor] | None
    dev_targets: torch.Tensor | None
    init: torch.Tensor  # the prompt's initial vectors
    penalties: list[Penalty]
    generator: torch.Generator  # example order and label-language dropout
    train_examples: int
    dev_examples: int


def prepare(
    backbone: Backbone,
    train: LabelledData,
    label_set: LabelSet,
    config: TrainConfig,
    dev: LabelledData | None = None,
    extra_names: NamesByLanguage | None = None,
    negatives: NamesByLanguage | None = None,
) -> TrainingSetup:
    """Phase 1: everything the epoch loop needs, every check done before training starts."""
    index = {name: i for i, name in enumerate(label_set.names)}
    for data in (train, dev):
        if data is None:
            continue
        unknown = sorted(set(data.labels) - set(index))
        if unknown:
            raise RosPromptError(f"{data.source}: labels {unknown} are not in the label set {label_set.names}")
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)

    verbalizer = choose_verbalizer(config.verbalizer, backbone)
    pool = NamePool.build(label_set, extra_names, negatives)
    head = training_head(verbalizer, backbone, config.head_config(), pool)
    n_train = len(label_set)
    if negatives:
        pool, rows = drop_close_negatives(pool, head.name_vectors, n_train, head.groups, config.negative_max_similarity)
        head.select(rows, pool)
    similarity = head.class_similarity()

    encoded = head.encode(train.texts)
    targets = torch.tensor([index[y] for y in train.labels], device=backbone.device)
    dev_encoded = head.encode(dev.texts) if dev else None
    dev_targets = torch.tensor([index[y] for y in dev.labels], device=backbone.device) if dev else None
    init = initial_prompt(backbone, config)
    # The KL penalty compares with the backbone's own (prompt-free) view of each training text.
    context = PenaltyContext(head, pool, n_train, init, zero_shot=lambda: _features(head, encoded, None))
    penalties = build_penalties(config.penalty, context) if config.penalty_weight > 0 else []
    return TrainingSetup(config, verbalizer, head, pool, n_train, similarity, encoded, targets, dev_encoded,
                         dev_targets, init, penalties, generator, len(train), len(dev) if dev else 0)


@dataclass
class FitResult:
    vectors: torch.Tensor  # the kept epoch's prompt
    logs: list[EpochLog]
    best: EpochLog


def fit(setup: TrainingSetup, on_epoch: Callable[[EpochLog], None] | None = None) -> FitResult:
    """Phase 2: the epoch loop; the epoch with the lowest dev loss is kept (else the last)."""
    config, head, generator = setup.config, setup.head, setup.generator
    ids, mask = setup.encoded
    n = setup.train_examples
    prompt = torch.nn.Parameter(setup.init.clone())
    optimizer = torch.optim.AdamW([prompt], lr=config.lr, weight_decay=0.0)
    total_steps = math.ceil(n / config.batch_size) * config.epochs
    warmup = max(1, int(config.warmup_fraction * total_steps))

    def lr_factor(step: int) -> float:  # linear warm-up, then linear decay to zero
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    best_vectors = prompt.detach().clone()
    best_dev_loss = math.inf
    logs: list[EpochLog] = []
    for epoch in range(1, config.epochs + 1):
        order = torch.randperm(n, generator=generator)
        epoch_loss = 0.0
        for start in range(0, n, config.batch_size):
            rows = order[start : start + config.batch_size]
            features = head.features(*_trim(ids[rows], mask[rows]), prompt)
            gold = setup.targets[rows.to(setup.targets.device)]
            keep = None
            if config.language_keep < 1.0:
                keep = language_dropout_mask(setup.pool.languages, config.language_keep, generator)
            logits = head.class_logits(features, keep)
            if config.smoothing > 0:
                q = smoothed_targets(gold, setup.similarity, config.smoothing, n_targets=setup.n_train)
            else:
                q = F.one_hot(gold, setup.pool.n_classes).float()
            loss = soft_cross_entropy(logits, q)
            step = Step(rows, features, logits, gold, keep, prompt)
            for penalty in setup.penalties:
                loss = loss + config.penalty_weight * penalty(step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            epoch_loss += loss.item() * len(rows)
        log = EpochLog(epoch, epoch_loss / n, None, None)
        if setup.dev_encoded is not None:
            assert setup.dev_targets is not None
            # dev selection: the training classes, all their names
            dev_logits = head.class_logits(_features(head, setup.dev_encoded, prompt.detach()))[:, : setup.n_train]
            log.dev_loss = F.cross_entropy(dev_logits, setup.dev_targets).item()
            log.dev_accuracy = (dev_logits.argmax(-1) == setup.dev_targets).float().mean().item()
            if log.dev_loss < best_dev_loss:
                best_dev_loss = log.dev_loss
                best_vectors = prompt.detach().clone()
        else:
            best_vectors = prompt.detach().clone()
        logs.append(log)
        if on_epoch:
            on_epoch(log)
    best = min(logs, key=lambda lg: lg.dev_loss) if setup.dev_encoded is not None else logs[-1]  # type: ignore[arg-type, return-value]
    return FitResult(best_vectors, logs, best)


def package(backbone: Backbone, setup: TrainingSetup, fitted: FitResult, label_set: LabelSet,
            seconds: float) -> SoftPrompt:
    """Phase 3: the kept vectors with everything a prompt file records."""
    config, best, pool = setup.config, fitted.best, setup.pool
    metrics = {
        "train_examples": setup.train_examples,
        "dev_examples": setup.dev_examples,
        "selected_epoch": best.epoch,
        "train_loss": round(best.train_loss, 6),
        "dev_loss": None if best.dev_loss is None else round(best.dev_loss, 6),
        "dev_accuracy": None if best.dev_accuracy is None else round(best.dev_accuracy, 6),
        "seconds": round(seconds, 2),
        "label_names": sum(1 for c in pool.owner if c < setup.n_train),
        "label_languages": len(set(pool.languages)),
        "open_world_negatives": pool.n_classes - setup.n_train,
    }
    meta = PromptMeta(
        backbone_name=backbone.name,
        backbone_hash=backbone.content_hash,
        hidden_size=backbone.hidden_size,
        prompt_length=config.prompt_length,
        backbone_source=backbone.source,
        verbalizer=setup.verbalizer,
        text_prefix=backbone.text_prefix,
        label_template=config.label_template,
        **prompt_fields(setup.verbalizer, config.head_config()),
        train_labels=label_set.as_dict(),
        hyperparameters={k: v for k, v in asdict(config).items() if k not in ("label_template", "temperature", "mlm")},
        metrics=metrics,
    )
    return SoftPrompt(fitted.vectors.cpu(), meta)


def train_prompt(
    backbone: Backbone,
    train: LabelledData,
    label_set: LabelSet,
    config: TrainConfig,
    dev: LabelledData | None = None,
    on_epoch: Callable[[EpochLog], None] | None = None,
    extra_names: NamesByLanguage | None = None,
    negatives: NamesByLanguage | None = None,
) -> SoftPrompt:
    """Train the prompt (prepare, fit, package); the checkpoint with the lowest dev loss is kept.

    With the defaults of TrainConfig this is plain cross-entropy soft prompt tuning. The
    RoSPrompt ingredients: `extra_names` (more names per label, by language: multilingual
    labels) with `language_keep` < 1 (label-language dropout); `smoothing` > 0 (contrastive
    label smoothing), `negatives` (open-world classes that are never a target); `penalty`.
    """
    started = time.perf_counter()
    setup = prepare(backbone, train, label_set, config, dev, extra_names, negatives)
    fitted = fit(setup, on_epoch)
    return package(backbone, setup, fitted, label_set, time.perf_counter() - started)


def run_train(job: TrainJob, on_event: OnEvent = ignore, backbone: Backbone | None = None) -> SoftPrompt:
    """Load the data and the backbone, train (train_prompt), and save the prompt to `job.out`.
    `backbone`: one already loaded (float32, on torch), used in place of `job.model` and
    `job.device`, so that several trainings load the model once."""
    config = replace(job.config, mlm=MlmOptions().with_overrides(job.mlm))
    data = load_labelled(job.input, job.text_col, job.label_col, None, job.fmt, job.split)
    if job.shots is not None:
        data = data.sample_per_class(job.shots, config.seed)
    dev = load_labelled(job.dev, job.text_col, job.label_col, None, None, None, DEV_SPLITS) if job.dev else None
    label_set = job.labels or LabelSet.from_names(sorted(data.label_names()))
    label_set.require_choice(f"{data.source} has examples of one class only, so the prompt would learn nothing")
    if backbone is None:
        backbone = load_backbone(job.model, job.device, dtype="float32")  # gradients through the frozen model in full precision
    elif backbone.runtime != "torch" or backbone.precision != "float32":
        raise RosPromptError(f"training needs the backbone in float32 on torch, not {backbone.execution}")
    chosen = choose_verbalizer(config.verbalizer, backbone)
    check_verbalizer_options(chosen, job.mlm)
    info(on_event, f"training a {config.prompt_length}-vector prompt for {backbone.name} ({chosen} verbalizer) on "
                   f"{len(data)} examples, {len(label_set)} labels")

    def report(log: EpochLog) -> None:
        dev_part = f", dev loss {log.dev_loss:.4f}, dev acc {log.dev_accuracy:.3f}" if log.dev_loss is not None else ""
        info(on_event, f"epoch {log.epoch}/{config.epochs}: train loss {log.train_loss:.4f}{dev_part}")
        on_event(RowsDone(1, note=f"train loss {log.train_loss:.4f}{dev_part}"))

    extra = names_by_language(label_set) if job.lexicon else None
    negative_topics = open_world_negatives(label_set, None if job.lexicon else {GIVEN}) if job.negatives else None
    on_event(RowsStarted("training", config.epochs, unit="epochs"))
    try:
        prompt = train_prompt(backbone, data, label_set, config, dev, on_epoch=report, extra_names=extra,
                              negatives=negative_topics)
    finally:
        on_event(RowsFinished())
    prompt = calibrated(backbone, prompt, label_set, data, dev)
    prompt.save(job.out)
    fitted = prompt.meta.calibration or {}
    info(on_event, f"saved {job.out} (epoch {prompt.meta.metrics['selected_epoch']} kept; scores calibrated on "
                   f"{fitted.get('fitted_on')}: T={fitted.get('temperature', 1.0):.3f})")
    return prompt


def calibrated(backbone: Backbone, prompt: SoftPrompt, label_set: LabelSet, train: LabelledData,
               dev: LabelledData | None) -> SoftPrompt:
    """The prompt with its calibration (calibration.py), fitted on the dev rows when there are
    enough of them (calibration.MIN_ROWS), else on the dev and training rows together, with the
    training labels' own names (as `label` scores them with a prompt)."""
    from rosprompt_cli.calibration import MIN_ROWS, fit
    from rosprompt_cli.pipeline import score_chunk
    from rosprompt_cli.verbalizers import make_scorer

    # where: shown in label's status line, so an option is named with its command (train --dev)
    if dev is not None and len(dev) >= MIN_ROWS:
        texts, labels, where = dev.texts, dev.labels, f"the rows of train --dev ({dev.source})"
    else:
        texts = train.texts + (dev.texts if dev is not None else [])
        labels = train.labels + (dev.labels if dev is not None else [])
        where = "the training rows" + (" and those of train --dev" if dev is not None else "")
    scorer = make_scorer(backbone, prompt, prompt.meta.verbalizer)
    logits = score_chunk(scorer, scorer.encode(texts), scorer.label_vectors(label_set), scorer.default_batching).logits
    index = {name: i for i, name in enumerate(label_set.names)}
    fitted = fit(logits, np.array([index[label] for label in labels]), f"{where}, {len(labels)} rows", min_rows=1)
    return SoftPrompt(prompt.vectors, replace(prompt.meta, calibration=fitted.as_dict()))
