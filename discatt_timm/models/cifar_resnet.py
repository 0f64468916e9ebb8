"""CIFAR-style ResNets (He et al. 2016, "Deep Residual Learning", Sec. 4.2) as timm models.

Depth 6n+2: a 3x3 stem with 16 channels, three stages of n BasicBlocks (16/32/64 channels at
strides 1/2/2, i.e. 32x32 -> 32x32 -> 16x16 -> 8x8 for CIFAR input), global average pooling and
a linear classifier. Importing this module registers ``cifar_resnet{20,32,44,56,110}`` with timm,
so ``timm.create_model('cifar_resnet110', num_classes=100)`` works.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import SelectAdaptivePool2d
from timm.models import (
    build_model_with_cfg,
    checkpoint_seq,
    generate_default_cfgs,
    register_model,
)

from .._timm_compat import feature_take_indices
from .cifar_blocks import SHORTCUTS, BasicBlock, ShortcutA, make_stage

__all__ = [
    "BasicBlock",
    "CifarResNet",
    "ShortcutA",
    "cifar_resnet20",
    "cifar_resnet32",
    "cifar_resnet44",
    "cifar_resnet56",
    "cifar_resnet110",
]

_STAGE_NAMES = ("layer1", "layer2", "layer3")


class CifarResNet(nn.Module):
    """CIFAR ResNet of depth 6n+2 (He et al. 2016, Sec. 4.2) with the timm model API.

    Layout: ``conv1`` (3x3, ``in_chans`` -> 16, stride 1) - ``bn1`` - ``act1``, then stages
    ``layer1``/``layer2``/``layer3`` of ``layers[i]`` BasicBlocks with 16/32/64 channels at
    strides 1/2/2, ``global_pool``, optional dropout and ``fc``. For a ``(B, C, 32, 32)`` input
    the stage outputs are ``(B, 16, 32, 32)``, ``(B, 32, 16, 16)`` and ``(B, 64, 8, 8)``.

    Shortcut options where a block changes the shape (first block of ``layer2``/``layer3``):

    * ``"A"`` (default, the paper's CIFAR choice): parameter-free identity that subsamples the
      input with stride 2 and zero-pads the new channels. ResNet-20 has 0.27M parameters and
      ResNet-110 about 1.7M, as in the paper.
    * ``"B"``: a learned 1x1 conv + BN projection (a few more parameters).

    Every other shortcut is the identity. All ReLUs are out of place, so the feature-map taps
    (``act1``, ``layer1``-``layer3``) are never modified after they are produced.

    Args:
        layers: Number of BasicBlocks in each of the three stages (n, n, n for depth 6n+2).
        num_classes: Classifier outputs; 0 replaces ``fc`` with ``nn.Identity``.
        in_chans: Input image channels.
        global_pool: timm ``SelectAdaptivePool2d`` pool type (``''``: no pooling, only with
            ``num_classes=0``).
        drop_rate: Dropout before the classifier.
        shortcut: ``"A"`` or ``"B"`` (see above).
        device: Optional factory device for parameters.
        dtype: Optional factory dtype for parameters.
    """

    def __init__(
        self,
        layers: Sequence[int] = (3, 3, 3),
        num_classes: int = 10,
        in_chans: int = 3,
        global_pool: str = "avg",
        drop_rate: float = 0.0,
        shortcut: str = "A",
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        if shortcut not in SHORTCUTS:
            raise ValueError(
                f"Unknown shortcut option {shortcut!r}; expected one of {SHORTCUTS} "
                "('A': zero-padded identity, 'B': 1x1 conv + BN projection)"
            )
        if len(layers) != 3 or any(int(n) < 1 for n in layers):
            raise ValueError(f"layers must be three positive block counts, got {tuple(layers)}")
        dd = {"device": device, "dtype": dtype}
        self.num_classes = num_classes
        self.in_chans = in_chans  # read by timm (save_for_hf, resolve_data_config)
        self.drop_rate = drop_rate
        self.shortcut = shortcut
        self.grad_checkpointing = False

        self.conv1 = nn.Conv2d(in_chans, 16, 3, stride=1, padding=1, bias=False, **dd)
        self.bn1 = nn.BatchNorm2d(16, **dd)
        self.act1 = nn.ReLU(inplace=False)
        self.feature_info = [dict(num_chs=16, reduction=1, module="act1")]

        # stages: (B, 16, H, W) -> (B, 16, H, W) -> (B, 32, H/2, W/2) -> (B, 64, H/4, W/4)
        n1, n2, n3 = (int(n) for n in layers)
        self.layer1 = make_stage(16, 16, n1, stride=1, shortcut=shortcut, **dd)
        self.layer2 = make_stage(16, 32, n2, stride=2, shortcut=shortcut, **dd)
        self.layer3 = make_stage(32, 64, n3, stride=2, shortcut=shortcut, **dd)
        self.feature_info += [
            dict(num_chs=16, reduction=1, module="layer1"),
            dict(num_chs=32, reduction=2, module="layer2"),
            dict(num_chs=64, reduction=4, module="layer3"),
        ]

        self.num_features = 64
        self._make_head(num_classes, global_pool, **dd)
        self._init_weights()

    def _make_head(
        self, num_classes: int, global_pool: str, device: Any = None, dtype: Any = None
    ) -> None:
        """Set ``global_pool``, ``fc``, ``head_hidden_size`` (as timm's ``create_classifier``)."""
        if not global_pool and num_classes > 0:
            raise ValueError(
                f"global_pool='' (no pooling) needs num_classes=0, got num_classes={num_classes}"
            )
        # flatten only when pooling: with pooling disabled the (B, C, H, W) map passes through
        self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=bool(global_pool))
        self.head_hidden_size = self.num_features * self.global_pool.feat_mult()
        self.fc: nn.Module = (
            nn.Linear(self.head_hidden_size, num_classes, device=device, dtype=dtype)
            if num_classes > 0
            else nn.Identity()
        )

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, str]:
        """Parameter-group regexes (stem, then per stage or per block) for layer-wise LR decay."""
        return dict(
            stem=r"^(?:conv1|bn1)",
            blocks=r"^layer(\d+)" if coarse else r"^layer(\d+)\.(\d+)",
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Enable or disable per-block activation checkpointing in the stages."""
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self, name_only: bool = False) -> str | nn.Module:
        """Return the classifier module (or its attribute name ``'fc'``)."""
        return "fc" if name_only else self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the head with a fresh one for ``num_classes`` (0: no classifier).

        Args:
            num_classes: New number of classes.
            global_pool: New pool type, the current one if None; ``''`` (no pooling, features
                stay ``(B, 64, h, w)``) only together with ``num_classes=0``.
        """
        param = next(self.parameters(), None)
        dd = {} if param is None else {"device": param.device, "dtype": param.dtype}
        self.num_classes = num_classes
        if global_pool is None:
            global_pool = self.global_pool.pool_type
        self._make_head(num_classes, global_pool, **dd)
        self.global_pool.train(self.training)
        self.fc.train(self.training)

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | tuple[int, ...] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Forward returning intermediate feature maps (timm semantics).

        Feature indices: 0 = ``act1`` (stem), 1-3 = ``layer1``-``layer3``.

        Args:
            x: Input images ``(B, C, H, W)``.
            indices: Last n features if int, all if None, else these (possibly negative) indices.
            norm: Unused (no final norm layer); accepted for API compatibility.
            stop_early: Stop after the last requested feature.
            output_fmt: Only ``'NCHW'``.
            intermediates_only: Return only the list of intermediates.

        Returns:
            ``(final_features, intermediates)`` or just ``intermediates``; final features are
            ``(B, 64, H/4, W/4)`` (as ``forward_features``) unless ``stop_early`` cut them short.
        """
        assert output_fmt in ("NCHW",), "Output shape must be NCHW."
        intermediates: list[torch.Tensor] = []
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)

        feat_idx = 0
        x = self.act1(self.bn1(self.conv1(x)))
        if feat_idx in take_indices:
            intermediates.append(x)

        layer_names = _STAGE_NAMES[:max_index] if stop_early else _STAGE_NAMES
        for name in layer_names:
            feat_idx += 1
            layer = getattr(self, name)
            if self.grad_checkpointing and not torch.jit.is_scripting():
                x = checkpoint_seq(layer, x)
            else:
                x = layer(x)
            if feat_idx in take_indices:
                intermediates.append(x)

        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(
        self,
        indices: int | list[int] | tuple[int, ...] = 1,
        prune_norm: bool = False,
        prune_head: bool = True,
    ) -> list[int]:
        """Drop the stages (and head) not needed for the requested intermediates.

        Args:
            indices: Indices of the intermediate features to keep (as ``forward_intermediates``).
            prune_norm: Unused (no final norm layer); accepted for API compatibility.
            prune_head: Remove the classifier head.

        Returns:
            The absolute feature indices kept.
        """
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        prune_end = max_index < len(_STAGE_NAMES)
        for name in _STAGE_NAMES[max_index:]:
            # empty Sequential (not Identity) so flattened checkpoint_seq can still iterate it
            setattr(self, name, nn.Sequential())
        if prune_end:
            # features now end at the last kept tap; the head was sized for the final features
            self.num_features = self.head_hidden_size = self.feature_info[max_index]["num_chs"]
        if prune_head or prune_end:
            self.reset_classifier(0, "")
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` images -> ``(B, 64, H/4, W/4)`` final stage features."""
        x = self.act1(self.bn1(self.conv1(x)))
        if self.grad_checkpointing and not torch.jit.is_scripting():
            x = checkpoint_seq([self.layer1, self.layer2, self.layer3], x, flatten=True)
        else:
            x = self.layer1(x)
            x = self.layer2(x)
            x = self.layer3(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``(B, 64, h, w)`` features -> ``(B, num_classes)`` logits, or pooled ``(B, 64)``."""
        x = self.global_pool(x)
        if self.drop_rate:
            x = F.dropout(x, p=float(self.drop_rate), training=self.training)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` images -> ``(B, num_classes)`` logits."""
        return self.forward_head(self.forward_features(x))


def _create_cifar_resnet(variant: str, pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """Build ``variant`` through timm's ``build_model_with_cfg`` (handles ``features_only``)."""
    return build_model_with_cfg(
        CifarResNet,
        variant,
        pretrained,
        feature_cfg=dict(out_indices=(0, 1, 2, 3)),
        **kwargs,
    )


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return {
        "url": "",
        "num_classes": 10,
        "input_size": (3, 32, 32),
        "pool_size": (8, 8),
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": (0.5071, 0.4865, 0.4409),
        "std": (0.2673, 0.2564, 0.2762),
        "first_conv": "conv1",
        "classifier": "fc",
        "license": "apache-2.0",
        "paper_ids": "arXiv:1512.03385",
        **kwargs,
    }


default_cfgs = generate_default_cfgs(
    {
        "cifar_resnet20": _cfg(),
        "cifar_resnet32": _cfg(),
        "cifar_resnet44": _cfg(),
        "cifar_resnet56": _cfg(),
        "cifar_resnet110": _cfg(),
    }
)


@register_model
def cifar_resnet20(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """CIFAR ResNet-20 (n=3, 0.27M params with shortcut A)."""
    model_args = dict(layers=(3, 3, 3))
    return _create_cifar_resnet("cifar_resnet20", pretrained, **dict(model_args, **kwargs))


@register_model
def cifar_resnet32(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """CIFAR ResNet-32 (n=5, 0.46M params with shortcut A)."""
    model_args = dict(layers=(5, 5, 5))
    return _create_cifar_resnet("cifar_resnet32", pretrained, **dict(model_args, **kwargs))


@register_model
def cifar_resnet44(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """CIFAR ResNet-44 (n=7, 0.66M params with shortcut A)."""
    model_args = dict(layers=(7, 7, 7))
    return _create_cifar_resnet("cifar_resnet44", pretrained, **dict(model_args, **kwargs))


@register_model
def cifar_resnet56(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """CIFAR ResNet-56 (n=9, 0.85M params with shortcut A)."""
    model_args = dict(layers=(9, 9, 9))
    return _create_cifar_resnet("cifar_resnet56", pretrained, **dict(model_args, **kwargs))


@register_model
def cifar_resnet110(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """CIFAR ResNet-110 (n=18, 1.7M params with shortcut A)."""
    model_args = dict(layers=(18, 18, 18))
    return _create_cifar_resnet("cifar_resnet110", pretrained, **dict(model_args, **kwargs))
