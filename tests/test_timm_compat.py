"""Pins the timm internals `_timm_compat` writes to: a timm release that changes them fails here."""

from __future__ import annotations

from collections import deque

import timm
from timm.models import _registry
from timm.models._pretrained import DefaultCfg, PretrainedCfg

import discatt_timm  # noqa: F401
from discatt_timm._timm_compat import add_pretrained_tag


def test_registry_structures_still_have_the_expected_shape():
    assert isinstance(_registry._model_pretrained_cfgs, dict)
    assert isinstance(_registry._model_has_pretrained, set)
    assert isinstance(_registry._model_with_tags["resnet18"], list)
    default = _registry._model_default_cfgs["resnet18"]
    assert isinstance(default, DefaultCfg)
    assert isinstance(default.tags, deque) and isinstance(default.cfgs, dict)
    assert isinstance(_registry._model_pretrained_cfgs["resnet18.a1_in1k"], PretrainedCfg)


def test_added_tag_is_listed_loaded_and_never_the_default(tmp_path):
    weights = tmp_path / "w.safetensors"
    name = add_pretrained_tag("cifar_resnet20", "discatt_pin", {"file": str(weights)})
    assert name == "cifar_resnet20.discatt_pin"
    assert name in timm.list_pretrained("cifar_resnet20.*")
    assert timm.models.get_pretrained_cfg(name).file == str(weights)
    assert _registry._model_default_cfgs["cifar_resnet20"].tags[0] != "discatt_pin"
    assert name in timm.models.get_arch_pretrained_cfgs("cifar_resnet20")
