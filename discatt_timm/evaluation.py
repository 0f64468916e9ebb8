"""Dataset loops: ``evaluate`` (classification + attention metrics) and ``attention_report``.

The trainer, ``discatt metrics``, the zoo check and the study share them. Attention terms come
from ``DiscriminativeAttentionLoss(..., grad_mode='detached').terms`` in eval mode: the same
maths as training, the class gradients detached (METHOD.md):

* ``siou_inner`` / ``siou_last``: mean soft IoU (Eq. 6) between the target and confusing class
  maps, in [0, 1]; lower = better separated;
* ``consistency``: mean ``L_ac`` (Eq. 8): ``alpha`` minus the share of the inner target map
  inside the last layer's mask; lower = more consistent;
* ``attention_samples``: samples counted (multi-label samples with no present or no absent
  class have no confusing pair and are left out).

Both are gather-safe: with an ``accelerator`` the per-sample values of every process are
collected with ``gather_for_metrics`` (duplicated padding samples dropped) before reducing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .data import eval_data, named_data
from .localisation import LOCALISATION_KEYS, localisation_terms
from .losses import DiscriminativeAttentionLoss
from .metrics import classification_metrics

__all__ = ["ZERO_MAP_KEYS", "attention_report", "evaluate", "measure"]


def _split_batch(batch: Any) -> tuple[Tensor, Tensor, Tensor | None]:
    """``(images, targets, boxes or None)`` of a batch (pairs, triples or dicts)."""
    if isinstance(batch, list | tuple) and len(batch) >= 2:
        return batch[0], batch[1], batch[2] if len(batch) > 2 else None
    if isinstance(batch, dict):
        x = batch.get("image", batch.get("pixel_values"))
        y = batch.get("label", batch.get("labels"))
        if x is not None and y is not None:
            return x, y, batch.get("boxes")
    raise TypeError(
        "batches must be (images, targets[, boxes]) or dicts with 'image'/'pixel_values' and "
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
        attention: also compute ``siou_inner``, ``siou_last``, ``consistency`` (module
            docstring).
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


def _attention_values(
    criterion: DiscriminativeAttentionLoss,
    terms: Any,
    x: Tensor,
    y: Tensor,
    boxes: Tensor | None,
) -> dict[str, Tensor]:
    """Per-sample values of one batch: the loss terms and, with boxes, the localisation."""
    values = {
        "siou_inner": terms.siou_inner.detach().float(),
        "siou_last": terms.siou_last.detach().float(),
        "consistency": terms.consistency.detach().float(),
        "valid": terms.valid,
        "confusing": terms.confusing,
        "zero_maps": terms.zero_maps.flatten(0, 1).T,  # B x 4
    }
    if boxes is not None:
        located = localisation_terms(
            criterion.model,
            x,
            y,
            terms.confusing,
            boxes,
            method=criterion.attention,
            layers=(criterion.layers.inner, criterion.layers.last),
        )
        values.update({key: value.float() for key, value in located.items()})
    return values


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
            x, y, boxes = _split_batch(batch)
            if accelerator is None:
                x, y = x.to(device), y.to(device)
                boxes = boxes.to(device) if boxes is not None else None
            if wants_attention:
                terms = criterion.terms(x, y)
                logits = terms.logits.detach()
                attention_seen += attention_parts.add(
                    **_attention_values(criterion, terms, x, y, boxes)
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
    if LOCALISATION_KEYS[0] in parts.parts:  # data with boxes: nan-means over (sample, class)
        for key in LOCALISATION_KEYS:
            values = parts.cat(key)[: len(valid)][valid].double()
            out[key] = values.nanmean().item() if values.numel() else math.nan
        pointing = parts.cat(LOCALISATION_KEYS[0])[: len(valid)][valid]
        out["localisation_samples"] = int((~torch.isnan(pointing)).sum())
    return out


ZERO_MAP_KEYS = (
    "zero_target_inner",
    "zero_confusing_inner",
    "zero_target_last",
    "zero_confusing_last",
)


def _means(values: dict[str, Tensor], rows: Tensor) -> dict[str, float]:
    return {key: v[rows].double().nanmean().item() for key, v in values.items()}


def _confused_pairs(
    targets: Tensor,
    predicted: Tensor,
    confusing: Tensor,
    siou_last: Tensor,
    names: Sequence[str],
    top_pairs: int,
) -> list[dict[str, Any]]:
    """The ``top_pairs`` (true, predicted) pairs with the most errors, all ``N`` tensors in."""
    num_classes, n = len(names), len(targets)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    confusion.index_put_((targets, predicted), torch.ones(n, dtype=torch.long), accumulate=True)
    confusion.fill_diagonal_(0)
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
                "siou_last": siou_last[rows].double().mean().item(),
            }
        )
    return pairs


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

    Every sample is scored once, in eval mode, as by ``evaluate`` (same terms, class gradients
    detached). Besides the soft IoUs and the consistency, the ``zero_*`` shares count
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
    for key in LOCALISATION_KEYS if LOCALISATION_KEYS[0] in parts.parts else ():
        values[key] = parts.cat(key).nanmean(dim=1)  # the target's box: one class per sample
    everyone = torch.ones(n, dtype=torch.bool)
    per_class = []
    for c in range(num_classes):
        rows = targets == c
        if rows.any():
            row = {"class": c, "name": names[c], "samples": int(rows.sum())}
            per_class.append({**row, **_means(values, rows)})
    confusing = parts.cat("confusing").long()
    pairs = _confused_pairs(targets, predicted, confusing, values["siou_last"], names, top_pairs)
    return {
        "method": method,
        "num_samples": n,
        "overall": _means(values, everyone),
        "per_class": per_class,
        "confused_pairs": pairs,
    }


def measure(
    model: nn.Module,
    data: str,
    *,
    split: str = "test",
    method: str = "pixel",
    layers: tuple[str, str] | None = None,
    max_samples: int | None = None,
    batch_size: int = 64,
    top_pairs: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """``attention_report`` of ``model`` on one split of ``data`` (``discatt metrics``).

    ``data``: ``fashion_mnist``, ``fashion_mnist_clutter``, ``fashion_mnist_multi``, an image
    folder or a Hub dataset id (``data.named_data``), read with the model's eval transform;
    ``max_samples`` takes a seeded random subset. Multi-label data gives the overall metrics of
    ``evaluate`` (``multilabel: True``, no per-class rows or pairs).
    """
    bundle = eval_data(named_data(data, split=split, max_samples=max_samples, seed=seed), model)
    loader = torch.utils.data.DataLoader(bundle.eval, batch_size=batch_size, shuffle=False)
    if bundle.multilabel:  # mAP and the attention terms, localisation per present class
        metrics = evaluate(model, loader, multilabel=True, attention_method=method, layers=layers)
        report = {"method": method, "num_samples": metrics["num_samples"], "multilabel": True}
        report.update(overall=metrics, per_class=[], confused_pairs=[])
    else:
        report = attention_report(
            model,
            loader,
            method=method,
            class_names=bundle.class_names,
            layers=layers,
            top_pairs=top_pairs,
        )
    return {"data": data, "split": split, **report}
