"""A naive, independent implementation of the discriminative attention loss (single label).

The yardstick for ``DiscriminativeAttentionLoss``: the same maths (METHOD.md) written the
obvious way, sharing no code with the package's fast path. Forward hooks record the two
feature maps; each class gradient is its own ``torch.autograd.grad`` of the batch-summed class
score (one call per class and per layer, autograd at the last layer too: no analytic head);
maps and losses are written out from their formulas. ``tests/test_speed_equivalence.py``
checks that the package gives the same loss and parameter gradients, so speed work never
changes the maths; ``benchmarks/step_overhead.py`` times it beside the package. It lives in
the package so that both import it the same way (it is never used by the fast path).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["naive_attention_loss"]


def _attention(method: str, feats: Tensor, grads: Tensor) -> Tensor:
    """``B x H x W`` map from feats and grads ``B x D x H x W`` (METHOD.md's table)."""
    if method == "pixel":
        return torch.relu((grads * feats).mean(dim=1))
    if method == "channel":
        weights = torch.relu(grads).mean(dim=(2, 3))
    elif method == "gradcam":
        weights = grads.mean(dim=(2, 3))
    else:
        raise ValueError(f"the naive reference knows pixel, channel and gradcam, not {method!r}")
    return torch.relu((weights[:, :, None, None] * feats).sum(dim=1))


def naive_attention_loss(
    model: nn.Module,
    x: Tensor,
    targets: Tensor,
    *,
    inner: str,
    last: str,
    method: str = "pixel",
    create_graph: bool = True,
    weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
    sigma: float = 0.55,
    omega: float = 100.0,
    alpha: float = 1.0,
    eps: float = 1e-8,
    reshape: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """Eq. 9 for single-label ``targets`` (``B``), default settings (max-normalised, detached mask).

    ``create_graph=False`` gives the detached mode (class gradients as constants). ``reshape``
    turns a layer's raw output, and its gradient, into ``B x D x H x W`` (pytorch-grad-cam's
    ``reshape_transform``, e.g. for a ViT's tokens); the gradient is taken w.r.t. the raw output.
    """
    fold = reshape if reshape is not None else (lambda t: t)
    modules = dict(model.named_modules())
    feats: dict[str, Tensor] = {}
    handles = [
        modules[name].register_forward_hook(
            lambda module, args, output, name=name: feats.__setitem__(name, output)
        )
        for name in (inner, last)
    ]
    try:
        logits = model(x)
    finally:
        for handle in handles:
            handle.remove()
    cls = F.cross_entropy(logits, targets)
    confusing = logits.detach().scatter(1, targets[:, None], float("-inf")).argmax(dim=1)

    maps: dict[tuple[str, str], Tensor] = {}
    for layer in (inner, last):
        for role, classes in (("target", targets), ("confusing", confusing)):
            score = logits.gather(1, classes[:, None]).sum()  # batch sum, as METHOD.md
            (grads,) = torch.autograd.grad(
                score, feats[layer], retain_graph=True, create_graph=create_graph
            )
            amap = _attention(method, fold(feats[layer]), fold(grads))
            maps[layer, role] = amap / (amap.amax(dim=(1, 2), keepdim=True) + eps)

    last_t, last_c = maps[last, "target"], maps[last, "confusing"]
    inner_t, inner_c = maps[inner, "target"], maps[inner, "confusing"]
    mask = torch.sigmoid(omega * (last_t - sigma * last_t.amax(dim=(1, 2), keepdim=True)))
    mask = mask.detach()
    mask_inner = F.interpolate(mask[:, None], size=inner_t.shape[-2:], mode="bilinear")[:, 0]

    def siou(a: Tensor, b: Tensor, m: Tensor) -> Tensor:
        both = (torch.minimum(a, b) * m).sum(dim=(1, 2))
        return (2 * both / ((a + b).sum(dim=(1, 2)) + eps)).mean()

    siou_inner = siou(inner_t, inner_c, mask_inner)
    siou_last = siou(last_t, last_c, mask)
    inside = (inner_t * mask_inner).sum(dim=(1, 2)) / (inner_t.sum(dim=(1, 2)) + eps)
    consistency = (alpha - inside).mean()
    l_i, l_l, l_ac = weights
    return cls + l_i * siou_inner + l_l * siou_last + l_ac * consistency
