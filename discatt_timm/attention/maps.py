"""``attention_maps``: class attention maps of any timm model for users (viewing, metrics)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import resolve_layer, unwrap_model
from .base import AttentionMethod, create_attention
from .gradients import capture_features, class_cotangents, class_gradients, folds_classes_well
from .precision import as_float32, full_precision

__all__ = ["attention_maps", "minmax_scale", "norm_stats_kept", "resize_maps"]


@contextmanager
def norm_stats_kept(model: nn.Module) -> Iterator[None]:
    """Restore the running statistics of train-mode batch norms after the block: a map's
    forward must not move them (the caller's model is left as found)."""
    norms = [
        m
        for m in unwrap_model(model).modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats
    ]
    saved = [
        [m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()]
        for m in norms
    ]
    try:
        yield
    finally:
        with torch.no_grad():  # through .data: no version bump, so no graph that saved
            for module, (mean, var, count) in zip(norms, saved, strict=True):  # them breaks
                module.running_mean.data.copy_(mean)
                module.running_var.data.copy_(var)
                module.num_batches_tracked.data.copy_(count)


def minmax_scale(maps: Tensor) -> Tensor:
    """Scale each ``H x W`` map of ``... x H x W`` to [0, 1]; a constant map becomes zeros.

    Exact at any scale (no additive eps), so maps of tiny magnitude still reach 1.
    """
    flat = maps.flatten(-2)
    low = flat.amin(dim=-1, keepdim=True)
    span = flat.amax(dim=-1, keepdim=True) - low
    scaled = (flat - low) / torch.where(span > 0, span, torch.ones_like(span))
    return scaled.view_as(maps)


def resize_maps(maps: Tensor, size: int | tuple[int, int]) -> Tensor:
    """Bilinear resize of ``... x H x W`` maps to ``size`` (as ``cv2.resize`` INTER_LINEAR)."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    lead = maps.shape[:-2]
    out = F.interpolate(maps.reshape(-1, 1, *maps.shape[-2:]), size=size, mode="bilinear")
    return out.reshape(*lead, *size)


def attention_maps(
    model: nn.Module,
    x: Tensor,
    targets: Tensor,
    *,
    method: str | AttentionMethod = "pixel",
    layer: str = "last",
    size: int | tuple[int, int] | None = None,
) -> Tensor:
    """Class attention maps of ``model`` for input ``x`` (``B x C x H x W``).

    Args:
        model: a timm CNN or vision transformer (or any module with a named feature layer
            and logits output; token and channels-last layers are folded, see ``layouts``).
        x: input batch on the model's device.
        targets: ``(B,)`` class indices -> ``B x h x w``; ``(B, K)`` indices -> ``B x K x h x w``
            (all K from one forward and one batched backward); ``(B, C)`` multi-hot float ->
            ``B x h x w``, the map of the summed scores of the present classes.
        method: ``'pixel'`` (A_px), ``'channel'`` (A_ch), ``'gradcam'``, ``'gradcampp'``.
        layer: ``'last'``, ``'inner'`` (from the layer registry) or a module name.
        size: if given, maps are resized (bilinear) to it and min-max scaled per map to [0, 1],
            as Grad-CAM tools show them; else the raw, non-negative maps at the layer's
            resolution ``h x w``.

    Returns:
        Detached maps on the model's device. The model's mode, its ``requires_grad`` flags and
        its parameters' ``.grad`` are left as found; no hook outlives the call.
    """
    if torch.is_inference_mode_enabled():
        raise RuntimeError("attention_maps needs autograd: call it outside torch.inference_mode()")
    if x.ndim != 4 or x.shape[0] == 0:
        raise ValueError(f"x must be a non-empty B x C x H x W batch, got shape {tuple(x.shape)}")
    in_chans = getattr(unwrap_model(model), "in_chans", None)
    if isinstance(in_chans, int) and x.shape[1] != in_chans:
        raise ValueError(f"x has {x.shape[1]} channels; the model takes {in_chans}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x holds NaN or infinite values: their maps would be NaN")
    if size is not None and min((size,) if isinstance(size, int) else tuple(size)) < 1:
        raise ValueError(f"size must be positive, got {size}")
    if targets.shape[0] != x.shape[0]:
        raise ValueError(
            f"targets has {targets.shape[0]} rows but x has a batch of {x.shape[0]}; "
            "give one target row per image"
        )
    attention = create_attention(method)
    name = resolve_layer(model, layer)
    # Autograd only from the mapped layer on: nothing below it needs a gradient.
    with (
        norm_stats_kept(model),
        torch.enable_grad(),
        capture_features(model, [name], graph_below=False) as capture,
    ):
        logits = model(x)
    if not isinstance(logits, Tensor) or logits.ndim != 2:
        raise ValueError("the model must return B x num_classes logits")
    cotangents = class_cotangents(targets.to(logits.device), logits.shape[1], logits.dtype)
    analytic = [name] if capture.pooled_linear(name, logits) else []
    with torch.enable_grad():
        (grads,) = class_gradients(
            logits,
            capture,
            [name],
            cotangents,
            create_graph=False,
            analytic=analytic,
            fold_classes=folds_classes_well(model),
        )
    with full_precision(logits.device.type):  # combined in float32, as the loss does
        maps = attention(as_float32(capture[name].detach()), as_float32(grads.detach()))
    if size is not None:
        maps = minmax_scale(resize_maps(maps, size))
    maps = maps.transpose(0, 1)  # B x K x h x w
    keep_k = targets.ndim == 2 and not (targets.is_floating_point() or targets.dtype == torch.bool)
    return maps if keep_k else maps.squeeze(1)
