"""Training a soft prompt for a frozen backbone (only the prompt vectors receive gradients)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from rosprompt_cli.backbone import Backbone
from rosprompt_cli.errors import RosPromptError
from rosprompt_cli.labelled import LabelledData
from rosprompt_cli.labels import LabelSet
from rosprompt_cli.prompt import PromptMeta, SoftPrompt
from rosprompt_cli.scoring import DEFAULT_LABEL_TEMPLATE, DEFAULT_TEMPERATURE, EmbeddingScorer, prompted_embeddings, tokenize


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
        if "{}" not in self.label_template:
            raise RosPromptError("--label-template must contain {} where the label name goes")


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


def _loss_and_accuracy(
    backbone: Backbone,
    encoded: dict,
    targets: torch.Tensor,
    prompt: torch.Tensor,
    label_vectors: torch.Tensor,
    temperature: float,
    batch_size: int,
) -> tuple[float, float]:
    total, correct = 0.0, 0
    with torch.inference_mode():
        for start in range(0, targets.shape[0], batch_size):
            sl = slice(start, start + batch_size)
            vectors = prompted_embeddings(backbone, encoded["input_ids"][sl], encoded["attention_mask"][sl], prompt)
            logits = vectors @ label_vectors.T / temperature
            total += F.cross_entropy(logits, targets[sl], reduction="sum").item()
            correct += (logits.argmax(-1) == targets[sl]).sum().item()
    n = targets.shape[0]
    return total / n, correct / n


def _encode_all(backbone: Backbone, data: LabelledData, prefix: str, config: TrainConfig) -> dict:
    # Pad to the longest example once; batches are cut down to their own longest below.
    return tokenize(backbone, data.texts, prefix, config.prompt_length, config.max_length)


def _trim(ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    width = int(mask.sum(1).max().item())
    return ids[:, :width], mask[:, :width]


def train_prompt(
    backbone: Backbone,
    train: LabelledData,
    label_set: LabelSet,
    config: TrainConfig,
    dev: LabelledData | None = None,
    on_epoch: Callable[[EpochLog], None] | None = None,
) -> SoftPrompt:
    """Cross-entropy over the label set; the checkpoint with the lowest dev loss is kept."""
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

    scorer = EmbeddingScorer(backbone, None, config.label_template, config.temperature)
    # Fixed targets: label names are embedded without the prompt (clone leaves inference mode).
    label_vectors = scorer.label_vectors(label_set).clone()
    prefix = backbone.text_prefix

    enc = _encode_all(backbone, train, prefix, config)
    targets = torch.tensor([index[y] for y in train.labels], device=backbone.device)
    dev_enc = _encode_all(backbone, dev, prefix, config) if dev else None
    dev_targets = torch.tensor([index[y] for y in dev.labels], device=backbone.device) if dev else None

    prompt = torch.nn.Parameter(initial_prompt(backbone, config))
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
            ids, mask = _trim(enc["input_ids"][idx], enc["attention_mask"][idx])
            vectors = prompted_embeddings(backbone, ids, mask, prompt)
            logits = vectors @ label_vectors.T / config.temperature
            loss = F.cross_entropy(logits, targets[idx.to(targets.device)])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            epoch_loss += loss.item() * len(idx)
        log = EpochLog(epoch, epoch_loss / len(train), None, None)
        if dev_enc is not None:
            log.dev_loss, log.dev_accuracy = _loss_and_accuracy(
                backbone, dev_enc, dev_targets, prompt.detach(), label_vectors, config.temperature, 64
            )
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
    }
    meta = PromptMeta(
        backbone_name=backbone.name,
        backbone_hash=backbone.content_hash,
        hidden_size=backbone.hidden_size,
        prompt_length=config.prompt_length,
        backbone_source=backbone.source,
        verbalizer="embed",
        text_prefix=prefix,
        label_template=config.label_template,
        temperature=config.temperature,
        train_labels=label_set.as_dict(),
        hyperparameters={k: v for k, v in asdict(config).items() if k not in ("label_template", "temperature")},
        metrics=metrics,
    )
    return SoftPrompt(best_vectors.cpu(), meta)
