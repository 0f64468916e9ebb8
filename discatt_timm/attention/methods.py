"""The four attention maps of METHOD.md: Grad-CAM, Grad-CAM++, channel-wise A_ch, pixel-wise A_px.

Each is one override of ``AttentionMethod``. Shapes: feats ``... x D x H x W``; grads the same or
``... x D x 1 x 1`` (spatially constant); result ``... x H x W``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import AttentionMethod, register_attention

__all__ = ["ChannelAttention", "GradCAM", "GradCAMPlusPlus", "PixelAttention"]


@register_attention("gradcam")
class GradCAM(AttentionMethod):
    """Grad-CAM (paper Eq. 1-2): ``a_k = mean_ij G_kij``."""

    def weights(self, feats: Tensor, grads: Tensor) -> Tensor:
        return grads.mean(dim=(-2, -1))


@register_attention("channel")
class ChannelAttention(AttentionMethod):
    """A_ch (Eq. 3-4): ``a_k = mean_ij ReLU(G_kij)``, positive gradients only."""

    def weights(self, feats: Tensor, grads: Tensor) -> Tensor:
        return torch.relu(grads).mean(dim=(-2, -1))


@register_attention("gradcampp")
class GradCAMPlusPlus(AttentionMethod):
    """Grad-CAM++ closed form from first-order gradients, as its authors and pytorch-grad-cam.

    ``a_ij = G^2 / (2 G^2 + sum_ij(F) G^3 + eps)`` (zero where ``G == 0``),
    ``w_k = sum_ij ReLU(G) a_ij``.
    """

    eps: float = 1e-6

    def weights(self, feats: Tensor, grads: Tensor) -> Tensor:
        # A spatially constant gradient still has a per-pixel alpha: expand before summing.
        batch = torch.broadcast_shapes(grads.shape[:-2], feats.shape[:-2])
        grads = grads.expand(*batch, *feats.shape[-2:])
        g2 = grads * grads
        sum_feats = feats.sum(dim=(-2, -1), keepdim=True)
        alpha = g2 / (2 * g2 + sum_feats * g2 * grads + self.eps)
        alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
        return (torch.relu(grads) * alpha).sum(dim=(-2, -1))


@register_attention("pixel")
class PixelAttention(AttentionMethod):
    """A_px (Eq. 5): ``mean_k G_k * F_k``, one weight per pixel and channel."""

    def combine(self, feats: Tensor, grads: Tensor) -> Tensor:
        if grads.shape[-2:] == (1, 1):
            # Constant over space: mean_k g_k F_k is a matmul (the CAM of a pooled-linear head).
            weights = grads.flatten(-3) / feats.shape[-3]
            out = torch.matmul(weights.unsqueeze(-2), feats.flatten(-2)).squeeze(-2)
            return out.unflatten(-1, feats.shape[-2:])
        return (grads * feats).mean(dim=-3)
