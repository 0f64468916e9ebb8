"""Attention maps: the pytorch-grad-cam oracle, the analytic head, batching and hygiene."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from conftest import MODEL_INPUT, batch

# the oracle is a declared test dependency (grad-cam in the test extra): never skipped
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus  # noqa: E402
from pytorch_grad_cam.base_cam import BaseCAM  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

from discatt_timm import attention_maps, create_attention, list_attentions, resolve_layers
from discatt_timm.attention import capture_features, class_cotangents, class_gradients
from discatt_timm.layers import get_submodule


class ChannelCAM(BaseCAM):
    """A_ch as a pytorch-grad-cam method: channel weights = spatial mean of ReLU(grads)."""

    def get_cam_weights(self, input_tensor, target_layers, targets, activations, grads):
        return np.maximum(grads, 0).mean(axis=(2, 3))


ORACLES = {"gradcam": GradCAM, "gradcampp": GradCAMPlusPlus, "channel": ChannelCAM}
TARGETS = torch.tensor([1, 3, 5, 7])


def oracle_maps(model, layer_name, x, targets, cam_class):
    """pytorch-grad-cam's raw maps (ReLU of get_cam_image) and its final input-size maps."""
    layer = get_submodule(model, layer_name)
    with cam_class(model=model, target_layers=[layer]) as cam:
        final = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in targets])
        acts = cam.activations_and_grads.activations[0].numpy()
        grads = cam.activations_and_grads.gradients[0].numpy()
        raw = np.maximum(cam.get_cam_image(x, layer, None, acts, grads), 0)
    return torch.from_numpy(raw), torch.from_numpy(final)


@pytest.mark.parametrize("method", sorted(ORACLES))
@pytest.mark.parametrize("which", ["inner", "last"])
@pytest.mark.parametrize("name", sorted(MODEL_INPUT))
def test_maps_equal_pytorch_grad_cam(make_model, name, which, method):
    model = make_model(name)
    size = MODEL_INPUT[name]
    x = batch(size)
    layer_name = getattr(resolve_layers(model), which)
    raw_ref, final_ref = oracle_maps(model, layer_name, x, TARGETS, ORACLES[method])

    raw = attention_maps(model, x, TARGETS, method=method, layer=which)
    assert raw.shape == raw_ref.shape
    scale = raw_ref.abs().max().clamp_min(1e-30)
    assert ((raw - raw_ref).abs().max() / scale).item() <= 1e-5

    final = attention_maps(model, x, TARGETS, method=method, layer=which, size=size)
    assert final.shape == (4, size, size)
    assert (final - final_ref).abs().max().item() <= 1e-3


def test_maps_are_not_trivial(make_model):
    """Guard for the oracle test: the maps it compares vary over space and between classes."""
    model = make_model("resnet18")
    maps = attention_maps(model, batch(64), torch.tensor([[1, 2]] * 4), method="gradcam")
    assert maps.shape == (4, 2, 2, 2)
    assert maps.amax() > 0
    assert not torch.allclose(maps[:, 0], maps[:, 1])


def test_analytic_last_layer_gradient_equals_autograd(make_model):
    model = make_model("resnet18")
    x = batch(64)
    last = resolve_layers(model).last
    with capture_features(model, [last]) as capture:
        logits = model(x)
    assert capture.pooled_linear(last, logits)
    cotangents = class_cotangents(torch.tensor([[1, 2], [3, 4], [5, 6], [7, 8]]), 10, logits.dtype)
    (analytic,) = class_gradients(
        logits, capture, [last], cotangents, create_graph=False, analytic=[last]
    )
    (autograd,) = class_gradients(logits, capture, [last], cotangents, create_graph=False)
    assert analytic.shape[-2:] == (1, 1) and autograd.shape == (2, 4, 512, 2, 2)
    assert torch.allclose(analytic.expand_as(autograd), autograd, rtol=0, atol=1e-6)
    assert autograd.abs().max() > 1e-4  # a real gradient, not zeros on both sides


def test_pooled_linear_detection_rejects_other_heads(make_model):
    # ConvNeXt's head normalises after pooling; VGG's runs an MLP: both need autograd.
    for name in ("convnext_atto", "vgg11"):
        model = make_model(name)
        last = resolve_layers(model).last
        with capture_features(model, [last]) as capture:
            logits = model(batch(MODEL_INPUT[name]))
        assert not capture.pooled_linear(last, logits), name


@pytest.mark.parametrize("layer", ["inner", "last"])
@pytest.mark.parametrize("method", list_attentions())
def test_k_classes_in_one_call_equal_k_single_calls(make_model, method, layer):
    model = make_model("resnet18")
    x = batch(64)
    targets = torch.tensor([[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 0, 1]])
    together = attention_maps(model, x, targets, method=method, layer=layer)
    assert together.shape[:2] == (4, 3)
    for k in range(3):
        single = attention_maps(model, x, targets[:, k], method=method, layer=layer)
        assert torch.allclose(together[:, k], single, rtol=1e-5, atol=1e-7)


