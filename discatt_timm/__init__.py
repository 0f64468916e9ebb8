"""discatt-timm: discriminative attention supervision for timm models.

The package reads in the order a training step's data takes (``docs/architecture.md``):
``config`` (settings) -> ``layers`` (which feature maps) -> ``attention`` (class attention maps
on them) -> ``losses`` (soft IoU and consistency, Eq. 6-9 of the paper) -> ``training`` ->
``evaluation`` -> ``explain`` -> ``hub``. Importing the package registers the CIFAR ResNets
and the zoo's pretrained tags into timm.
"""

from . import families, models  # noqa: F401  (registers layer families, cifar_resnet*)
from .attention import AttentionMethod, attention_maps, create_attention, list_attentions
from .config import AttentionLossConfig, TrainConfig
from .errors import UserError
from .explain import explain
from .layers import LayerPair, register_layers, resolve_layers
from .loading import load_model
from .losses import (
    AttentionLossOutput,
    AttentionTerms,
    DiscriminativeAttentionLoss,
    attention_mask,
    consistency_loss,
    soft_iou,
)
from .training import TrainResult, train
from .zoo import register_variants as _register_variants

_register_variants()  # the zoo's ARCH.discatt_DATASET tags (timm.list_pretrained('*discatt*'))

__version__ = "0.1.0"

__all__ = [
    "AttentionLossConfig",
    "AttentionLossOutput",
    "AttentionMethod",
    "AttentionTerms",
    "DiscriminativeAttentionLoss",
    "LayerPair",
    "TrainConfig",
    "TrainResult",
    "UserError",
    "attention_mask",
    "attention_maps",
    "consistency_loss",
    "create_attention",
    "explain",
    "list_attentions",
    "load_model",
    "register_layers",
    "resolve_layers",
    "soft_iou",
    "train",
    "__version__",
]
