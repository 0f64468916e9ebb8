"""Tests for the layer registry (discatt_timm/layers.py)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import timm
import torch
from torch import nn


def _load_layers() -> ModuleType:
    """Import ``discatt_timm.layers``; load the file alone if the package init cannot import."""
    try:
        return importlib.import_module("discatt_timm.layers")
    except ImportError:
        path = Path(__file__).resolve().parents[1] / "discatt_timm" / "layers.py"
        spec = importlib.util.spec_from_file_location("_discatt_timm_layers_standalone", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module


layers = _load_layers()
LayerPair = layers.LayerPair
get_submodule = layers.get_submodule
list_layer_families = layers.list_layer_families
register_layers = layers.register_layers
resolve_layers = layers.resolve_layers

# (model name, create kwargs, inner, last, inner/last resolution ratio at 64 px)
# Ratio exceptions (also documented in the layers module docstring): dilated models created with
# output_stride < 32 keep one resolution for both layers (ratio 1).
CASES = [
    ("resnet18", {}, "layer3", "layer4", 2),
    ("resnet50", {}, "layer3", "layer4", 2),
    ("resnet26d", {}, "layer3", "layer4", 2),
    ("resnext50_32x4d", {}, "layer3", "layer4", 2),
    ("seresnet18", {}, "layer3", "layer4", 2),
    ("wide_resnet50_2", {}, "layer3", "layer4", 2),
    ("convnext_atto", {}, "stages.2", "stages.3", 2),
    ("convnext_femto", {}, "stages.2", "stages.3", 2),
    ("efficientnet_b0", {}, "blocks.4", "bn2", 2),
    ("efficientnet_b1", {}, "blocks.4", "bn2", 2),
    ("mixnet_s", {}, "blocks.4", "bn2", 2),
    ("mobilenetv3_small_100", {}, "blocks.3", "blocks.5", 2),
    ("mobilenetv3_large_100", {}, "blocks.4", "blocks.6", 2),
    ("lcnet_050", {}, "blocks.4", "blocks.5", 2),
    ("ghostnet_100", {}, "blocks.6", "blocks.9", 2),
    ("regnety_002", {}, "s3", "s4", 2),
    ("regnetx_002", {}, "s3", "s4", 2),
    ("vgg11", {}, "features.14", "features.19", 2),
    ("vgg13_bn", {}, "features.26", "features.33", 2),
    ("vgg16", {}, "features.22", "features.29", 2),
    ("densenet121", {}, "features.denseblock3", "features.norm5", 2),
    # generic feature_info fallback
    ("mobilevit_xxs", {}, "stages.3", "final_conv", 2),
    ("dla34", {}, "level4", "level5", 2),
    ("cspresnet50", {}, "stages.2", "stages.3", 2),
    ("resnext26ts", {}, "stages.2", "final_conv", 2),
    # documented exception: dilated last stage
    ("resnet18", {"output_stride": 16}, "layer3", "layer4", 1),
]
FALLBACK_MODELS = {"mobilevit_xxs", "dla34", "cspresnet50", "resnext26ts"}


def _case_id(case: tuple) -> str:
    name, kwargs = case[0], case[1]
    return name + "".join(f"-{k}{v}" for k, v in kwargs.items())


@pytest.fixture(scope="module", params=CASES, ids=[_case_id(c) for c in CASES])
def case(request: pytest.FixtureRequest) -> tuple[nn.Module, tuple]:
    """One model per case, shared by the tests that use it (pytest groups them by param)."""
    name, kwargs = request.param[0], request.param[1]
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, **kwargs).eval()
    return model, request.param


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> list:
    """Isolate user registrations made by a test."""
    copy = list(layers._REGISTRY)
    monkeypatch.setattr(layers, "_REGISTRY", copy)
    return copy


def test_resolve_table(case: tuple[nn.Module, tuple]) -> None:
    model, (name, _, inner, last, _) = case
    pair = resolve_layers(model)
    assert pair == LayerPair(inner=inner, last=last)
    matched = [e for e in layers._REGISTRY if e.matches(model, layers._arch_name(model))]
    assert bool(matched) == (name not in FALLBACK_MODELS)


def test_resolution_ratio(case: tuple[nn.Module, tuple]) -> None:
    """Forward hooks on both layers: inner is ``ratio`` x last, and no later in-place op."""
    model, (_, _, _, _, ratio) = case
    pair = resolve_layers(model)
    seen: dict[str, tuple[torch.Tensor, int]] = {}

    def hook(role: str):
        def fn(_m: nn.Module, _i: object, out: torch.Tensor) -> None:
            seen[role] = (out, out._version)

        return fn

    handles = [
        get_submodule(model, pair.inner).register_forward_hook(hook("inner")),
        get_submodule(model, pair.last).register_forward_hook(hook("last")),
    ]
    try:
        with torch.no_grad():
            model(torch.randn(1, 3, 64, 64))
    finally:
        for h in handles:
            h.remove()
    (inner, inner_v), (last, last_v) = seen["inner"], seen["last"]
    assert inner.dim() == 4 and last.dim() == 4
    assert tuple(inner.shape[-2:]) == (ratio * last.shape[-2], ratio * last.shape[-1])
    # the captured maps must not be modified in place later in the forward (Grad-CAM needs them)
    assert inner._version == inner_v and last._version == last_v


# --- registry semantics on tiny stand-in models ------------------------------------------------


class Tiny(nn.Module):
    def __init__(self, arch: str | None = "tiny_net", cfg_attr: str = "pretrained_cfg") -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.layer2 = nn.Conv2d(4, 4, 3, stride=2, padding=1)
        self.layer3 = nn.Conv2d(4, 4, 3, stride=2, padding=1)
        self.head = nn.Linear(4, 2)
        if arch is not None:
            setattr(self, cfg_attr, {"architecture": arch})


class TinySub(Tiny):
    pass


def _one_line_error(excinfo: pytest.ExceptionInfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


def test_builtin_families_listed() -> None:
    fams = list_layer_families()
    assert "cifar_resnet*" in fams
    for cls in ("ResNet", "ConvNeXt", "EfficientNet", "MobileNetV3", "RegNet", "VGG", "DenseNet"):
        assert any(f.endswith("." + cls) for f in fams), cls


def test_cifar_pattern_builtin() -> None:
    assert resolve_layers(Tiny("cifar_resnet20")) == LayerPair("layer2", "layer3")
    assert resolve_layers(Tiny("cifar_resnet110", "default_cfg")) == LayerPair("layer2", "layer3")


def test_register_by_pattern(registry: list) -> None:
    register_layers("tiny_*", inner="layer2", last="layer3")
    assert resolve_layers(Tiny("tiny_net")) == LayerPair("layer2", "layer3")
    assert "tiny_*" in list_layer_families()
    # no cfg: the pattern is matched against the class name
    register_layers("Tin?", inner="stem", last="layer3")
    assert resolve_layers(Tiny(arch=None)) == LayerPair("stem", "layer3")


def test_register_by_class_and_callable(registry: list) -> None:
    register_layers(Tiny, inner=lambda m: "stem", last=lambda m: "layer2")
    assert resolve_layers(TinySub("anything")) == LayerPair("stem", "layer2")


def test_most_recent_and_user_over_builtin(registry: list) -> None:
    register_layers("tiny*", inner="stem", last="layer3")
    register_layers("tiny_n*", inner="layer2", last="layer3")
    assert resolve_layers(Tiny("tiny_net")).inner == "layer2"
    assert resolve_layers(Tiny("tiny_other")).inner == "stem"
    register_layers("cifar_resnet2*", inner="stem", last="layer2")
    assert resolve_layers(Tiny("cifar_resnet20")) == LayerPair("stem", "layer2")
    assert resolve_layers(Tiny("cifar_resnet110")) == LayerPair("layer2", "layer3")


def test_user_pattern_beats_builtin_class(registry: list, resnet18: nn.Module) -> None:
    register_layers("resnet18", inner="layer2", last="layer3")
    assert resolve_layers(resnet18) == LayerPair("layer2", "layer3")


def test_duplicate_and_override(registry: list) -> None:
    register_layers("tiny_*", inner="layer2", last="layer3")
    with pytest.raises(ValueError, match="override=True") as excinfo:
        register_layers("tiny_*", inner="stem", last="layer3")
    _one_line_error(excinfo)
    register_layers("tiny_*", inner="stem", last="layer3", override=True)
    assert resolve_layers(Tiny()) == LayerPair("stem", "layer3")
    assert list_layer_families().count("tiny_*") == 1
    with pytest.raises(ValueError):
        register_layers("cifar_resnet*", inner="layer1", last="layer3")
    from timm.models.resnet import ResNet

    with pytest.raises(ValueError):
        register_layers(ResNet, inner="layer2", last="layer4")


def test_bad_registration_arguments(registry: list) -> None:
    with pytest.raises(TypeError):
        register_layers(123, inner="a", last="b")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        register_layers("", inner="a", last="b")
    with pytest.raises(TypeError):
        register_layers("x*", inner=3, last="b")  # type: ignore[arg-type]


def test_explicit_names_override_each_independently() -> None:
    model = Tiny("cifar_resnet20")
    assert resolve_layers(model, inner="stem") == LayerPair("stem", "layer3")
    assert resolve_layers(model, last="layer2") == LayerPair("layer2", "layer2")
    # no registry entry and no feature_info is fine when both names are given
    assert resolve_layers(Tiny("unknown"), "stem", "layer3") == LayerPair("stem", "layer3")


@pytest.fixture(scope="module")
def resnet18() -> nn.Module:
    return timm.create_model("resnet18", pretrained=False)


@pytest.mark.parametrize("role", ["inner", "last"])
def test_bad_name_error(resnet18: nn.Module, role: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        resolve_layers(resnet18, **{role: "layer5"})
    msg = _one_line_error(excinfo)
    assert "'layer5'" in msg and "'layer3'" in msg and role in msg


def test_bad_name_lists_close_matches(resnet18: nn.Module) -> None:
    with pytest.raises(ValueError) as excinfo:
        resolve_layers(resnet18, inner="layer3.1.conv3")
    msg = _one_line_error(excinfo)
    assert "layer3.1.conv3" in msg and "'layer3.1.conv1'" in msg
    with pytest.raises(ValueError):
        resolve_layers(resnet18, last="")  # the root module is not a layer


def test_get_submodule(resnet18: nn.Module) -> None:
    assert get_submodule(resnet18, "layer3") is resnet18.layer3
    with pytest.raises(ValueError) as excinfo:
        get_submodule(resnet18, "layer_3")
    msg = _one_line_error(excinfo)
    assert "'layer_3'" in msg and "'layer3'" in msg


def test_registered_name_is_validated(registry: list) -> None:
    register_layers("tiny_*", inner="layer2", last="layer4")
    with pytest.raises(ValueError) as excinfo:
        resolve_layers(Tiny())
    msg = _one_line_error(excinfo)
    assert "'layer4'" in msg and "'layer3'" in msg


def test_failing_rule_becomes_value_error(registry: list) -> None:
    register_layers("tiny_*", inner=lambda m: m.blocks[-1], last="layer3")
    with pytest.raises(ValueError, match="inner=") as excinfo:
        resolve_layers(Tiny())
    _one_line_error(excinfo)
    # a failing rule is not called for a role given explicitly
    assert resolve_layers(Tiny(), inner="stem") == LayerPair("stem", "layer3")


def test_unknown_model_error() -> None:
    with pytest.raises(ValueError, match="register_layers") as excinfo:
        resolve_layers(Tiny("unknown_arch"))
    msg = _one_line_error(excinfo)
    assert "unknown_arch" in msg and "'layer3'" in msg


def test_feature_info_fallback() -> None:
    model = Tiny("unknown_arch")
    model.feature_info = [
        {"module": "stem", "reduction": 2, "num_chs": 4},
        {"module": "layer2", "reduction": 4, "num_chs": 4},
        {"module": "layer3", "reduction": 8, "num_chs": 4},
    ]
    assert resolve_layers(model) == LayerPair("layer2", "layer3")
    model.feature_info = [{"module": "layer3", "reduction": 8, "num_chs": 4}]
    with pytest.raises(ValueError, match="feature_info"):
        resolve_layers(model)


def test_not_a_module() -> None:
    with pytest.raises(TypeError):
        resolve_layers("resnet18")  # type: ignore[arg-type]


def test_resolve_layer_is_the_one_last_inner_or_module_name_resolver(resnet18: nn.Module) -> None:
    """``attention_maps``, ``explain``, the grid and the localisation all name layers so."""
    pair = layers.resolve_layers(resnet18)
    assert layers.resolve_layer(resnet18, "last") == pair.last == "layer4"
    assert layers.resolve_layer(resnet18, "inner") == pair.inner == "layer3"
    assert layers.resolve_layer(resnet18, "layer2.1") == "layer2.1"
    wrapped = nn.DataParallel(resnet18)
    assert layers.resolve_layer(wrapped, "last") == "layer4"  # unwrapped first
    with pytest.raises(layers.LayerError, match=r"'layer5' is not a submodule.*close matches"):
        layers.resolve_layer(resnet18, "layer5")


def test_did_you_mean_is_the_one_close_match_helper() -> None:
    from discatt_timm.errors import UserError, close_matches, did_you_mean

    assert did_you_mean("lrr", ["lr", "momentum"]) == "; did you mean 'lr'?"
    assert did_you_mean("zzz", ["lr", "momentum"]) == ""
    assert close_matches("resnet-18", ["resnet18", "resnet34", "vgg11"], n=2) == [
        "resnet18",
        "resnet34",
    ]
    assert issubclass(layers.LayerError, UserError) and issubclass(UserError, ValueError)
