"""Training a soft prompt for a frozen backbone (only the prompt vectors receive gradients)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from rosprompt_cli.backbone import Backbone
from rosprompt_cli.errors import RosPromptError
from rosprompt_cli.labelled import LabelledData
from rosprompt_cli.labels import LabelSet
from rosprompt_cli.objective import (
    class_vectors,
    group_ids,
    kl_to_zero_shot,
    l2_to_init,
    language_dropout_mask,
    language_loss_variance,
    smoothed_targets,
    soft_cross_entropy,
)
from rosprompt_cli.mlm import MlmOptions, MlmScorer, mask_features
from rosprompt_cli.prompt import PromptMeta, SoftPrompt
from rosprompt_cli.scorers import choose_verbalizer
from rosprompt_cli.scoring import DEFAULT_LABEL_TEMPLATE, DEFAULT_TEMPERATURE, EmbeddingScorer, prompted_embeddings, tokenize


PENALTIES = ("none", "kl", "variance", "l2")
# Label names keyed by language code, per label: {"sports": {"eng_Latn": ["sports"], ...}}.
NamesByLanguage = dict[str, dict[str, list[str]]]


@dataclass
class TrainConfig:
    prompt_length: int = 16
    epochs: int = 30
    lr: float = 1e-2
    batch_size: int = 16
    seed: int = 0
    temperature: float = DEFAULT_TEMPERATURE
    warmup_fraction: float = 0.1
    init_text: str = "This text is about"  # prompt initialised from these token embeddings
    max_length: int = 256
    label_template: str = DEFAULT_LABEL_TEMPLATE
    # RoSPrompt ingredients (objective.py); all off = plain cross-entropy soft prompt tuning.
    language_keep: float = 1.0  # label-language dropout: fraction of label languages kept per step
    smoothing: float = 0.0  # contrastive label smoothing ε
    penalty: str = "none"  # none | kl | variance | l2
    penalty_weight: float = 0.0  # λ
    # Open-world negatives closer than this (cosine of class vectors) to a training class are
    # near-synonyms of it (tourism for travel), not contrasts, and are left out.
    negative_max_similarity: float = 0.3
    # Language-centred class vectors in training (objective.class_vectors). Off: on a 30-language
    # SIB-200 dev subsample they made the prompt over-fit (protocol G 55.4 vs 62.0 with plain means).
    centre_languages: bool = False
    # auto: mlm for a masked LM, embed for an encoder without an MLM head (scorers.choose_verbalizer)
    verbalizer: str = "auto"
    mlm: MlmOptions = field(default_factory=MlmOptions)

    def __post_init__(self) -> None:
        checks = {
            "--prompt-len": self.prompt_length >= 1,
            "--epochs": self.epochs >= 1,
            "--lr": self.lr > 0,
            "--batch-size": self.batch_size >= 1,
            "--max-length": self.max_length > self.prompt_length + 2,
        }
        for option, ok in checks.items():
            if not ok:
                raise RosPromptError(f"{option}: value out of range")
        if not 0.0 < self.language_keep <= 1.0:
            raise RosPromptError("--language-keep must be in (0, 1]")
        if not 0.0 <= self.smoothing < 1.0:
            raise RosPromptError("--smoothing must be in [0, 1)")
        if self.penalty not in PENALTIES:
            raise RosPromptError(f"--penalty {self.penalty!r}: expected one of {', '.join(PENALTIES)}")
        if self.penalty_weight < 0:
            raise RosPromptError("--penalty-weight must be non-negative")
        if "{}" not in self.label_template:
            raise RosPromptError("--label-template must contain {} where the label name goes")


# What `rosprompt train` uses by default: the RoSPrompt system of bench/quality.py (with the
# lexicon's label names, which train_prompt takes as an argument; no open-world negatives).
ROSPROMPT_DEFAULTS = TrainConfig(language_keep=0.5, smoothing=0.1, penalty="kl", penalty_weight=1.0)


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


@dataclass
class NamePool:
    """Every label name to embed: its text, its class, its language (for dropout and variance)."""

    texts: list[str]
    owner: list[int]
    languages: list[str]

    @classmethod
    def build(cls, label_set: LabelSet, extra: NamesByLanguage | None, negatives: NamesByLanguage | None) -> NamePool:
        texts: list[str] = []
        owner: list[int] = []
        languages: list[str] = []

        def add(class_index: int, language: str, name: str) -> None:
            texts.append(name)
            owner.append(class_index)
            languages.append(language)

        for name, owner_index, language in zip(*label_set.with_names(extra or {}).name_table()):
            add(owner_index, language, name)
        for k, by_language in enumerate((negatives or {}).values()):
            for language, names in by_language.items():
                for name in names:
                    add(len(label_set) + k, language, name)
        return cls(texts, owner, languages)

    @property
    def n_classes(self) -> int:
        return max(self.owner) + 1


def _drop_close_negatives(
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
    new_index = {c: c for c in range(n_train)} | {c: n_train + i for i, c in enumerate(kept)}
    rows = [i for i, c in enumerate(pool.owner) if c in new_index]
    filtered = NamePool([pool.texts[i] for i in rows], [new_index[pool.owner[i]] for i in rows], [pool.languages[i] for i in rows])
    return filtered, rows


def _complete_languages(pool: NamePool, n_classes: int) -> list[torch.Tensor]:
    """One name mask [N] per label language that names every training class: the variance
    penalty compares like with like."""
    by_language: dict[str, set[int]] = {}
    for language, c in zip(pool.languages, pool.owner):
        if c < n_classes:
            by_language.setdefault(language, set()).add(c)
    complete = sorted(lang for lang, classes in by_language.items() if len(classes) == n_classes)
    return [torch.tensor([lang == language for lang in pool.languages]) for language in complete]


class TrainingHead:
    """What the training loop needs from a verbalizer: text features (differentiable in the
    prompt), class logits from them with a subset of label names, and one vector per label name
    for label-to-label similarity."""

    name_vectors: torch.Tensor  # [N, H]
    pool: NamePool
    groups: torch.Tensor | None = None  # label-language ids, for language-centred class vectors

    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def features(self, ids: torch.Tensor, mask: torch.Tensor, prompt: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def class_logits(self, features: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """[B, C] over every class of the pool (training classes first); keep [N]: names used."""
        raise NotImplementedError

    def select(self, rows: list[int], pool: NamePool) -> None:
        """Keep only these rows of the name pool (after open-world negatives are filtered)."""
        raise NotImplementedError

    @property
    def owner(self) -> torch.Tensor:
        return torch.tensor(self.pool.owner, device=self.name_vectors.device)

    def class_similarity(self) -> torch.Tensor:
        vectors = class_vectors(self.name_vectors, self.owner, self.pool.n_classes, groups=self.groups)
        return vectors @ vectors.T


class EmbedHead(TrainingHead):
    """Sentence vectors of prompted texts against class vectors from label-name embeddings."""

    def __init__(self, backbone: Backbone, config: TrainConfig, pool: NamePool) -> None:
        self.backbone, self.config, self.pool = backbone, config, pool
        # Label names are embedded once, without the prompt, exactly as at inference; clone():
        # leave inference mode so the vectors can enter the autograd graph.
        self.name_vectors = EmbeddingScorer(backbone, None, config.label_template).name_vectors(pool.texts).clone()
        self._set_groups()

    def _set_groups(self) -> None:
        # Language-centred class vectors only if asked for (config.centre_languages).
        centre = self.config.centre_languages and len(set(self.pool.languages)) > 1
        self.groups = group_ids(self.pool.languages, self.name_vectors.device) if centre else None

    def select(self, rows: list[int], pool: NamePool) -> None:
        self.name_vectors, self.pool = self.name_vectors[rows], pool
        self._set_groups()

    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        enc = tokenize(self.backbone, texts, self.backbone.text_prefix, self.config.prompt_length, self.config.max_length)
        return enc["input_ids"], enc["attention_mask"]

    def features(self, ids: torch.Tensor, mask: torch.Tensor, prompt: torch.Tensor | None) -> torch.Tensor:
        return prompted_embeddings(self.backbone, ids, mask, prompt)

    def class_logits(self, features: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        keep = None if keep is None else keep.to(self.name_vectors.device)
        classes = class_vectors(self.name_vectors, self.owner, self.pool.n_classes, keep, self.groups)
        return features @ classes.T / self.config.temperature


class MlmHead(TrainingHead):
    """MLM logits at the template's mask, read through the NPPrompt expansion of the label names."""

    def __init__(self, backbone: Backbone, config: TrainConfig, pool: NamePool) -> None:
        self.backbone, self.config, self.pool = backbone, config, pool
        self.scorer = MlmScorer(backbone, None, config.mlm, max_length=config.max_length)
        self.expansion = self.scorer.expand(pool.texts, pool.owner, pool.languages, pool.n_classes)
        self.name_vectors = self.expansion.embedding_vectors(backbone.word_embeddings.weight)

    def select(self, rows: list[int], pool: NamePool) -> None:
        self.expansion = self.expansion.subset(rows, pool.owner, pool.languages, pool.n_classes)
        self.name_vectors, self.pool = self.name_vectors[rows], pool

    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.scorer.encode(texts, prompt_length=self.config.prompt_length).padded()

    def features(self, ids: torch.Tensor, mask: torch.Tensor, prompt: torch.Tensor | None) -> torch.Tensor:
        return self.expansion.scores_at_mask(mask_features(self.backbone, ids, mask, prompt))

    def class_logits(self, features: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        return self.expansion.class_scores(features, keep)


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


def _penalty(
    config: TrainConfig,
    head: TrainingHead,
    logits: torch.Tensor,
    features: torch.Tensor,
    gold: torch.Tensor,
    keep: torch.Tensor | None,
    language_masks: list[torch.Tensor],
    zero_shot: torch.Tensor | None,
    n_train: int,
    prompt: torch.Tensor,
    init: torch.Tensor,
) -> torch.Tensor:
    if config.penalty == "kl":
        assert zero_shot is not None
        return kl_to_zero_shot(logits, head.class_logits(zero_shot, keep))
    if config.penalty == "variance":
        per_language = torch.stack([head.class_logits(features, m)[:, :n_train] for m in language_masks])
        return language_loss_variance(per_language, gold)
    if config.penalty == "l2":
        return l2_to_init(prompt, init)
    return logits.new_zeros(())


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
    """Train the prompt; the checkpoint with the lowest dev loss is kept.

    With the defaults of TrainConfig this is plain cross-entropy soft prompt tuning. The
    RoSPrompt ingredients: `extra_names` (more names per label, by language: multilingual
    labels) with `language_keep` < 1 (label-language dropout); `smoothing` > 0 (contrastive
    label smoothing), `negatives` (open-world classes that are never a target); `penalty`.
    """
    index = {name: i for i, name in enumerate(label_set.names)}
    for data in (train, dev):
        if data is None:
            continue
        unknown = sorted(set(data.labels) - set(index))
        if unknown:
            raise RosPromptError(f"{data.source}: labels {unknown} are not in the label set {label_set.names}")
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)

    verbalizer = choose_verbalizer(config.verbalizer, backbone)
    pool = NamePool.build(label_set, extra_names, negatives)
    head: TrainingHead = MlmHead(backbone, config, pool) if verbalizer == "mlm" else EmbedHead(backbone, config, pool)
    n_train_classes = len(label_set)
    if negatives:
        pool, rows = _drop_close_negatives(pool, head.name_vectors, n_train_classes, head.groups, config.negative_max_similarity)
        head.select(rows, pool)
    n_classes = pool.n_classes
    similarity = head.class_similarity()
    language_masks: list[torch.Tensor] = []
    if config.penalty == "variance" and config.penalty_weight > 0:
        language_masks = _complete_languages(pool, n_train_classes)
        if len(language_masks) < 2:
            raise RosPromptError("--penalty variance needs label names in at least two languages for every class")

    enc = head.encode(train.texts)
    targets = torch.tensor([index[y] for y in train.labels], device=backbone.device)
    dev_enc = head.encode(dev.texts) if dev else None
    dev_targets = torch.tensor([index[y] for y in dev.labels], device=backbone.device) if dev else None

    # The KL penalty compares with the backbone's own (prompt-free) view of each training text.
    zero_shot = _features(head, enc, None) if config.penalty == "kl" else None

    init = initial_prompt(backbone, config)
    prompt = torch.nn.Parameter(init.clone())
    optimizer = torch.optim.AdamW([prompt], lr=config.lr, weight_decay=0.0)
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
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
        order = torch.randperm(len(train), generator=generator)
        epoch_loss = 0.0
        for start in range(0, len(train), config.batch_size):
            idx = order[start : start + config.batch_size]
            features = head.features(*_trim(enc[0][idx], enc[1][idx]), prompt)
            gold = targets[idx.to(targets.device)]
            keep = None
            if config.language_keep < 1.0:
                keep = language_dropout_mask(pool.languages, config.language_keep, generator)
            logits = head.class_logits(features, keep)
            if config.smoothing > 0:
                q = smoothed_targets(gold, similarity, config.smoothing, n_targets=n_train_classes)
            else:
                q = F.one_hot(gold, n_classes).float()
            loss = soft_cross_entropy(logits, q)
            if config.penalty_weight > 0:
                zero_shot_batch = zero_shot[idx.to(zero_shot.device)] if zero_shot is not None else None
                loss = loss + config.penalty_weight * _penalty(
                    config, head, logits, features, gold, keep, language_masks, zero_shot_batch, n_train_classes,
                    prompt, init,
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            epoch_loss += loss.item() * len(idx)
        log = EpochLog(epoch, epoch_loss / len(train), None, None)
        if dev_enc is not None:
            # dev selection: the training classes, all their names
            dev_logits = head.class_logits(_features(head, dev_enc, prompt.detach()))[:, :n_train_classes]
            log.dev_loss = F.cross_entropy(dev_logits, dev_targets).item()
            log.dev_accuracy = (dev_logits.argmax(-1) == dev_targets).float().mean().item()
            if log.dev_loss < best_dev_loss:
                best_dev_loss = log.dev_loss
                best_vectors = prompt.detach().clone()
        else:
            best_vectors = prompt.detach().clone()
        logs.append(log)
        if on_epoch:
            on_epoch(log)

    best = min(logs, key=lambda lg: lg.dev_loss) if dev_enc is not None else logs[-1]
    metrics = {
        "train_examples": len(train),
        "dev_examples": len(dev) if dev else 0,
        "selected_epoch": best.epoch,
        "train_loss": round(best.train_loss, 6),
        "dev_loss": None if best.dev_loss is None else round(best.dev_loss, 6),
        "dev_accuracy": None if best.dev_accuracy is None else round(best.dev_accuracy, 6),
        "seconds": round(time.perf_counter() - started, 2),
        "label_names": sum(1 for c in pool.owner if c < n_train_classes),
        "label_languages": len(set(pool.languages)),
        "open_world_negatives": n_classes - n_train_classes,
    }
    meta = PromptMeta(
        backbone_name=backbone.name,
        backbone_hash=backbone.content_hash,
        hidden_size=backbone.hidden_size,
        prompt_length=config.prompt_length,
        backbone_source=backbone.source,
        verbalizer=verbalizer,
        verbalizer_options=asdict(config.mlm) if verbalizer == "mlm" else {},
        text_prefix=backbone.text_prefix,
        label_template=config.label_template,
        temperature=config.temperature if verbalizer == "embed" else 1.0,
        train_labels=label_set.as_dict(),
        hyperparameters={k: v for k, v in asdict(config).items() if k not in ("label_template", "temperature", "mlm")},
        metrics=metrics,
    )
    return SoftPrompt(best_vectors.cpu(), meta)
