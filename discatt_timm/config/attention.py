"""``AttentionLossConfig``: the settings of the attention losses (METHOD.md; the paper's defaults).

Errors are ``ValueError`` naming the field and what is accepted (a recipe turns them into
``RecipeError`` naming the recipe key). Imports nothing from this package.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["AttentionLossConfig"]

GRAD_MODES = ("exact", "detached")
NORMALIZATIONS = ("max", "sum", "softmax", "none")
SELECTIONS = ("margin", "random")
# Pixel maps divided by their max or sum under bf16/fp16: refused (tests/test_precision.py).
LOW_PRECISION_UNSAFE = ("max", "sum")
LOW_PRECISION_REASON = (
    "a nearly vanished pixel map divided by its maximum carries most of the gradient, and "
    "bf16/fp16 cannot resolve it (gradient cosine 0.35 with fp32's, measured)"
)


def pixel_maps_unsafe_in_low_precision(method: str, normalize: str) -> bool:
    """True for the settings whose attention gradient mixed precision loses."""
    return method == "pixel" and normalize in LOW_PRECISION_UNSAFE


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


@dataclass(frozen=True)
class AttentionLossConfig:
    """Settings of the discriminative attention loss (METHOD.md; defaults are the paper's).

    Attributes:
        method: attention map, one of the registered names (``pixel`` = A_px, ``channel`` = A_ch,
            ``gradcam``, ``gradcampp``); checked against the registry by the loss.
        multilabel: targets are ``B x C`` multi-hot; classification loss is multi-label soft margin.
        weights: ``(l_i, l_l, l_ac)``: weights of sIoU_inner, sIoU_last and L_ac in Eq. 9.
        grad_mode: ``exact`` (double backward through the class gradients) or ``detached``
            (class gradients treated as constants: cheaper, an approximation).
        normalize: per-sample map normalisation before mask and losses: ``max`` (A / max A,
            the paper's "1/Z"), ``sum`` (A / sum A), ``none``, or ``softmax``: a spatial softmax
            of the standardised map BEFORE the ReLU (zero mean, unit variance per map). Unlike
            the others it cannot vanish (it always sums to 1), so the soft IoU cannot be
            lowered by switching a map off, only by moving its mass (issue 7's study).
        sigma: mask threshold as a fraction of the max of the last-layer target map (Eq. 7).
        omega: mask sharpness (Eq. 7).
        alpha: the constant of the consistency loss (Eq. 8).
        detach_mask: stop gradients through the mask (Eq. 7).
        eps: added to every denominator.
        warmup_epochs: epochs of classification-only training before the attention terms
            switch on at full weight (the trainer passes the fractional epoch; the terms are
            not computed before then). 0: on from the first step, as the paper.
        every: compute the attention terms on one step in ``every``, with their weights
            multiplied by ``every`` (StyleGAN2's lazy regularisation); the other steps are plain
            classification steps (no feature capture, no class gradients). Steps are the
            trainer's optimizer steps (so accumulation and resume keep the cycle), or the
            criterion's own calls. 1: every step, as the paper.
        batch_fraction: the attention terms on ``ceil(batch_fraction * B)`` samples of each
            batch, the classification loss on all (``subset.py``; 1.0: all, as the paper).
        select: which samples: ``margin`` (smallest target-minus-confusing logit margin) or
            ``random``.
    """

    method: str = "pixel"
    multilabel: bool = False
    weights: tuple[float, float, float] = (1.0, 1.0, 1.0)
    grad_mode: str = "exact"
    normalize: str = "max"
    sigma: float = 0.55
    omega: float = 100.0
    alpha: float = 1.0
    detach_mask: bool = True
    eps: float = 1e-8
    warmup_epochs: float = 0.0
    every: int = 1
    batch_fraction: float = 1.0
    select: str = "margin"

    def __post_init__(self) -> None:
        weights = tuple(float(w) for w in self.weights)
        _require(
            len(weights) == 3 and all(math.isfinite(w) and w >= 0 for w in weights),
            "weights must be three finite non-negative numbers (l_i, l_l, l_ac), "
            f"got {self.weights}",
        )
        object.__setattr__(self, "weights", weights)
        _require(
            self.grad_mode in GRAD_MODES,
            f"grad_mode must be one of {', '.join(GRAD_MODES)}, got {self.grad_mode!r}",
        )
        _require(
            self.normalize in NORMALIZATIONS,
            f"normalize must be one of {', '.join(NORMALIZATIONS)}, got {self.normalize!r}",
        )
        _require(0.0 < self.sigma <= 1.0, f"sigma must lie in (0, 1], got {self.sigma}")
        _require(self.omega > 0, f"omega must be > 0, got {self.omega}")
        _require(math.isfinite(self.alpha), f"alpha must be finite, got {self.alpha}")
        _require(self.eps > 0, f"eps must be > 0, got {self.eps}")
        _require(
            math.isfinite(self.warmup_epochs) and self.warmup_epochs >= 0,
            f"warmup_epochs must be a finite number >= 0, got {self.warmup_epochs}",
        )
        _require(
            isinstance(self.every, int) and not isinstance(self.every, bool) and self.every >= 1,
            f"every must be an integer >= 1, got {self.every!r}",
        )
        _require(
            isinstance(self.batch_fraction, int | float)
            and not isinstance(self.batch_fraction, bool)
            and 0.0 < self.batch_fraction <= 1.0,
            f"batch_fraction must be a number in (0, 1], got {self.batch_fraction!r}",
        )
        _require(
            self.select in SELECTIONS,
            f"select must be one of {', '.join(SELECTIONS)}, got {self.select!r}",
        )
