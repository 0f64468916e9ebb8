"""The one colour map of the package: ``colorize`` maps in [0, 1] to RGB, and ``overlay``.

matplotlib's colour maps when matplotlib is installed (``pip install discatt-timm[explain]``);
without it, ``jet`` still works from its published breakpoints (the same piecewise-linear
segments as matplotlib's, sampled into the same 256-entry table), so the trainer's attention
grid never needs the optional dependency.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from ..errors import UserError

__all__ = ["colorize", "jet_table", "overlay"]

# matplotlib's ``jet`` segment data: (position, value) breakpoints per channel.
_JET = (
    ((0.0, 0.0), (0.35, 0.0), (0.66, 1.0), (0.89, 1.0), (1.0, 0.5)),
    ((0.0, 0.0), (0.125, 0.0), (0.375, 1.0), (0.64, 1.0), (0.91, 0.0), (1.0, 0.0)),
    ((0.0, 0.5), (0.11, 1.0), (0.34, 1.0), (0.65, 0.0), (1.0, 0.0)),
)


def jet_table(n: int = 256) -> Tensor:
    """``n x 3`` RGB table of the jet colour map, built without matplotlib."""
    x = torch.linspace(0, 1, n, dtype=torch.float64)
    channels = []
    for points in _JET:
        xs = torch.tensor([p for p, _ in points], dtype=torch.float64)
        ys = torch.tensor([v for _, v in points], dtype=torch.float64)
        right = torch.searchsorted(xs, x, right=True).clamp(1, len(xs) - 1)
        x0, x1, y0, y1 = xs[right - 1], xs[right], ys[right - 1], ys[right]
        channels.append(y0 + (x - x0) / (x1 - x0) * (y1 - y0))
    return torch.stack(channels, dim=1).clamp(0, 1).float()


@functools.cache
def _lut(cmap: str) -> Tensor:
    """``N x 3`` float RGB lookup table of a colour map (matplotlib's when installed)."""
    try:
        import matplotlib
    except ImportError:
        if cmap == "jet":
            return jet_table()
        raise UserError(
            f"colour map {cmap!r} needs matplotlib: pip install matplotlib (or "
            "discatt-timm[explain]); jet works without it"
        ) from None
    if cmap not in matplotlib.colormaps:
        raise UserError(f"unknown colour map {cmap!r}; choose a matplotlib one, e.g. jet, turbo")
    colours = matplotlib.colormaps[cmap]
    return torch.tensor(colours(list(range(colours.N))), dtype=torch.float32)[:, :3]


def colorize(maps: Tensor, cmap: str = "jet") -> Tensor:
    """Colour ``... x H x W`` maps in [0, 1]: ``... x 3 x H x W`` RGB in [0, 1]."""
    lut = _lut(cmap).to(maps.device)
    index = (maps.clamp(0, 1) * (lut.shape[0] - 1)).round().long()
    return lut[index].movedim(-1, -3)


def overlay(image: Tensor, maps: Tensor, *, cmap: str = "jet", alpha: float = 0.5) -> Tensor:
    """Blend ``K x H x W`` maps over a ``3 x H x W`` image (both in [0, 1]): ``K x 3 x H x W``."""
    return (1 - alpha) * image.unsqueeze(0) + alpha * colorize(maps, cmap)
