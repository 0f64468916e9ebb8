"""Evaluation metrics: classification (top-k, mAP, ROC-AUC) and attention separability.

Pure tensor functions first (``topk_accuracy``, ``average_precision``, ``roc_auc``), then the
two loops over a data loader that the trainer, ``discatt metrics`` and the model cards share:

* ``attention_metrics(model, loader, ...)``: mean soft IoU between the target and the
  confusing class maps at the inner and the last layer and the mean consistency loss, computed
  by ``DiscriminativeAttentionLoss(..., grad_mode='detached').terms`` in eval mode;
* ``evaluate(model, loader, ...)``: classification metrics plus (optionally) the attention
  metrics, from the same forward passes.

Both are gather-safe: with an ``accelerator`` the per-sample values of every process are
collected with ``gather_for_metrics`` (duplicated padding samples dropped) before reducing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "attention_metrics",
    "attention_report",
    "average_precision",
    "classification_metrics",
    "evaluate",
    "roc_auc",
    "topk_accuracy",
]


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


def _split_batch(batch: Any) -> tuple[Tensor, Tensor]:
    if isinstance(batch, list | tuple) and len(batch) >= 2:
        return batch[0], batch[1]
    if isinstance(batch, dict):
        x = batch.get("image", batch.get("pixel_values"))
        y = batch.get("label", batch.get("labels"))
        if x is not None and y is not None:
            return x, y
    raise TypeError(
        "batches must be (images, targets) pairs or dicts with 'image'/'pixel_values' and "
        f"'label'/'labels', got {type(batch).__name__}"
    )


class _Gather:
    """Collect per-batch tensors on CPU, through ``gather_for_metrics`` when distributed."""

    def __init__(self, accelerator: Any | None) -> None:
        self.accelerator = accelerator
        self.parts: dict[str, list[Tensor]] = {}

    def add(self, **tensors: Tensor) -> int:
        if self.accelerator is not None:
            tensors = self.accelerator.gather_for_metrics(tensors)
        for key, value in tensors.items():
            self.parts.setdefault(key, []).append(value.detach().cpu())
        return len(next(iter(tensors.values())))

    def cat(self, key: str) -> Tensor:
        return torch.cat(self.parts[key]) if key in self.parts else torch.empty(0)


def _device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def evaluate(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    multilabel: bool = False,
    topk: Sequence[int] = (1, 5),
    attention: bool = True,
    attention_method: str = "pixel",
    attention_max_samples: int | None = None,
    layers: tuple[str, str] | None = None,
    accelerator: Any | None = None,
    max_batches: int | None = None,
    **loss_options: Any,
) -> dict[str, float]:
    """Classification and attention metrics of ``model`` on ``loader``.

    The model runs in eval mode (its previous mode is restored). Where attention metrics are
    on, the logits come from the same forward as the attention terms, so a batch costs one
    forward plus one batched gradient to the inner layer.

    Args:
        model: a timm classifier (an Accelerate-prepared model is fine; pass the unwrapped
            one to keep DDP out of evaluation).
        loader: batches of ``(images B x C x H x W, targets)`` (or dicts with ``image`` and
            ``label``); moved to the model's device unless ``accelerator`` prepared them.
        multilabel: targets are ``B x C`` multi-hot: report ``mAP``/``roc_auc``, else ``top{k}``.
        topk: the ``k`` of the top-k accuracies.
        attention: also compute ``siou_inner``, ``siou_last``, ``consistency`` (see
            ``attention_metrics``).
        attention_method: the attention map of those metrics (``pixel``, ``channel``, ...).
        attention_max_samples: compute the attention metrics on the first samples only.
        layers: ``(inner, last)`` module names; default from the layer registry.
        accelerator: gathers across processes with ``gather_for_metrics``.
        max_batches: stop after this many batches.
        **loss_options: other ``AttentionLossConfig`` fields (``normalize``, ``sigma``, ...).

    Returns:
        ``top1``/``top5`` (or ``mAP``/``roc_auc``), ``loss``, ``num_samples`` and, with
        ``attention``, ``siou_inner``, ``siou_last``, ``consistency``, ``attention_samples``.
    """
    gathered, attention_parts = _loop(
        model,
        loader,
        multilabel=multilabel,
        attention_method=attention_method if attention else None,
        attention_max_samples=attention_max_samples,
        layers=layers,
        accelerator=accelerator,
        max_batches=max_batches,
        classification=True,
        loss_options=loss_options,
    )
    logits, targets = gathered.cat("logits"), gathered.cat("targets")
    metrics = classification_metrics(logits, targets, multilabel=multilabel, topk=topk)
    metrics["num_samples"] = int(logits.shape[0])
    if attention:
        metrics.update(_reduce_attention(attention_parts, attention_max_samples))
    return metrics


def _loop(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    multilabel: bool,
    attention_method: str | None,
    attention_max_samples: int | None,
    layers: tuple[str, str] | None,
    accelerator: Any | None,
    max_batches: int | None,
    classification: bool,
    loss_options: dict[str, Any],
) -> tuple[_Gather, _Gather]:
    """One pass: logits/targets (``classification``) and per-sample attention terms."""
    from .losses import DiscriminativeAttentionLoss

    criterion = None
    if attention_method is not None:
        criterion = DiscriminativeAttentionLoss(
            model,
            method=attention_method,
            multilabel=multilabel,
            grad_mode="detached",
            layers=layers,
            **loss_options,
        )
    was_training = model.training
    model.eval()
    gathered, attention_parts = _Gather(accelerator), _Gather(accelerator)
    attention_seen = 0
    device = _device(model)
    try:
        for index, batch in enumerate(loader):
            if max_batches is not None and index >= max_batches:
                break
            wants_attention = criterion is not None and (
                attention_max_samples is None or attention_seen < attention_max_samples
            )
            if not (wants_attention or classification):
                break  # every process sees the same gathered counts: they stop together
            x, y = _split_batch(batch)
            if accelerator is None:
                x, y = x.to(device), y.to(device)
            if wants_attention:
                terms = criterion.terms(x, y)
                logits = terms.logits.detach()
                attention_seen += attention_parts.add(
                    siou_inner=terms.siou_inner.detach().float(),
                    siou_last=terms.siou_last.detach().float(),
                    consistency=terms.consistency.detach().float(),
                    valid=terms.valid,
                    confusing=terms.confusing,
                    zero_maps=terms.zero_maps.flatten(0, 1).T,  # B x 4
                )
            else:
                with torch.no_grad():
                    logits = model(x)
            if classification:
                gathered.add(logits=logits.float(), targets=y)
    finally:
        model.train(was_training)
    return gathered, attention_parts


def _reduce_attention(parts: _Gather, limit: int | None) -> dict[str, float]:
    valid = parts.cat("valid").bool()
    if limit is not None:
        valid = valid[:limit]
    out: dict[str, float] = {}
    for key in ("siou_inner", "siou_last", "consistency"):
        values = parts.cat(key)[: len(valid)][valid]
        out[key] = values.double().mean().item() if values.numel() else math.nan
    out["attention_samples"] = int(valid.sum())
    return out


def attention_metrics(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    method: str = "pixel",
    multilabel: bool = False,
    layers: tuple[str, str] | None = None,
    accelerator: Any | None = None,
    max_samples: int | None = None,
    **loss_options: Any,
) -> dict[str, float]:
    """Attention separability and consistency of ``model`` on ``loader`` (eval mode).

    For each sample, the target class ``T`` (its label, or the present classes) and the
    confusing class (highest-scoring other / absent class) are mapped at the inner and last
    layers, exactly as in training but with the class gradients detached (METHOD.md):

    * ``siou_inner`` / ``siou_last``: mean soft IoU (Eq. 6) between the two maps, in [0, 1];
      lower = better separated;
    * ``consistency``: mean consistency loss ``L_ac`` (Eq. 8): ``alpha`` minus the share of the
      inner target map inside the last layer's mask; lower = more consistent;
    * ``attention_samples``: samples counted (multi-label samples with no present or no
      absent class have no confusing pair and are left out).
    """
    _, parts = _loop(
        model,
        loader,
        multilabel=multilabel,
        attention_method=method,
        attention_max_samples=max_samples,
        layers=layers,
        accelerator=accelerator,
        max_batches=None,
        classification=False,
        loss_options=loss_options,
    )
    return _reduce_attention(parts, max_samples)


ZERO_MAP_KEYS = (
    "zero_target_inner",
    "zero_confusing_inner",
    "zero_target_last",
    "zero_confusing_last",
)


def _means(values: dict[str, Tensor], rows: Tensor) -> dict[str, float]:
    return {key: v[rows].double().mean().item() for key, v in values.items()}


def attention_report(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    method: str = "pixel",
    class_names: Sequence[str] | None = None,
    layers: tuple[str, str] | None = None,
    top_pairs: int = 5,
    accelerator: Any | None = None,
    **loss_options: Any,
) -> dict[str, Any]:
    """Attention and accuracy of a single-label classifier on ``loader``: overall, per class and
    for the most-confused class pairs (what ``discatt metrics`` prints and saves as JSON).

    Every sample is scored once, in eval mode, as by ``attention_metrics`` (same terms, class
    gradients detached). Besides the soft IoUs and the consistency, the ``zero_*`` shares count
    maps that are all zero after the ReLU (before normalisation): a confusing-class map switched
    off everywhere is the trivial way to a low soft IoU.

    Returns:
        ``{"method", "num_samples", "overall": {...}, "per_class": [...], "confused_pairs":
        [...]}``. ``overall`` and each ``per_class`` row hold ``top1``, ``siou_inner``,
        ``siou_last``, ``consistency`` and the four ``zero_*`` shares (rows also ``class``,
        ``name``, ``samples``); ``confused_pairs`` lists the ``top_pairs`` (true, predicted)
        pairs with the most errors: ``errors``, their share of the true class and the mean
        ``siou_last`` of the true class's samples whose confusing class is the predicted one.
    """
    gathered, parts = _loop(
        model,
        loader,
        multilabel=False,
        attention_method=method,
        attention_max_samples=None,
        layers=layers,
        accelerator=accelerator,
        max_batches=None,
        classification=True,
        loss_options=loss_options,
    )
    logits, targets = gathered.cat("logits"), gathered.cat("targets").long()
    n = len(targets)
    if targets.ndim != 1:
        raise ValueError("attention_report needs single-label targets (class indices)")
    num_classes = logits.shape[1]
    names = list(class_names) if class_names is not None else [str(c) for c in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names given for a model with {num_classes} classes")
    predicted = logits.argmax(dim=1)
    zero = parts.cat("zero_maps").bool()
    values = {
        "top1": (predicted == targets).double(),
        **{key: parts.cat(key) for key in ("siou_inner", "siou_last", "consistency")},
        **{key: zero[:, i].double() for i, key in enumerate(ZERO_MAP_KEYS)},
    }
    everyone = torch.ones(n, dtype=torch.bool)
    per_class = []
    for c in range(num_classes):
        rows = targets == c
        if rows.any():
            row = {"class": c, "name": names[c], "samples": int(rows.sum())}
            per_class.append({**row, **_means(values, rows)})
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    confusion.index_put_((targets, predicted), torch.ones(n, dtype=torch.long), accumulate=True)
    confusion.fill_diagonal_(0)
    confusing = parts.cat("confusing").long()
    pairs = []
    errors, order = confusion.flatten().sort(descending=True, stable=True)
    for count, index in zip(errors.tolist(), order.tolist(), strict=True):
        if count == 0 or len(pairs) == top_pairs:
            break
        true, pred = divmod(index, num_classes)
        rows = (targets == true) & (confusing == pred)
        pairs.append(
            {
                "true": true,
                "predicted": pred,
                "names": [names[true], names[pred]],
                "errors": count,
                "error_rate": count / int((targets == true).sum()),
                "siou_last": values["siou_last"][rows].double().mean().item(),
            }
        )
    return {
        "method": method,
        "num_samples": n,
        "overall": _means(values, everyone),
        "per_class": per_class,
        "confused_pairs": pairs,
    }
