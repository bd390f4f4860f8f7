"""The RoSPrompt training objective, term by term (this project's reconstruction of method.md).

    L = CE(q, softmax(s(x))) + λ · penalty

Every function here is pure tensor arithmetic on scores and vectors the training loop has
already computed, so each term is cheap and testable on hand-checked numbers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def language_dropout_mask(languages: list[str], keep_fraction: float, generator: torch.Generator) -> torch.Tensor:
    """Keep each language (all its names in every class) with probability `keep_fraction`."""
    distinct = sorted(set(languages))
    kept = torch.rand(len(distinct), generator=generator) < keep_fraction
    chosen = {lang for lang, k in zip(distinct, kept.tolist()) if k}
    return torch.tensor([lang in chosen for lang in languages], dtype=torch.bool)


def smoothed_targets(gold: torch.Tensor, label_similarity: torch.Tensor, epsilon: float, n_targets: int | None = None) -> torch.Tensor:
    """Contrastive label smoothing.

    q = (1 - ε) on the gold class and ε spread over the other classes in proportion to their
    (clamped-at-zero) similarity to the gold label: closer labels get more of the mass.
    gold [B]; label_similarity [C, C] cosine between class vectors; returns q [B, C].
    If every other class has similarity ≤ 0, ε is spread uniformly. `n_targets` limits the
    classes that can receive smoothing mass to the first n (the training classes), so that
    open-world negatives stay pure negatives.
    """
    n_classes = label_similarity.shape[0]
    limit = n_classes if n_targets is None else n_targets
    weights = label_similarity[gold].clamp(min=0.0).clone()  # [B, C]
    weights[:, limit:] = 0.0
    weights.scatter_(1, gold.unsqueeze(1), 0.0)
    totals = weights.sum(1, keepdim=True)
    uniform = torch.ones_like(weights)
    uniform[:, limit:] = 0.0
    uniform.scatter_(1, gold.unsqueeze(1), 0.0)
    uniform = uniform / uniform.sum(1, keepdim=True).clamp(min=1.0)
    spread = torch.where(totals > 0, weights / totals.clamp(min=1e-12), uniform)
    q = epsilon * spread
    q.scatter_(1, gold.unsqueeze(1), 1.0 - epsilon)
    return q


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of −Σ q · log softmax(logits)."""
    return -(targets * F.log_softmax(logits, dim=-1)).sum(-1).mean()


def kl_to_zero_shot(prompt_logits: torch.Tensor, zero_shot_logits: torch.Tensor) -> torch.Tensor:
    """KL(p_prompt ‖ p_zero-shot) over the open label pool, averaged over the batch.

    Keeps the prompted model close to the backbone's pretrained behaviour on classes the
    training set does not cover.
    """
    log_p = F.log_softmax(prompt_logits, dim=-1)
    log_q = F.log_softmax(zero_shot_logits, dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1).mean()


def language_loss_variance(per_language_logits: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
    """Variance across label languages of the cross-entropy (V-REx style).

    per_language_logits [K, B, C]: the batch scored against class vectors built from one label
    language at a time. Low variance = the prompt does not lean on one language's label words.
    """
    k = per_language_logits.shape[0]
    losses = torch.stack([F.cross_entropy(per_language_logits[i], gold) for i in range(k)])
    return losses.var(unbiased=False)


def l2_to_init(prompt: torch.Tensor, init: torch.Tensor) -> torch.Tensor:
    """Mean squared distance of the prompt vectors from their initialisation."""
    return (prompt - init).pow(2).sum(-1).mean()
