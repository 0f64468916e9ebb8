"""discatt-timm: discriminative attention supervision for timm CNNs.

The pipeline reads top to bottom: ``layers`` (which feature maps) -> ``attention`` (class
attention maps on them) -> ``losses`` (soft IoU and consistency, Eq. 6-9 of the paper).
Importing the package registers the CIFAR ResNets into timm.
"""

from . import models  # noqa: F401  (registers cifar_resnet* with timm)
from .attention import AttentionMethod, attention_maps, create_attention, list_attentions
from .layers import LayerPair, register_layers, resolve_layers
from .losses import (
    AttentionLossOutput,
    AttentionTerms,
    DiscriminativeAttentionLoss,
    attention_mask,
    consistency_loss,
    soft_iou,
)
from .zoo import register_variants as _register_variants

_register_variants()  # the zoo's ARCH.discatt_DATASET tags (timm.list_pretrained('*discatt*'))

__version__ = "0.1.0"

__all__ = [
    "AttentionLossOutput",
    "AttentionTerms",
    "AttentionMethod",
    "DiscriminativeAttentionLoss",
    "LayerPair",
    "attention_mask",
    "attention_maps",
    "consistency_loss",
    "create_attention",
    "list_attentions",
    "register_layers",
    "resolve_layers",
    "soft_iou",
    "__version__",
]
