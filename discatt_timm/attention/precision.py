"""Mixed precision for the attention terms: what stays in float32; the fp16 class-gradient scale.

Under autocast the model's forward and backward run in bfloat16 or float16. Two parts of an
attention term lose their signal there and are kept out of it (issue 13, measured in
``tests/test_precision.py``):

- **The maps and the losses on them.** A map is a sum over channels of products of features
  and class gradients of both signs; it is then normalised by its maximum and thresholded at
  ``sigma * max`` with a slope of ``omega = 100``. A matmul under autocast rounds that sum to
  8 bits again, so the maps are combined, normalised and compared in float32 with autocast off
  (``full_precision``). The features and class gradients themselves stay as the model made
  them: only the small ``K x B x h x w`` map tensors cost float32 time.
- **fp16 class gradients.** The gradient of one class score at an inner layer can lie below
  float16's normal range (6.1e-5) and flush to zero. As in PyTorch's AMP recipe for gradient
  penalties, the cotangents are multiplied by a constant (``FP16_CLASS_GRAD_SCALE``) and the
  gradients divided by it again in float32, which is exact for every map method. The loss
  built on them is scaled by the trainer's ``GradScaler`` like any other. bfloat16 has
  float32's range and needs no scale.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor

__all__ = [
    "FP16_CLASS_GRAD_SCALE",
    "as_float32",
    "autocast_enabled",
    "class_grad_scale",
    "full_precision",
    "low_precision",
]

# 2**10: class gradients down to 6e-8 land in float16's normal range, overflow needs >= 64.
FP16_CLASS_GRAD_SCALE = 1024.0


def autocast_enabled(device_type: str) -> bool:
    """Whether autocast is on for ``device_type`` (any torch >= 2.1)."""
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4: no device argument
        if device_type == "cpu":
            return torch.is_autocast_cpu_enabled()
        return torch.is_autocast_enabled()


def full_precision(device_type: str) -> contextlib.AbstractContextManager:
    """A block where autocast is off on ``device_type`` (a no-op when it is not on)."""
    if autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def as_float32(x: Tensor) -> Tensor:
    """``x`` in float32, or as is when it already has float32's precision or more."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def low_precision(x: Tensor, model: torch.nn.Module) -> bool:
    """Whether a forward of ``model`` on ``x`` runs in bf16/fp16 (autocast or half weights)."""
    if autocast_enabled(x.device.type):
        return True
    param = next(iter(model.parameters()), None)
    return param is not None and param.dtype in (torch.bfloat16, torch.float16)


def class_grad_scale(features: list[Tensor]) -> float:
    """The factor for the class cotangents: ``FP16_CLASS_GRAD_SCALE`` if a backward to one of
    ``features`` runs in float16, else 1."""
    return FP16_CLASS_GRAD_SCALE if any(f.dtype == torch.float16 for f in features) else 1.0