def test_multi_hot_targets_map_the_summed_present_scores(make_model):
    model = make_model("resnet18")
    x = batch(64)
    multi_hot = torch.zeros(4, 10)
    multi_hot[0, [1, 2]] = 1
    multi_hot[1, 3] = 1
    multi_hot[2, [4, 5, 6]] = 1
    multi_hot[3, 9] = 1
    maps = attention_maps(model, x, multi_hot, method="pixel", layer="inner")
    inner = get_submodule(model, "layer3")
    feats = {}
    handle = inner.register_forward_hook(lambda m, a, out: feats.setdefault("f", out))
    try:
        logits = model(x)
    finally:
        handle.remove()
    (grad,) = torch.autograd.grad((logits * multi_hot).sum(), feats["f"])
    expected = torch.relu((grad * feats["f"]).mean(1))
    assert maps.shape == expected.shape
    assert torch.allclose(maps, expected.detach(), rtol=1e-5, atol=1e-8)


def test_pixel_and_channel_follow_their_definitions():
    torch.manual_seed(0)
    feats, grads = torch.rand(2, 5, 3, 4), torch.randn(2, 5, 3, 4)
    pixel = create_attention("pixel")(feats, grads)
    assert torch.allclose(pixel, torch.relu((feats * grads).mean(1)))
    channel = create_attention("channel")(feats, grads)
    weights = torch.relu(grads).mean((2, 3))
    assert torch.allclose(channel, torch.relu((weights[:, :, None, None] * feats).sum(1)))
    # A spatially constant gradient given as D x 1 x 1 equals the expanded one, for all methods.
    const = torch.randn(2, 5, 1, 1)
    for name in list_attentions():
        method = create_attention(name)
        assert torch.allclose(method(feats, const), method(feats, const.expand_as(feats)))


def test_call_leaves_model_as_found(make_model):
    model = timm.create_model("resnet18", num_classes=10)
    model.train()
    frozen = model.conv1.weight
    frozen.requires_grad_(False)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    with torch.no_grad():
        maps = attention_maps(model, batch(64), TARGETS, layer="inner", size=32)
    assert maps.shape == (4, 32, 32) and maps.isfinite().all()
    assert model.training
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert all(p.grad is None for p in model.parameters())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    model.eval()
    attention_maps(model, batch(64), TARGETS)
    assert not model.training


def test_fully_frozen_model_still_gives_maps():
    model = timm.create_model("resnet18", num_classes=10).eval().requires_grad_(False)
    maps = attention_maps(model, batch(64), TARGETS, method="gradcam", layer="inner")
    assert maps.shape == (4, 4, 4) and maps.amax() > 0


@pytest.mark.parametrize(
    "targets, message",
    [
        (torch.tensor([1, 2, 3]), "3 rows"),
        (torch.tensor([1, 2, 3, 10]), r"\[0, 9\]"),
        (torch.zeros(4, 7), r"\(B, 10\)"),
        (torch.zeros(4, 2, 2, dtype=torch.long), "shape"),
    ],
)
def test_bad_targets_say_what_is_accepted(make_model, targets, message):
    with pytest.raises(ValueError, match=message):
        attention_maps(make_model("resnet18"), batch(64), targets)


def test_bad_method_and_layer_list_the_choices(make_model):
    model = make_model("resnet18")
    with pytest.raises(ValueError, match="pixel"):
        attention_maps(model, batch(64), TARGETS, method="gradcam2")
    with pytest.raises(ValueError, match="layer3"):
        attention_maps(model, batch(64), TARGETS, layer="layer33")


def test_inference_mode_is_refused_with_a_clear_error(make_model):
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode"):
        attention_maps(make_model("resnet18"), batch(64), TARGETS)


@pytest.mark.parametrize("name", sorted(MODEL_INPUT))
def test_registry_layers_give_maps_at_the_expected_strides(make_model, name):
    """Inner maps have twice the resolution of last maps (VGG: stride 8 and 16, others 16/32)."""
    model, size = make_model(name), MODEL_INPUT[name]
    inner = attention_maps(model, batch(size), TARGETS, layer="inner")
    last = attention_maps(model, batch(size), TARGETS, layer="last")
    last_stride = {"vgg11": 16, "cifar_resnet20": 4}.get(name, 32)
    assert last.shape == (4, size // last_stride, size // last_stride)
    assert inner.shape == (4, 2 * last.shape[1], 2 * last.shape[2])
