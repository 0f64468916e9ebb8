"""Pure tensor metrics: top-k accuracy, average precision and ROC-AUC (as scikit-learn's).

Inputs are ``N x C`` scores and ``N`` labels or ``N x C`` multi-hot targets; no loader, no
model. The dataset loops that produce them are ``discatt_timm.evaluation``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["average_precision", "classification_metrics", "roc_auc", "topk_accuracy"]


def topk_accuracy(logits: Tensor, targets: Tensor, ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """Fraction of samples whose label is among the ``k`` highest logits (``k`` <= classes).

    Args:
        logits: ``N x C``.
        targets: ``N`` class indices.
    """
    if logits.shape[0] == 0:
        return {k: float("nan") for k in ks}
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices  # N x kmax
    hits = top == targets[:, None]
    return {k: hits[:, : min(k, logits.shape[1])].any(dim=1).float().mean().item() for k in ks}


def average_precision(scores: Tensor, targets: Tensor) -> Tensor:
    """Per-class average precision (as ``sklearn.metrics.average_precision_score``, ties grouped).

    Args:
        scores: ``N x C`` scores (logits or probabilities).
        targets: ``N x C`` multi-hot (0/1 or bool).

    Returns:
        ``C`` values; NaN for a class without positive samples.
    """
    out = torch.full((scores.shape[1],), float("nan"), dtype=torch.float64)
    for c in range(scores.shape[1]):
        s, t = scores[:, c].double(), targets[:, c].double()
        positives = t.sum()
        if positives == 0:
            continue
        order = torch.argsort(s, descending=True, stable=True)
        s, t = s[order], t[order]
        tp = t.cumsum(0)
        rank = torch.arange(1, len(s) + 1, dtype=torch.float64)
        last_of_tie = torch.ones_like(s, dtype=torch.bool)
        last_of_tie[:-1] = s[:-1] != s[1:]
        tp_end, rank_end = tp[last_of_tie], rank[last_of_tie]
        recall_step = torch.diff(tp_end, prepend=tp_end.new_zeros(1)) / positives
        out[c] = (recall_step * tp_end / rank_end).sum()
    return out


def roc_auc(scores: Tensor, targets: Tensor) -> Tensor:
    """Per-class area under the ROC curve (Mann-Whitney U with tied ranks averaged).

    Args:
        scores: ``N x C``; targets: ``N x C`` multi-hot.

    Returns:
        ``C`` values; NaN for a class whose samples are all positive or all negative.
    """
    out = torch.full((scores.shape[1],), float("nan"), dtype=torch.float64)
    for c in range(scores.shape[1]):
        s, t = scores[:, c].double(), targets[:, c].bool()
        positives, negatives = int(t.sum()), int((~t).sum())
        if positives == 0 or negatives == 0:
            continue
        _, inverse, counts = torch.unique(s, return_inverse=True, return_counts=True)
        ends = counts.cumsum(0).double()
        mean_rank = ends - (counts.double() - 1) / 2  # 1-based average rank of each value
        rank_sum = mean_rank[inverse][t].sum()
        out[c] = (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)
    return out


def _nanmean(values: Tensor) -> float:
    finite = values[~torch.isnan(values)]
    return finite.mean().item() if finite.numel() else float("nan")


def classification_metrics(
    logits: Tensor, targets: Tensor, *, multilabel: bool = False, topk: Sequence[int] = (1, 5)
) -> dict[str, float]:
    """``top{k}`` (single label) or ``mAP``/``roc_auc`` (means over classes; multi label),
    plus ``loss`` (cross-entropy / multi-label soft margin), from ``N x C`` logits."""
    logits = logits.float()
    if multilabel:
        targets = targets.float()
        return {
            "mAP": _nanmean(average_precision(logits, targets)),
            "roc_auc": _nanmean(roc_auc(logits, targets)),
            "loss": F.multilabel_soft_margin_loss(logits, targets).item(),
        }
    metrics = {f"top{k}": v for k, v in topk_accuracy(logits, targets, topk).items()}
    metrics["loss"] = F.cross_entropy(logits, targets).item()
    return metrics
