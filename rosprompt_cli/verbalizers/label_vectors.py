"""Class vectors from label-name vectors: the label-side maths of the embedding verbalizer,
shared by inference (the scorer) and training (the head and the RoSPrompt objective).

A label is verbalised by several names, possibly in several label languages. Its class vector
combines the vectors of its names; label-language dropout decides which names take part.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def class_vectors(
    name_vectors: torch.Tensor,
    owner: torch.Tensor,
    n_classes: int,
    keep: torch.Tensor | None = None,
    groups: torch.Tensor | None = None,
) -> torch.Tensor:
    """Class vectors [C, H] from name vectors [N, H]; owner [N] is each name's class index.

    keep [N] bool: which names take part (label-language dropout). A class whose names were all
    dropped keeps all of them, so no class ever vanishes.

    Without `groups`: the normalised mean of each class's name vectors.
    With `groups` [N] (each name's label language as an integer id), language-centred vectors:
    within a language, each class's mean name vector minus the mean over the classes that
    language names; then the mean over the class's languages, normalised. The names of one
    language share a direction (the language itself) that otherwise pulls texts toward whichever
    classes that language weighs most; centring removes it. A language that names only one class
    adds nothing, and a class left with nothing falls back to its plain mean.
    """
    weights = names_in_use(owner, n_classes, keep).float()
    sums = torch.zeros(n_classes, name_vectors.shape[1], device=name_vectors.device)
    plain = F.normalize(sums.index_add(0, owner, name_vectors * weights.unsqueeze(1)), dim=-1)
    if groups is None:
        return plain
    n_groups = int(groups.max().item()) + 1
    cell = groups * n_classes + owner  # one cell per (language, class)
    cell_sums = torch.zeros(n_groups * n_classes, name_vectors.shape[1], device=name_vectors.device)
    cell_sums = cell_sums.index_add(0, cell, name_vectors * weights.unsqueeze(1)).view(n_groups, n_classes, -1)
    counts = torch.zeros(n_groups * n_classes, device=owner.device).index_add_(0, cell, weights).view(n_groups, n_classes)
    present = (counts > 0).float()
    means = cell_sums / counts.clamp(min=1.0).unsqueeze(-1)
    language_mean = (means * present.unsqueeze(-1)).sum(1) / present.sum(1).clamp(min=1.0).unsqueeze(-1)
    useful = present * (present.sum(1, keepdim=True) >= 2).float()  # languages naming 2+ classes
    centred = ((means - language_mean.unsqueeze(1)) * useful.unsqueeze(-1)).sum(0)
    centred = centred / useful.sum(0).clamp(min=1.0).unsqueeze(-1)
    has_centred = (useful.sum(0) > 0).unsqueeze(-1)
    return torch.where(has_centred, F.normalize(centred, dim=-1), plain)


def names_in_use(owner: torch.Tensor, n_classes: int, keep: torch.Tensor | None = None) -> torch.Tensor:
    """[N] bool: the names that take part after label-language dropout (`keep`). A class whose
    names were all dropped keeps all of them, so no class ever vanishes."""
    if keep is None:
        return torch.ones_like(owner, dtype=torch.bool)
    keep = keep.to(owner.device)
    kept_per_class = torch.zeros(n_classes, device=owner.device).index_add_(0, owner, keep.float())
    return keep | (kept_per_class[owner] == 0)


def group_ids(languages: list[str], device: torch.device | str | None = None) -> torch.Tensor:
    """Integer ids for language tags, in order of first appearance."""
    index: dict[str, int] = {}
    return torch.tensor([index.setdefault(lang, len(index)) for lang in languages], dtype=torch.long, device=device)
