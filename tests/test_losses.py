"""Losses: gradcheck in float64 (double backward included), properties and NaN safety."""

from __future__ import annotations

import pytest
import timm
import torch
from conftest import batch
from torch import nn
from torch.func import functional_call

from discatt_timm import (
    DiscriminativeAttentionLoss,
    attention_maps,
    attention_mask,
    consistency_loss,
    soft_iou,
)
from discatt_timm.config import AttentionLossConfig
from discatt_timm.losses import normalize_maps, spatial_softmax


def positive_maps(*shape: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=generator, dtype=torch.float64) + 0.05


def test_soft_iou_gradcheck():
    a = positive_maps(2, 4, 5, seed=1).requires_grad_()
    b = positive_maps(2, 4, 5, seed=2).requires_grad_()
    mask = positive_maps(2, 4, 5, seed=3).clamp(max=1).requires_grad_()
    assert torch.autograd.gradcheck(soft_iou, (a, b, mask))
    assert torch.autograd.gradgradcheck(soft_iou, (a, b, mask))


def test_consistency_and_mask_gradcheck():
    inner = positive_maps(2, 4, 5, seed=4).requires_grad_()
    mask = positive_maps(2, 4, 5, seed=5).clamp(max=1).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, m: consistency_loss(a, m, alpha=1.0), (inner, mask))
    last = positive_maps(2, 4, 5, seed=6).requires_grad_()
    assert torch.autograd.gradcheck(lambda a: attention_mask(a, sigma=0.55, omega=10.0), (last,))


def test_soft_iou_properties():
    a = positive_maps(3, 6, 6)
    ones = torch.ones_like(a)
    assert torch.allclose(soft_iou(a, a, ones), torch.ones(3, dtype=a.dtype))
    left, right = a.clone(), a.clone()
    left[..., 3:] = 0
    right[..., :3] = 0
    assert torch.equal(soft_iou(left, right, ones), torch.zeros(3, dtype=a.dtype))
    for seed in range(50):
        x, y = positive_maps(4, 5, 5, seed=seed), positive_maps(4, 5, 5, seed=seed + 100) ** 3
        mask = positive_maps(4, 5, 5, seed=seed + 200).clamp(max=1)
        value = soft_iou(x, y, mask)
        assert ((value >= 0) & (value <= 1)).all()
    zeros = torch.zeros(2, 4, 4)
    assert torch.equal(soft_iou(zeros, zeros), torch.zeros(2))


def test_consistency_and_mask_values():
    inner = positive_maps(2, 4, 4)
    assert torch.allclose(consistency_loss(inner, torch.ones_like(inner)), torch.zeros(2).double())
    assert torch.allclose(consistency_loss(inner, torch.zeros_like(inner)), torch.ones(2).double())
    assert torch.equal(consistency_loss(torch.zeros(2, 4, 4), torch.ones(2, 4, 4)), torch.ones(2))
    last = torch.tensor([[[0.0, 0.5], [0.6, 1.0]]])
    mask = attention_mask(last, sigma=0.55, omega=100.0)
    assert mask[0, 1, 1] > 0.99 and mask[0, 0, 0] < 0.01  # inside / outside 0.55 * max
    assert torch.allclose(mask[0, 0, 1], torch.sigmoid(torch.tensor(100.0 * (0.5 - 0.55))))
    assert torch.allclose(normalize_maps(last).amax(), torch.tensor(1.0))
    assert torch.equal(normalize_maps(torch.zeros(1, 2, 2)), torch.zeros(1, 2, 2))


