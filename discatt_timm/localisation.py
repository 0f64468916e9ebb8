"""Does a map find the object? The pointing game and the energy inside a box.

``localisation_terms`` scores a model's maps on a batch with boxes (what ``evaluate`` and
``discatt metrics`` report for data with a ``boxes`` column); the other functions are pure.

Pure tensor functions of maps ``N x H x W`` (non-negative, at the input's resolution) and boxes
``N x 4`` ``(x0, y0, x1, y1)`` given as fractions of the image's width and height (so a box
needs no change when the image is resized). A pixel belongs to a box when its centre
``((j + 0.5) / W, (i + 0.5) / H)`` lies in ``[x0, x1) x [y0, y1)``.

* ``pointing_game``: the map's maximum falls inside the box (Zhang et al. 2016); an all-zero map
  points nowhere (a miss).
* ``box_energy``: the share of the map's mass inside the box (the "energy-based pointing game"
  of Score-CAM); an all-zero map has none inside.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import attention_maps, resize_maps
from .layers import resolve_layers, unwrap_model

__all__ = [
    "LOCALISATION_KEYS",
    "box_energy",
    "box_masks",
    "localisation_terms",
    "pointing_game",
]


def box_masks(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """``... x H x W`` boolean masks of ``... x 4`` fractional boxes on an ``H x W`` grid."""
    height, width = size
    ys = (torch.arange(height, device=boxes.device, dtype=torch.float64) + 0.5) / height
    xs = (torch.arange(width, device=boxes.device, dtype=torch.float64) + 0.5) / width
    b = boxes.to(torch.float64)[..., None, None]  # ... x 4 x 1 x 1
    x0, y0, x1, y1 = b[..., 0, :, :], b[..., 1, :, :], b[..., 2, :, :], b[..., 3, :, :]
    inside_x = (xs >= x0) & (xs < x1)  # ... x 1 x W
    inside_y = (ys[:, None] >= y0) & (ys[:, None] < y1)  # ... x H x 1
    return inside_x & inside_y


def _check(maps: Tensor, boxes: Tensor) -> None:
    if maps.ndim != 3 or boxes.shape != (maps.shape[0], 4):
        raise ValueError(
            f"maps must be N x H x W and boxes N x 4, got {tuple(maps.shape)} and "
            f"{tuple(boxes.shape)}"
        )


def pointing_game(maps: Tensor, boxes: Tensor) -> Tensor:
    """``N`` booleans: the maximum of each map lies inside its box (all-zero maps miss)."""
    _check(maps, boxes)
    height, width = maps.shape[-2:]
    flat = maps.flatten(1)
    peak = flat.argmax(dim=1)
    masks = box_masks(boxes, (height, width)).flatten(1)
    hit = masks.gather(1, peak[:, None])[:, 0]
    return hit & (flat.amax(dim=1) > 0)


def box_energy(maps: Tensor, boxes: Tensor) -> Tensor:
    """``N`` shares in [0, 1] of each map's mass inside its box (0 for an all-zero map)."""
    _check(maps, boxes)
    masks = box_masks(boxes, tuple(maps.shape[-2:])).to(maps.dtype)
    total = maps.sum(dim=(-2, -1))
    inside = (maps * masks).sum(dim=(-2, -1))
    return torch.where(total > 0, inside / torch.where(total > 0, total, 1), 0)


LOCALISATION_KEYS = tuple(
    f"{metric}_{layer}"
    for layer in ("inner", "last")
    for metric in ("pointing", "energy", "confusing_energy")
)


def localisation_terms(
    model: nn.Module,
    x: Tensor,
    targets: Tensor,
    confusing: Tensor,
    boxes: Tensor,
    *,
    method: str = "pixel",
    layers: tuple[str, str] | None = None,
) -> dict[str, Tensor]:
    """Localisation of ``model``'s maps on one batch, per (sample, class with a box).

    Args:
        model: the classifier, in the mode the caller chose (eval for metrics).
        x: ``B x C x H x W`` input.
        targets: ``B`` class indices, or ``B x K`` multi-hot (every present class is scored).
        confusing: ``B`` confusing class per sample (from ``DiscriminativeAttentionLoss.terms``).
        boxes: ``B x K x 4`` fractional boxes per class, NaN rows for classes without a box.
        method, layers: the attention map and ``(inner, last)`` (default: the registry).

    Returns:
        ``B x K`` tensors (NaN where the class is absent or has no box) for each of
        ``LOCALISATION_KEYS``: ``pointing_*`` (1.0 hit, 0.0 miss), ``energy_*`` (the class's
        map) and ``confusing_energy_*`` (the confusing class's map inside that class's box),
        from the raw maps (after the ReLU) upsampled bilinearly to ``H x W``.
    """
    batch, num = boxes.shape[:2]
    multilabel = targets.ndim == 2
    present = targets > 0.5 if multilabel else F.one_hot(targets, num).bool()
    pairs = (present & ~torch.isnan(boxes).any(dim=-1)).nonzero()  # P x 2 (sample, class)
    b, c = pairs[:, 0], pairs[:, 1]
    if multilabel:  # every class's map; the confusing one among them
        classes = torch.arange(num, device=x.device).expand(batch, num)
        own, other = c, confusing[b]
    else:  # the target's map and the confusing class's map
        classes = torch.stack([targets, confusing], dim=1)
        own, other = torch.zeros_like(b), torch.ones_like(b)
    pair = resolve_layers(unwrap_model(model), *(layers or (None, None)))
    out = {}
    for role, layer in (("inner", pair.inner), ("last", pair.last)):
        maps = attention_maps(model, x, classes, method=method, layer=layer)  # B x K' x h x w
        maps = resize_maps(maps, tuple(x.shape[-2:]))
        box = boxes[b, c]
        values = {
            "pointing": pointing_game(maps[b, own], box).to(maps.dtype),
            "energy": box_energy(maps[b, own], box),
            "confusing_energy": box_energy(maps[b, other], box),
        }
        for metric, value in values.items():
            table = torch.full((batch, num), float("nan"), dtype=maps.dtype, device=maps.device)
            table[b, c] = value
            out[f"{metric}_{role}"] = table
    return out
