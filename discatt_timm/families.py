"""Built-in layer entries: the inner and last layer of each backbone family (timm's names).

Registered on import (the package imports this module), after any user entry is looked up.

===========================  ==========================================  ========================
family                       inner                                       last
===========================  ==========================================  ========================
ResNet (``ResNet`` class:    ``layer3``                                  ``layer4``
resnet*, resnext*,
seresnet*, wide_resnet*,
resnet*d, ...)
ConvNeXt                     ``stages.2``                                ``stages.3``
EfficientNet (incl. mixnet,  ``feature_info`` module with reduction 16   ``bn2`` (conv_head ->
mnasnet, tf_*, ...)          (``blocks.4`` for efficientnet_b0)          bn2 + act)
MobileNetV3 (incl. lcnet,    ``feature_info`` module with reduction 16   last ``blocks.N`` (its
mobilenetv4, fbnetv3)                                                    ``conv_head`` runs after
                                                                         pooling)
GhostNet                     last block before the stride-32 blocks      last ``blocks.N``
RegNet                       ``s3``                                      ``s4``
VGG                          activation before the second-last MaxPool   activation before the
                                                                         last MaxPool
DenseNet                     ``features.denseblock3``                    ``features.norm5``
``cifar_resnet*``            ``layer2``                                  ``layer3``
ViT, DeiT (incl. distilled), ``blocks.{n-4}.norm1`` (tokens)             ``blocks.{n-1}.norm1``
``vit_*_reg*``, EVA, EVA-02                                              (tokens)
Swin, SwinV2                 ``layers.{n-2}`` (NHWC, stride 16)          ``norm`` (NHWC, stride 32)
===========================  ==========================================  ========================

Transformers: a ViT's tokens are one resolution (patch 14 or 16): "inner" is the input of the
block three before the last, and resizing the mask to it does nothing. The last layer is the
input of the last block's attention (``norm1``, as pytorch-grad-cam's tutorial), not the last
block's output: with ``global_pool='token'`` the patch tokens of that output never reach the
logits, so its map is zero. Prefix tokens (class, distillation, register) are dropped and the
patch tokens folded onto the grid (``layouts.py``). Swin's stages are channels-last.

GhostNet is listed because its ``feature_info`` stops early (``blocks.5`` / ``blocks.7``), so the
fallback would miss the final 960-channel conv that global pooling sees.

Resolution relation: for all built-in families and the fallback, the inner map has twice the
height and width of the last map (stride 16 vs 32; 2 vs 4 for ``cifar_resnet*``). Documented
exceptions:

* dilated models (``timm.create_model(..., output_stride=16 or 8)``): both maps share one
  resolution;
* inputs whose side is not a multiple of 32: the ratio is rounded by the strided convolutions
  (e.g. 7 vs 4 for 200 px).
"""

from __future__ import annotations

from collections.abc import Callable

from timm.models.convnext import ConvNeXt
from timm.models.densenet import DenseNet
from timm.models.efficientnet import EfficientNet
from timm.models.eva import Eva
from timm.models.ghostnet import GhostNet
from timm.models.mobilenetv3 import MobileNetV3
from timm.models.regnet import RegNet
from timm.models.resnet import ResNet
from timm.models.swin_transformer import SwinTransformer
from timm.models.swin_transformer_v2 import SwinTransformerV2
from timm.models.vgg import VGG
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from .layers import fallback_pair, feature_info_dicts, register_builtin

__all__: list[str] = []


def _fi_module(reduction: int) -> Callable[[nn.Module], str]:
    """Module of the last ``feature_info`` entry with ``reduction``, else the generic inner."""

    def rule(model: nn.Module) -> str:
        info = feature_info_dicts(model)
        hits = [d for d in info if d.get("reduction") == reduction]
        if hits:
            return str(hits[-1]["module"])
        pair = fallback_pair(info)
        if pair is None:
            raise ValueError(f"feature_info has no entry with reduction {reduction}")
        return pair[0]

    return rule


def _last_block(model: nn.Module) -> str:
    return f"blocks.{len(model.blocks) - 1}"


def _block_stride(block: nn.Module) -> int:
    strides = [1]
    for m in block.modules():
        if isinstance(m, nn.Conv2d | nn.MaxPool2d | nn.AvgPool2d):
            s = m.stride
            strides.append(int(s[0] if isinstance(s, tuple) else s))
    return max(strides)


def _ghostnet_inner(model: nn.Module) -> str:
    """Last block whose cumulative stride is below that of the final block."""
    total, reductions = 1, []
    for block in model.blocks:
        total *= _block_stride(block)
        reductions.append(total)
    idx = [i for i, r in enumerate(reductions) if r < reductions[-1]]
    if not idx:
        raise ValueError("no block with a smaller stride than the final block")
    return f"blocks.{idx[-1]}"


def _vgg_rule(which: int) -> Callable[[nn.Module], str]:
    """Activation right before the ``which``-th MaxPool from the end of ``features``."""

    def rule(model: nn.Module) -> str:
        pools = [i for i, m in enumerate(model.features) if isinstance(m, nn.MaxPool2d)]
        if len(pools) < 2 or pools[-2] == 0:
            raise ValueError("features has fewer than two MaxPool2d layers")
        return f"features.{pools[which] - 1}"

    return rule


def _token_block(back: int) -> Callable[[nn.Module], str]:
    """``norm1`` of the block ``back`` blocks before the last (0: the last block; the first
    block when there are fewer)."""

    def rule(model: nn.Module) -> str:
        return f"blocks.{max(0, len(model.blocks) - 1 - back)}.norm1"

    return rule


def _swin_inner(model: nn.Module) -> str:
    return f"layers.{len(model.layers) - 2}"


register_builtin(ResNet, "layer3", "layer4")
register_builtin(ConvNeXt, "stages.2", "stages.3")
register_builtin(EfficientNet, _fi_module(16), "bn2")
register_builtin(MobileNetV3, _fi_module(16), _last_block)
register_builtin(GhostNet, _ghostnet_inner, _last_block)
register_builtin(RegNet, "s3", "s4")
register_builtin(VGG, _vgg_rule(-2), _vgg_rule(-1))
register_builtin(DenseNet, "features.denseblock3", "features.norm5")
register_builtin("cifar_resnet*", "layer2", "layer3")
register_builtin(VisionTransformer, _token_block(3), _token_block(0), layout="tokens")
register_builtin(Eva, _token_block(3), _token_block(0), layout="tokens")
register_builtin(SwinTransformer, _swin_inner, "norm", layout="NHWC")
register_builtin(SwinTransformerV2, _swin_inner, "norm", layout="NHWC")