class TinyCNN(nn.Module):
    """Conv -> ReLU -> conv(stride 2) -> ReLU -> global average pool -> linear, no BatchNorm."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.layer1 = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.Softplus())
        self.layer2 = nn.Sequential(nn.Conv2d(4, 5, 3, stride=2, padding=1), nn.Softplus())
        self.fc = nn.Linear(5, num_classes)

    def get_classifier(self) -> nn.Module:
        return self.fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.layer2(self.layer1(x)).mean((2, 3)))


class Bound(nn.Module):
    """Calls ``net`` with the parameters given to gradcheck (so they are its inputs)."""

    def __init__(self, net: nn.Module, params: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.net, self.params = net, params

    def get_classifier(self) -> nn.Module:
        return self.net.fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.net, self.params, (x,))


def test_spatial_softmax_cannot_vanish_and_ignores_scale():
    maps = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    out = spatial_softmax(maps)
    assert torch.allclose(out.sum(dim=(-2, -1)), torch.ones(2, 3, dtype=torch.float64))
    assert (out > 0).all()
    assert torch.allclose(spatial_softmax(7 * maps + 3), out)  # scale and offset invariant
    assert torch.equal(normalize_maps(maps, "softmax"), out)
    constant = torch.zeros(1, 4, 4, dtype=torch.float64, requires_grad=True)
    uniform = spatial_softmax(constant)
    assert torch.allclose(uniform, torch.full_like(uniform, 1 / 16))
    uniform.pow(2).sum().backward()
    assert torch.isfinite(constant.grad).all()
    assert torch.autograd.gradcheck(spatial_softmax, (maps,))
    assert torch.autograd.gradgradcheck(spatial_softmax, (maps,))


def assert_total_loss_gradcheck(
    seed: int, targets: list[int], *, analytic_head: bool = True, check=None, **options
) -> None:
    """The exact mode's parameter gradient (a double backward) of ``TinyCNN`` equals finite
    differences; ``check(criterion, out)`` runs on every evaluation."""
    torch.manual_seed(seed)
    net = TinyCNN().double()
    names = [n for n, _ in net.named_parameters()]
    x = torch.randn(2, 2, 6, 6, dtype=torch.float64)

    def total(*params: torch.Tensor) -> torch.Tensor:
        bound = Bound(net, dict(zip(names, params, strict=True)))
        if not analytic_head:
            bound.get_classifier = lambda: None  # force autograd at the last layer too
        criterion = DiscriminativeAttentionLoss(
            bound, layers=("net.layer1", "net.layer2"), detach_mask=False, **options
        )
        assert criterion._pooled_linear == {}  # the head is checked lazily, on the first call
        out = criterion(x, torch.tensor(targets))
        if check is not None:
            check(criterion, out)
        return out.loss

    params = tuple(p.detach().clone().requires_grad_() for p in net.parameters())
    assert torch.autograd.gradcheck(total, params, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("method", ["pixel", "channel", "gradcam"])
@pytest.mark.parametrize("analytic_head", [True, False])
def test_total_loss_gradcheck_exact_mode(method, analytic_head):
    """The exact mode's parameter gradient (a double backward) equals finite differences."""

    def check(criterion, out):  # the head check ran once, with the expected answer
        assert criterion._pooled_linear == {True: analytic_head}

    assert_total_loss_gradcheck(0, [0, 2], method=method, analytic_head=analytic_head, check=check)


@pytest.mark.parametrize("method", ["pixel", "channel"])
def test_softmax_normalisation_loss_gradcheck(method):
    """With ``normalize='softmax'`` (pre-ReLU maps) the exact double backward is right too."""

    def check(criterion, out):  # softmax maps overlap everywhere
        assert out.siou_last > 0 and out.siou_inner > 0

    assert_total_loss_gradcheck(
        1, [1, 0], method=method, normalize="softmax", omega=5.0, check=check
    )


def test_zero_map_flags_match_the_maps():
    criterion = resnet_loss()
    x, y = batch(64, n=6, seed=4), torch.tensor([0, 1, 2, 3, 4, 5])
    terms = criterion.terms(x, y)
    assert terms.zero_maps.shape == (2, 2, 6) and terms.zero_maps.dtype == torch.bool
    pair = torch.stack([y, terms.confusing], dim=1)
    model = criterion.model
    for row, layer in enumerate(("inner", "last")):
        maps = attention_maps(model, x, pair, method="pixel", layer=layer)  # 6 x 2 x h x w
        zero = maps.amax(dim=(-2, -1)) <= 0
        assert torch.equal(terms.zero_maps[row], zero.T)


def test_warmup_computes_only_the_classification_loss_before_it_ends():
    criterion = resnet_loss(warmup_epochs=1.5)
    x, y = batch(64, n=4, seed=5), torch.tensor([0, 1, 2, 3])
    early = criterion(x, y, epoch=1.2)
    assert early.loss.item() == pytest.approx(
        torch.nn.functional.cross_entropy(early.logits, y).item()
    )
    assert early.siou_inner == early.siou_last == early.consistency == 0
    assert criterion._pooled_linear == {}  # no attention computed at all
    late, always = criterion(x, y, epoch=1.5), criterion(x, y)
    assert late.siou_last > 0 and late.consistency > 0
    assert late.loss.item() == pytest.approx(always.loss.item(), rel=1e-6)


def test_exact_mode_reaches_parameters_through_the_maps():
    """Exact and detached modes differ only by the double backward: gradients must differ."""
    torch.manual_seed(0)
    net = TinyCNN()
    x, targets = torch.randn(4, 2, 8, 8), torch.tensor([0, 1, 2, 0])
    grads = {}
    for mode in ("exact", "detached"):
        net.zero_grad()
        criterion = DiscriminativeAttentionLoss(
            net, layers=("layer1", "layer2"), grad_mode=mode, weights=(1.0, 1.0, 0.0)
        )
        out = criterion(x, targets)
        (out.loss - out.cls).backward()
        grads[mode] = net.fc.weight.grad.clone()
    assert grads["detached"].abs().max() == 0  # the fc weight enters the maps only through G
    assert grads["exact"].abs().max() > 0


