"""A small picture of what a run learned: test images and their target-class attention maps.

``save_attention_grid`` writes one PNG: a column per image (caption ``label / prediction``),
rows for the input, the inner-layer map and the last-layer map of the target class (label, or
the present classes when multi-label), computed with ``discatt_timm.attention_maps`` and
overlaid with the jet colour map (``colors.colorize``). Richer panels: ``panels``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..attention import attention_maps
from ..layers import resolve_layers, unwrap_model
from .colors import colorize

__all__ = ["save_attention_grid"]


def _samples(dataset: Any, n: int, device: torch.device) -> tuple[Tensor, Tensor, bool]:
    """The first ``n`` samples: ``n x C x H x W`` images, targets, whether multi-label."""
    samples = [dataset[i] for i in range(n)]
    x = torch.stack([s[0] for s in samples]).to(device)
    first = samples[0][1]
    multilabel = isinstance(first, Tensor) and first.ndim == 1
    targets = (
        torch.stack([s[1] for s in samples]).float()
        if multilabel
        else torch.tensor([int(s[1]) for s in samples])
    )
    return x, targets.to(device), multilabel


def _target_maps(
    model: nn.Module,
    x: Tensor,
    targets: Tensor,
    *,
    method: str,
    layers: tuple[str, str] | None,
    cell: int,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Eval-mode logits and the target class's ``n x cell x cell`` maps per layer (the model's
    mode is restored)."""
    pair = resolve_layers(unwrap_model(model), *(layers or (None, None)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            predicted = model(x).float()
        rows = {
            f"{role}: {name}": attention_maps(
                model, x, targets, method=method, layer=name, size=cell
            )
            for role, name in (("inner", pair.inner), ("last", pair.last))
        }
    finally:
        model.train(was_training)
    return predicted, rows


def save_attention_grid(
    model: nn.Module,
    dataset: Any,
    path: str | Path,
    *,
    class_names: Sequence[str],
    mean: Sequence[float],
    std: Sequence[float],
    num_images: int = 8,
    method: str = "pixel",
    layers: tuple[str, str] | None = None,
    cell: int = 112,
) -> Path:
    """Write the attention grid of the first ``num_images`` samples of ``dataset``.

    Args:
        model: the trained classifier (unwrapped); its mode is restored afterwards.
        dataset: yields ``(image C x H x W normalised, target)`` (an eval dataset).
        path: PNG file to write.
        class_names: names for the captions.
        mean, std: the normalisation to undo for display.
        num_images: columns of the grid.
        method: attention map (``pixel``, ``channel``, ``gradcam``, ``gradcampp``).
        layers: ``(inner, last)`` module names; default from the layer registry.
        cell: side of one cell in pixels.
    """
    from PIL import Image, ImageDraw

    n = min(num_images, len(dataset))
    if n == 0:
        raise ValueError("the dataset is empty: no image to draw")
    x, targets, multilabel = _samples(dataset, n, next(model.parameters()).device)
    predicted, rows = _target_maps(model, x, targets, method=method, layers=layers, cell=cell)

    mean_t = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
    images = (x.detach().float().cpu() * std_t + mean_t).clamp(0, 1)
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    images = F.interpolate(images, size=(cell, cell), mode="bilinear", align_corners=False)
    panels = [images] + [0.45 * images + 0.55 * colorize(maps.cpu()) for maps in rows.values()]

    caption_h, margin = 28, 96
    width, height = margin + n * cell, caption_h + len(panels) * cell
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 2), f"{method} maps", fill="black")
    names = dict(enumerate(class_names))  # a head wider than the data: unnamed classes
    for col in range(n):
        if multilabel:
            present = torch.nonzero(targets[col] > 0.5).flatten().tolist()
            label = "+".join(names.get(i, str(i)) for i in present) or "-"
        else:
            label = names.get(int(targets[col]), str(int(targets[col])))
        best = int(predicted[col].argmax())
        guess = names.get(best, str(best))
        left = margin + col * cell
        draw.text((left + 3, 2), label[:18], fill="black")
        draw.text((left + 3, 14), f"pred {guess}"[:18], fill="green" if guess == label else "red")
    for row, (name, panel) in enumerate(zip(["input", *rows], panels, strict=True)):
        top = caption_h + row * cell
        draw.text((4, top + cell // 2 - 6), name[:15], fill="black")
        pixels = (panel * 255).round().byte().permute(0, 2, 3, 1).numpy()
        for col in range(n):
            canvas.paste(Image.fromarray(pixels[col]), (margin + col * cell, top))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path
