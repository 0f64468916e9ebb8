"""Gradient attention maps: a method registry, feature capture and the user-facing maps."""

from ..layers import unwrap_model
from . import methods  # noqa: F401  (registers the four methods)
from .base import AttentionMethod, create_attention, list_attentions, register_attention
from .gradients import capture_features, class_cotangents, class_gradients
from .maps import attention_maps, minmax_scale, resize_maps

__all__ = [
    "AttentionMethod",
    "attention_maps",
    "capture_features",
    "class_cotangents",
    "class_gradients",
    "create_attention",
    "list_attentions",
    "minmax_scale",
    "register_attention",
    "resize_maps",
    "unwrap_model",
]