def resnet_loss(**kwargs) -> DiscriminativeAttentionLoss:
    torch.manual_seed(0)
    return DiscriminativeAttentionLoss(timm.create_model("resnet18", num_classes=10), **kwargs)


def test_loss_output_matches_its_parts():
    criterion = resnet_loss(weights=(0.5, 2.0, 3.0))
    out = criterion(batch(64), torch.tensor([1, 2, 3, 4]))
    expected = out.cls + 0.5 * out.siou_inner + 2.0 * out.siou_last + 3.0 * out.consistency
    assert torch.allclose(out.loss, expected)
    assert out.logits.shape == (4, 10)
    assert 0 < out.siou_inner < 1 and 0 < out.siou_last < 1 and 0 <= out.consistency <= 1


def test_all_zero_maps_and_batch_of_one_are_finite():
    net = TinyCNN()
    for p in net.layer2.parameters():
        nn.init.zeros_(p)  # every last-layer feature is softplus(0): constant, zero-gradient maps
    net.layer2[1] = nn.ReLU()  # and relu(0) = 0: all-zero feature maps, all-zero attention
    criterion = DiscriminativeAttentionLoss(net, layers=("layer1", "layer2"))
    out = criterion(torch.randn(1, 2, 8, 8), torch.tensor([2]))
    assert all(torch.isfinite(v).all() for v in out)
    assert out.siou_last == 0 and out.siou_inner == 0
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


def test_multilabel_samples_without_present_or_absent_class_contribute_nothing():
    criterion = resnet_loss(multilabel=True)
    x = batch(64)
    targets = torch.zeros(4, 10)
    targets[0, [1, 2]] = 1  # valid
    targets[1, 5] = 1  # valid
    targets[3] = 1  # all present: no confusing class; sample 2 has none present
    out = criterion(x, targets)
    assert all(torch.isfinite(v).all() for v in out)
    only_valid = criterion(x[:2], targets[:2])
    # BatchNorm in train mode couples the batch: compare in eval mode, where it is exact.
    criterion.model.eval()
    full, valid = criterion(x, targets), criterion(x[:2], targets[:2])
    for name in ("siou_inner", "siou_last", "consistency"):
        assert torch.allclose(getattr(full, name), getattr(valid, name), rtol=1e-5), name
    none_valid = criterion(x[2:], targets[2:])
    assert none_valid.siou_inner == 0 and none_valid.consistency == 0
    assert torch.isfinite(only_valid.loss)


def test_bf16_autocast_on_cpu_is_finite_with_terms_in_float32():
    criterion = resnet_loss(normalize="softmax")  # max-normalised pixel maps: test_precision
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = criterion(batch(64), torch.tensor([1, 2, 3, 4]))
    assert all(torch.isfinite(v).all() for v in out)
    assert out.siou_inner.dtype == out.siou_last.dtype == out.consistency.dtype == torch.float32
    out.loss.backward()
    model = criterion.model
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"grad_mode": "approx"}, "grad_mode must be one of exact, detached"),
        ({"weights": (1.0, -1.0, 1.0)}, "weights must be three"),
        ({"sigma": 0.0}, "sigma"),
        ({"normalize": "l2"}, "normalize must be one of"),
        ({"warmup_epochs": -1.0}, "warmup_epochs must be a finite number >= 0"),
    ],
)
def test_bad_settings_name_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AttentionLossConfig(**kwargs)


def test_bad_targets_and_method_are_one_line_errors():
    with pytest.raises(ValueError, match="unknown attention method 'px'"):
        resnet_loss(method="px")
    criterion = resnet_loss()
    with pytest.raises(ValueError, match=r"\(4,\) integer class indices"):
        criterion(batch(64), torch.zeros(4, 10))


def test_settings_as_one_config_or_as_keywords_are_the_same_loss():
    model = timm.create_model("resnet18", num_classes=10).eval()
    x, y = batch(64), torch.tensor([1, 2, 3, 4])
    options = dict(method="channel", sigma=0.4, normalize="softmax", weights=(0.5, 1.0, 2.0))
    by_config = DiscriminativeAttentionLoss(model, AttentionLossConfig(**options))
    by_keywords = DiscriminativeAttentionLoss(model, **options)
    assert by_config.config == by_keywords.config == AttentionLossConfig(**options)
    torch.testing.assert_close(by_config(x, y).loss, by_keywords(x, y).loss, rtol=0, atol=0)
    with pytest.raises(TypeError, match="not both"):
        DiscriminativeAttentionLoss(model, AttentionLossConfig(), sigma=0.3)
    with pytest.raises(TypeError, match="config must be an AttentionLossConfig, got str"):
        DiscriminativeAttentionLoss(model, "pixel")
