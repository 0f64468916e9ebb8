"""Layouts: how a layer's output becomes the ``B x D x H x W`` feature map that maps are made of.

A CNN's layers give channels-first maps already (``NCHW``). Two other layouts occur in timm:

- ``NHWC``: channels-last stage outputs (Swin, SwinV2: ``output_fmt="NHWC"``); the map is a
  permuted view, no copy.
- ``tokens``: a vision transformer's ``B x N x D`` sequence. Its first ``num_prefix_tokens``
  tokens (class, distillation and register tokens) are dropped and the rest folded onto the
  patch grid: ``patch_embed.grid_size``, or the size of this forward's patch embedding when the
  model was built with ``dynamic_img_size``.

``fold`` runs inside the capture hook: it returns the map and the output the module passes on,
rebuilt from that map, so that the logits depend on the map and class gradients can be taken
with respect to it. Anything else (a ``B x N x D`` output of a model whose layout is unknown) is
refused in one line naming ``register_layers(..., layout=...)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from .errors import UserError

__all__ = ["LAYOUTS", "fold", "infer_layout", "patch_grid_hook"]

LAYOUTS = ("NCHW", "NHWC", "tokens")
Rebuild = Callable[[Tensor], Tensor]


def infer_layout(model: nn.Module) -> str:
    """The layout of ``model``'s feature layers when no registry entry names one."""
    fmt = getattr(model, "output_fmt", None)
    if isinstance(fmt, str) and fmt.upper() == "NHWC":
        return "NHWC"
    if isinstance(getattr(model, "num_prefix_tokens", None), int) and hasattr(model, "patch_embed"):
        return "tokens"
    return "NCHW"


def patch_grid_hook(grid: list[tuple[int, int]]) -> Callable[..., None]:
    """A forward hook for ``patch_embed`` that records this forward's patch grid (H, W) when
    it is known from the output (``dynamic_img_size``: a ``B x H x W x D`` output)."""

    def hook(module: nn.Module, args: tuple, output: Tensor) -> None:
        if isinstance(output, Tensor) and output.ndim == 4:
            grid[:] = [(int(output.shape[1]), int(output.shape[2]))]

    return hook


def _grid_size(model: nn.Module, patches: int, seen: list[tuple[int, int]]) -> tuple[int, int]:
    size = seen[0] if seen else getattr(getattr(model, "patch_embed", None), "grid_size", None)
    if size is None or int(size[0]) * int(size[1]) != patches:
        raise UserError(
            f"{patches} patch tokens do not fill the patch grid {size}; build the model with "
            "dynamic_img_size=True for other image sizes, or give its layout with "
            "register_layers(..., layout=...)"
        )
    return int(size[0]), int(size[1])


def fold(
    output: Tensor, layout: str, model: nn.Module, name: str, grid: list[tuple[int, int]]
) -> tuple[Tensor, Tensor | None]:
    """``(map, replacement)``: the ``B x D x H x W`` map of ``output`` and the output the module
    passes on instead (``None``: ``output`` itself is the map)."""
    if output.ndim not in (3, 4):
        raise UserError(
            f"layer {name!r} gives no B x C x H x W feature map (its output has shape "
            f"{tuple(output.shape)}); choose a stage or block (last, inner, or a stage name)"
        )
    if layout == "NCHW":
        if output.ndim != 4:
            raise UserError(
                f"layer {name!r} gives a {output.ndim}-d output of shape {tuple(output.shape)}, "
                "not a B x D x H x W map; give its layout with register_layers(..., "
                f"layout=...) (one of {', '.join(LAYOUTS)})"
            )
        return output, None
    if layout == "NHWC":
        if output.ndim != 4:
            raise UserError(f"layer {name!r} is not B x H x W x D: shape {tuple(output.shape)}")
        grid_map = output.permute(0, 3, 1, 2)
        return grid_map, grid_map.permute(0, 2, 3, 1)
    if output.ndim != 3:
        raise UserError(f"layer {name!r} is not B x N x D tokens: shape {tuple(output.shape)}")
    prefix = int(getattr(model, "num_prefix_tokens", 0))
    batch, tokens, dim = output.shape
    height, width = _grid_size(model, tokens - prefix, grid)
    grid_map = output[:, prefix:].transpose(1, 2).reshape(batch, dim, height, width)
    rebuilt = torch.cat([output[:, :prefix], grid_map.flatten(2).transpose(1, 2)], dim=1)
    return grid_map, rebuilt
