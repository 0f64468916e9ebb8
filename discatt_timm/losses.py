"""The discriminative attention losses (paper Eq. 6-9, as fixed by METHOD.md).

Pure tensor functions first (``normalize_maps``, ``attention_mask``, ``soft_iou``,
``consistency_loss``: maps ``B x H x W`` in, per-sample ``B`` values out, NaN-free for all-zero
maps), then ``DiscriminativeAttentionLoss``, which runs one forward of a model, builds the target
and confusing-class maps at the inner and last layers and returns the total loss of Eq. 9.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import capture_features, class_gradients, create_attention
from .attention.gradients import attention_math_path, folds_classes_well
from .attention.precision import as_float32, full_precision, low_precision
from .config import AttentionLossConfig
from .config.attention import LOW_PRECISION_REASON, pixel_maps_unsafe_in_low_precision
from .errors import UserError
from .layers import LayerPair, resolve_layers, unwrap_model
from .subset import attention_on_part

__all__ = [
    "AttentionLossOutput",
    "AttentionTerms",
    "ClassificationLoss",
    "DiscriminativeAttentionLoss",
    "attention_mask",
    "classification_loss",
    "consistency_loss",
    "normalize_maps",
    "soft_iou",
    "spatial_softmax",
]


def normalize_maps(maps: Tensor, mode: str = "max", eps: float = 1e-8) -> Tensor:
    """Normalise each ``H x W`` map of ``... x H x W`` ("1/Z" of Eq. 6-8).

    ``max``/``sum``: divide the (non-negative) map by its max/sum plus ``eps``; ``none``: as is;
    ``softmax``: ``spatial_softmax`` (pass the map before its ReLU).
    """
    if mode == "none":
        return maps
    if mode == "softmax":
        return spatial_softmax(maps, eps=eps)
    if mode == "max":
        scale = maps.amax(dim=(-2, -1), keepdim=True)
    elif mode == "sum":
        scale = maps.sum(dim=(-2, -1), keepdim=True)
    else:
        raise ValueError(f"normalize must be one of max, sum, softmax, none, got {mode!r}")
    return maps / (scale + eps)


def spatial_softmax(maps: Tensor, *, eps: float = 1e-8) -> Tensor:
    """Softmax over the ``H x W`` pixels of each standardised map ``... x H x W``.

    ``softmax((A - mean A) / sqrt(var A + eps^2))``: invariant to the map's scale and offset
    (as max-normalisation is to its scale), positive everywhere and summing to 1, so a map can
    never vanish; a constant map becomes uniform. Meant for maps before the ReLU.
    """
    flat = maps.flatten(-2)
    var, mean = torch.var_mean(flat, dim=-1, correction=0, keepdim=True)
    z = (flat - mean) / torch.sqrt(var + eps * eps)
    return z.softmax(dim=-1).unflatten(-1, maps.shape[-2:])


def attention_mask(last_target: Tensor, *, sigma: float = 0.55, omega: float = 100.0) -> Tensor:
    """Soft target-region mask of Eq. 7: ``sigmoid(omega * (A - sigma * max A))``, ``B x H x W``."""
    threshold = sigma * last_target.amax(dim=(-2, -1), keepdim=True)
    return torch.sigmoid(omega * (last_target - threshold))


def soft_iou(
    target: Tensor, confusing: Tensor, mask: Tensor | None = None, *, eps: float = 1e-8
) -> Tensor:
    """Soft IoU of Eq. 6 per sample: ``2 sum(min(A_T, A_C) M) / (sum(A_T + A_C) + eps)``.

    Args:
        target, confusing: non-negative maps ``B x H x W``.
        mask: ``B x H x W`` weights in [0, 1]; all ones when None.

    Returns:
        ``B`` values in [0, 1]; 0 for two all-zero maps.
    """
    overlap = torch.minimum(target, confusing)
    if mask is not None:
        overlap = overlap * mask
    union = (target + confusing).sum(dim=(-2, -1))
    return 2 * overlap.sum(dim=(-2, -1)) / (union + eps)


def consistency_loss(
    inner_target: Tensor, mask: Tensor, *, alpha: float = 1.0, eps: float = 1e-8
) -> Tensor:
    """Cross-layer consistency of Eq. 8 per sample: ``alpha - sum(A_in M) / (sum(A_in) + eps)``.

    ``inner_target`` and ``mask`` are ``B x H x W`` at the inner layer's resolution. An all-zero
    inner map gives ``alpha`` (a constant: no gradient, no NaN).
    """
    inside = (inner_target * mask).sum(dim=(-2, -1))
    return alpha - inside / (inner_target.sum(dim=(-2, -1)) + eps)


def classification_loss(logits: Tensor, targets: Tensor, *, multilabel: bool = False) -> Tensor:
    """``L_cls`` of Eq. 9: cross-entropy, or multi-label soft margin for ``B x C`` multi-hot."""
    if multilabel:
        return F.multilabel_soft_margin_loss(logits, targets.to(logits.dtype))
    return F.cross_entropy(logits, targets)


class AttentionTerms(NamedTuple):
    """Per-sample terms of one forward (``B`` each), before the batch reduction of Eq. 9."""

    logits: Tensor  # B x C
    cls: Tensor  # batch-mean classification loss
    siou_inner: Tensor  # B
    siou_last: Tensor  # B
    consistency: Tensor  # B
    valid: Tensor  # B bool: has a target and a confusing class
    confusing: Tensor  # B confusing class index
    zero_maps: Tensor  # 2 (inner, last) x 2 (target, confusing) x B bool: ReLU map all zero


class AttentionLossOutput(NamedTuple):
    """Result of ``DiscriminativeAttentionLoss``: the total and its parts (batch means)."""

    loss: Tensor  # Eq. 9, ready for .backward()
    logits: Tensor  # B x C, from the single forward
    cls: Tensor  # cross-entropy or multi-label soft margin
    siou_inner: Tensor
    siou_last: Tensor
    consistency: Tensor


def _refuse_hidden_layers(model: nn.Module) -> None:
    """Gradient checkpointing and ``torch.compile`` hide what the loss needs: refused by name."""
    if hasattr(model, "_orig_mod"):
        raise ValueError(
            "the model is torch.compile'd: the attention loss needs a double backward through "
            "eager code; pass the model before torch.compile (or drop the dynamo config)"
        )
    if getattr(unwrap_model(model), "grad_checkpointing", False):
        raise ValueError(
            "the model uses gradient checkpointing (set_grad_checkpointing): its blocks' "
            "outputs, where the maps are taken, are recomputed out of sight; call "
            "model.set_grad_checkpointing(False) for attention supervision"
        )


class ClassificationLoss:
    """The baseline criterion: same call and output as ``DiscriminativeAttentionLoss``.

    ``loss`` is cross-entropy (or multi-label soft margin); the attention parts are zero.
    """

    def __init__(self, model: nn.Module, multilabel: bool = False) -> None:
        self.model = model
        self.multilabel = multilabel

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """The classification loss of ``logits``."""
        return classification_loss(logits, targets, multilabel=self.multilabel)

    def __call__(
        self, x: Tensor, targets: Tensor, *, epoch: float | None = None, step: int | None = None
    ) -> AttentionLossOutput:
        logits = self.model(x)
        cls = classification_loss(logits, targets, multilabel=self.multilabel)
        zero = cls.detach().new_zeros(())
        return AttentionLossOutput(cls, logits, cls, zero, zero, zero)


class DiscriminativeAttentionLoss:
    """Classification loss plus attention separability and consistency (Eq. 9).

    ``loss = L_cls + l_i sIoU_inner + l_l sIoU_last + l_ac L_ac``, from ONE forward: the target
    class ``T`` (the label, or the sum of present classes when multi-label) and the confusing
    class (highest-scoring other/absent class, from detached logits) are mapped at the inner and
    last layers. In ``exact`` mode the class gradients keep their graph, so ``loss.backward()``
    runs the double backward; the last layer's gradient is analytic (``W_c / HW``) when the head
    is global average pooling + linear, and the inner layer's gradients of both classes are
    taken w.r.t. the feature map only (``class_gradients``).

    BatchNorm in train mode couples samples: like every public implementation, the class
    gradient is that of the batch sum ``sum_b Y[b, c_b]``, which differs from the per-sample
    gradient through BatchNorm's batch statistics (it is exact in eval mode).

    Args:
        model: a timm model, possibly wrapped (DDP, ``torch.compile``); called for the forward.
        config: the settings as one ``AttentionLossConfig`` (what the trainer passes), or
        **options: the same settings as keywords (``method``, ``multilabel``, ``weights``,
            ``grad_mode``, ``normalize``, ``sigma``, ``omega``, ``alpha``, ``detach_mask``,
            ``eps``, ``warmup_epochs``; see ``AttentionLossConfig``), not both.
        layers: a ``LayerPair`` or ``(inner, last)`` module names; default from the registry.
    """

    def __init__(
        self,
        model: nn.Module,
        config: AttentionLossConfig | None = None,
        *,
        layers: LayerPair | tuple[str, str] | None = None,
        **options: Any,
    ) -> None:
        if config is not None and not isinstance(config, AttentionLossConfig):
            raise TypeError(
                f"config must be an AttentionLossConfig, got {type(config).__name__} "
                "(pass the method as a keyword: method='pixel')"
            )
        if config is not None and options:
            raise TypeError(
                f"give the settings as config= or as keywords, not both (got config and "
                f"{', '.join(sorted(options))})"
            )
        self.config = config if config is not None else AttentionLossConfig(**options)
        _refuse_hidden_layers(model)
        self.model = model
        self.attention = create_attention(self.config.method)
        inner, last = layers if layers is not None else (None, None)
        self.layers = resolve_layers(unwrap_model(model), inner=inner, last=last)
        self._pooled_linear: dict[bool, bool] = {}  # by train mode, checked once each
        self._plain = ClassificationLoss(model, multilabel=self.config.multilabel)  # warm-up
        self.calls = 0  # the ``every`` cycle's position when no step is passed

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config}, layers={self.layers})"

    def _check_targets(self, targets: Tensor, logits: Tensor) -> None:
        """Shapes and dtypes always; the class range on CPU targets (a check on GPU targets
        would synchronise every step; there PyTorch's own device assert reports them)."""
        batch, num_classes = logits.shape
        if self.config.multilabel:
            if targets.shape != (batch, num_classes):
                raise ValueError(
                    f"multilabel targets must be multi-hot of shape ({batch}, {num_classes}), "
                    f"got {tuple(targets.shape)}"
                )
        elif (
            targets.shape != (batch,) or targets.is_floating_point() or targets.dtype == torch.bool
        ):
            raise ValueError(
                f"targets must be ({batch},) integer class indices, got shape "
                f"{tuple(targets.shape)} and dtype {targets.dtype} (multilabel=True for multi-hot)"
            )
        elif batch and targets.device.type == "cpu":  # free here; on a GPU it would sync
            low, high = (int(v) for v in torch.aminmax(targets))
            if low < 0 or high >= num_classes:
                raise ValueError(
                    f"target class indices must lie in [0, {num_classes - 1}] for a model with "
                    f"{num_classes} classes, got min {low}, max {high}"
                )

    def _check_precision(self, x: Tensor) -> None:
        """Refuse the settings whose attention gradient bf16/fp16 loses (see ``precision``)."""
        cfg = self.config
        if pixel_maps_unsafe_in_low_precision(cfg.method, cfg.normalize) and low_precision(
            x, unwrap_model(self.model)
        ):
            raise UserError(
                f"normalize={cfg.normalize!r} with method='pixel' under bf16/fp16: "
                f"{LOW_PRECISION_REASON}; use normalize='softmax', method='channel', or fp32"
            )

    def terms(self, x: Tensor, targets: Tensor) -> AttentionTerms:
        """One forward and the per-sample attention terms (no batch reduction).

        Evaluation and metrics use this with ``grad_mode='detached'`` (same values, no double
        backward); ``__call__`` reduces it to the training loss.
        """
        cfg = self.config
        inner, last = self.layers.inner, self.layers.last
        with (
            torch.enable_grad(),
            attention_math_path(self.model, enabled=cfg.grad_mode == "exact"),
            capture_features(self.model, [inner, last]) as capture,
        ):
            logits = self.model(x)
        self._check_targets(targets, logits)
        if not cfg.multilabel:
            targets = targets.long()  # uint8/int32 labels: cross-entropy and one_hot need int64
        scores = logits.detach()

        cls = classification_loss(logits, targets, multilabel=cfg.multilabel)
        if cfg.multilabel:
            present = targets > 0.5
            valid = present.any(dim=1) & ~present.all(dim=1)
            target_row = present.to(logits.dtype)
            confusing = scores.masked_fill(present, float("-inf")).argmax(dim=1)
        else:
            valid = torch.ones_like(targets, dtype=torch.bool)
            target_row = F.one_hot(targets, logits.shape[1]).to(logits.dtype)
            confusing = scores.scatter(1, targets[:, None], float("-inf")).argmax(dim=1)
        confusing_row = F.one_hot(confusing, logits.shape[1]).to(logits.dtype)
        cotangents = torch.stack([target_row, confusing_row])  # 2 x B x C

        training = unwrap_model(self.model).training
        if training not in self._pooled_linear:
            self._pooled_linear[training] = capture.pooled_linear(last, logits)
        analytic = [last] if self._pooled_linear[training] else []
        with torch.enable_grad():
            grad_inner, grad_last = class_gradients(
                logits,
                capture,
                [inner, last],
                cotangents,
                create_graph=cfg.grad_mode == "exact",
                analytic=analytic,
                fold_classes=folds_classes_well(self.model),
            )
        # Maps, masks and losses in float32 with autocast off (attention/precision.py).
        with full_precision(logits.device.type):
            siou_inner, siou_last, consistency, zero_maps = self._map_terms(
                as_float32(capture[inner]),
                as_float32(capture[last]),
                as_float32(grad_inner),
                as_float32(grad_last),
            )
        return AttentionTerms(
            logits=logits,
            cls=cls,
            siou_inner=siou_inner,
            siou_last=siou_last,
            consistency=consistency,
            valid=valid,
            confusing=confusing,
            zero_maps=zero_maps,
        )

    def _map_terms(
        self, feats_inner: Tensor, feats_last: Tensor, grad_inner: Tensor, grad_last: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """sIoU inner, sIoU last, consistency (``B`` each) and the zero-map flags
        (``2 x 2 x B``) from the 2 x B x h x w maps (target, confusing) at both layers.

        Softmax normalisation takes the map before its ReLU (it cannot vanish)."""
        cfg = self.config
        attend = self.attention.combine if cfg.normalize == "softmax" else self.attention
        maps_inner = attend(feats_inner, grad_inner)
        maps_last = attend(feats_last, grad_last)
        zero_maps = torch.stack(
            [(m.detach().amax(dim=(-2, -1)) <= 0) for m in (maps_inner, maps_last)]
        )
        maps_inner = normalize_maps(maps_inner, cfg.normalize, cfg.eps)
        maps_last = normalize_maps(maps_last, cfg.normalize, cfg.eps)

        mask = attention_mask(maps_last[0], sigma=cfg.sigma, omega=cfg.omega)
        if cfg.detach_mask:
            mask = mask.detach()
        mask_inner = F.interpolate(mask[:, None], size=maps_inner.shape[-2:], mode="bilinear")[:, 0]
        return (
            soft_iou(maps_inner[0], maps_inner[1], mask_inner, eps=cfg.eps),
            soft_iou(maps_last[0], maps_last[1], mask, eps=cfg.eps),
            consistency_loss(maps_inner[0], mask_inner, alpha=cfg.alpha, eps=cfg.eps),
            zero_maps,
        )

    def __call__(
        self, x: Tensor, targets: Tensor, *, epoch: float | None = None, step: int | None = None
    ) -> AttentionLossOutput:
        """Eq. 9 for a batch. ``epoch`` (fractional, from the trainer) applies ``warmup_epochs``:
        before it only the classification loss is computed and the attention parts are 0.
        ``step`` (the trainer's optimizer step) places the batch in the ``every`` cycle; without
        it the criterion counts its own calls. Off-cycle steps are plain classification steps;
        on-cycle steps weigh the attention terms ``every`` times."""
        if epoch is not None and epoch < self.config.warmup_epochs:
            return self._plain(x, targets)
        every = self.config.every
        if step is None:
            step, self.calls = self.calls, self.calls + 1
        if step % every:
            return self._plain(x, targets)
        self._check_precision(x)
        if self.config.batch_fraction < 1.0:  # subset.py: the terms on part of the batch
            terms, logits, cls = attention_on_part(self, x, targets)
        else:
            terms = self.terms(x, targets)
            logits, cls = terms.logits, terms.cls
        # Samples without a target/confusing pair (multi-label edge cases) contribute nothing.
        weight = terms.valid.to(terms.siou_last.dtype)
        count = weight.sum().clamp_min(1.0)
        siou_inner, siou_last, consistency = (
            (v * weight).sum() / count
            for v in (terms.siou_inner, terms.siou_last, terms.consistency)
        )
        l_i, l_l, l_ac = (every * w for w in self.config.weights)
        loss = cls + l_i * siou_inner + l_l * siou_last + l_ac * consistency
        return AttentionLossOutput(loss, logits, cls, siou_inner, siou_last, consistency)
