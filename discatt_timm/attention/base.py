"""The one abstraction every attention map shares, and the registry of named methods.

A gradient attention map is built from a feature map ``F`` (``... x D x H x W``) and the
gradient ``G = dY_c / dF`` of a class score (same shape, or ``... x D x 1 x 1`` when it is
constant over space, as for a pooled-linear head). A method only says how ``F`` and ``G`` are
combined into one ``... x H x W`` map; the base applies the ReLU. Leading dimensions broadcast,
so ``K`` classes of a batch are mapped at once: ``F: B x D x H x W`` with ``G: K x B x D x H x W``
gives ``K x B x H x W``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, TypeVar

import torch
from torch import Tensor

from ..errors import UserError

__all__ = ["AttentionMethod", "create_attention", "list_attentions", "register_attention"]


class AttentionMethod:
    """Base of all attention methods: override ``weights`` (channel methods) or ``combine``.

    Calling an instance returns ``ReLU(combine(feats, grads))``, differentiable in both inputs,
    on their device and dtype. It never runs a backward, changes a mode or touches ``.grad``.
    """

    name: ClassVar[str] = ""

    def weights(self, feats: Tensor, grads: Tensor) -> Tensor:
        """Channel importances ``... x D`` from feats ``... x D x H x W`` and grads."""
        raise NotImplementedError

    def combine(self, feats: Tensor, grads: Tensor) -> Tensor:
        """The map before the ReLU: ``sum_k a_k F_k`` for channel methods, ``... x H x W``."""
        alpha = self.weights(feats, grads)  # ... x D
        spatial = feats.shape[-2:]
        # (... x 1 x D) @ (... x D x HW): a batched matmul, no D x H x W product tensor.
        out = torch.matmul(alpha.unsqueeze(-2), feats.flatten(-2)).squeeze(-2)
        return out.unflatten(-1, spatial)

    def __call__(self, feats: Tensor, grads: Tensor) -> Tensor:
        return torch.relu(self.combine(feats, grads))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


_METHODS: dict[str, type[AttentionMethod]] = {}
_M = TypeVar("_M", bound=type[AttentionMethod])


def register_attention(name: str) -> Callable[[_M], _M]:
    """Class decorator: make an ``AttentionMethod`` subclass available as ``name``."""

    def wrap(cls: _M) -> _M:
        if name in _METHODS:
            raise ValueError(f"attention method {name!r} is already registered")
        cls.name = name
        _METHODS[name] = cls
        return cls

    return wrap


def list_attentions() -> list[str]:
    """Names accepted by ``create_attention`` (and by every ``method=`` argument)."""
    return sorted(_METHODS)


def create_attention(name: str | AttentionMethod) -> AttentionMethod:
    """An instance of the method registered as ``name`` (an instance is passed through)."""
    if isinstance(name, AttentionMethod):
        return name
    if name not in _METHODS:
        raise UserError(
            f"unknown attention method {name!r}; choose one of {', '.join(list_attentions())}"
        )
    return _METHODS[name]()
