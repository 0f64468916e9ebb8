"""The sole place in discatt_timm that touches timm internals (``timm.models._*``).

Every name here comes from a private timm module because timm does not export it publicly
(checked against timm 1.0.x). Keeping these imports in one file means a timm upgrade that moves
or renames one of them breaks here, loudly and in one spot; ``tests/test_timm_compat.py`` pins
each name and the registry structures that ``add_pretrained_tag`` writes to.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from timm.models import _registry
from timm.models._pretrained import DefaultCfg, PretrainedCfg

try:  # prefer a public export should timm ever add one
    from timm.models import feature_take_indices  # type: ignore[attr-defined]
except ImportError:  # timm <= 1.0.x: only in the private module
    from timm.models._features import feature_take_indices

__all__ = ["add_pretrained_tag", "feature_take_indices"]


def add_pretrained_tag(architecture: str, tag: str, cfg: Mapping[str, Any]) -> str:
    """Register ``architecture.tag`` as a pretrained tag of a registered timm architecture.

    The tag is appended after timm's own tags (never becomes the default, never replaces one),
    so ``timm.list_pretrained('ARCH.*')`` keeps timm's entries and ``timm.create_model(
    'ARCH.TAG', pretrained=True)`` loads from ``cfg['file']`` or ``cfg['hf_hub_id']``.
    Re-registering the same name replaces only this package's earlier entry.

    Returns:
        The full model name ``architecture.tag``.
    """
    if architecture not in _registry._model_entrypoints:
        raise ValueError(f"{architecture!r} is not a registered timm architecture")
    name = f"{architecture}.{tag}"
    # A fresh cfg: nothing (url, hub id, test sizes) may leak in from timm's own tags.
    fields = {k: v for k, v in cfg.items() if k not in ("architecture", "tag", "source")}
    pretrained_cfg = PretrainedCfg(**fields, architecture=architecture, tag=tag)
    _registry._model_pretrained_cfgs[name] = pretrained_cfg
    if pretrained_cfg.has_weights:
        _registry._model_has_pretrained.add(name)
    if name not in _registry._model_with_tags[architecture]:
        _registry._model_with_tags[architecture].append(name)
    default = _registry._model_default_cfgs.get(architecture)
    if isinstance(default, DefaultCfg):
        if tag not in default.cfgs:
            default.tags.append(tag)
        default.cfgs[tag] = pretrained_cfg
    return name
