"""``batch_fraction``: the attention terms on part of a batch, the classification loss on all.

``select: margin`` takes the ``ceil(f * B)`` samples whose target-minus-confusing logit margin
is smallest (the hardest), read from one full-batch forward, and maps them with a second
forward of those samples only. ``select: random`` draws the subset from torch's global
generator (seeded by the trainer, restored on resume) and forwards it apart from the rest, so
no sample is forwarded twice (the cheaper of the two).

Train-mode BatchNorm: with ``margin`` the classification loss sees the whole batch's
statistics and the attention terms the subset's (its forward leaves the running statistics as
they were); with ``random`` the subset and the rest are normalised separately, and each of the
two forwards updates the running statistics (two momentum updates per step).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from .attention.maps import norm_stats_kept

__all__ = ["attention_on_part", "margins", "subset_size"]


def subset_size(batch: int, fraction: float) -> int:
    """``ceil(fraction * batch)``, at least 1."""
    return max(1, math.ceil(fraction * batch - 1e-9))


def margins(logits: Tensor, targets: Tensor, *, multilabel: bool = False) -> Tensor:
    """``B`` target-minus-confusing logit margins (detached): single label, the target's logit
    minus the highest other; multi-label, the lowest present class's minus the highest absent
    one's (``inf`` for a sample with no present or no absent class)."""
    scores = logits.detach().float()
    if multilabel:
        present = targets > 0.5
        low = scores.masked_fill(~present, float("inf")).amin(dim=1)
        high = scores.masked_fill(present, float("-inf")).amax(dim=1)
        return torch.where(present.any(1) & ~present.all(1), low - high, float("inf"))
    target = scores.gather(1, targets[:, None].long())[:, 0]
    other = scores.scatter(1, targets[:, None].long(), float("-inf")).amax(dim=1)
    return target - other


def attention_on_part(criterion: Any, x: Tensor, targets: Tensor) -> tuple[Any, Tensor, Tensor]:
    """``(terms of the subset, B x C logits of the whole batch, its classification loss)``
    for a ``DiscriminativeAttentionLoss`` (its ``terms`` and its plain classification loss)."""
    cfg, model = criterion.config, criterion.model
    batch = x.shape[0]
    count = subset_size(batch, cfg.batch_fraction)
    if count >= batch:
        terms = criterion.terms(x, targets)
        return terms, terms.logits, terms.cls
    labels = targets if cfg.multilabel else targets.long()
    if cfg.select == "margin":
        logits = model(x)
        criterion._check_targets(targets, logits)
        cls = criterion._plain.loss(logits, labels)
        chosen = margins(logits, labels, multilabel=cfg.multilabel).topk(count, largest=False)
        with norm_stats_kept(model):
            terms = criterion.terms(x[chosen.indices], targets[chosen.indices])
        return terms, logits, cls
    order = torch.randperm(batch).to(x.device)
    part, rest = order[:count], order[count:]
    terms = criterion.terms(x[part], targets[part])
    rest_logits = model(x[rest])
    rest_cls = criterion._plain.loss(rest_logits, labels[rest])
    cls = (terms.cls * count + rest_cls * (batch - count)) / batch  # the mean over all B
    logits = torch.cat([terms.logits, rest_logits])[torch.argsort(order)]
    return terms, logits, cls
