"""Tests for the CIFAR ResNets registered into timm (discatt_timm.models.cifar_resnet)."""

from __future__ import annotations

import math

import pytest
import timm
import timm.optim
import torch
import torch.nn as nn

import discatt_timm.models  # noqa: F401  (registers cifar_resnet*)
from discatt_timm.models import CifarResNet
from discatt_timm.models.cifar_resnet import BasicBlock, ShortcutA

NAMES = ["cifar_resnet20", "cifar_resnet32", "cifar_resnet44", "cifar_resnet56", "cifar_resnet110"]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def r20() -> CifarResNet:
    torch.manual_seed(0)
    return timm.create_model("cifar_resnet20").eval()


@pytest.fixture(scope="module")
def x32() -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


# --- timm internals -------------------------------------------------------------------------


def test_timm_compat_private_names_still_exist():
    """Fails loudly if a timm upgrade removes/moves a private name discatt_timm relies on."""
    from discatt_timm import _timm_compat

    assert _timm_compat.__all__ == ["add_pretrained_tag", "feature_take_indices"]
    for name in _timm_compat.__all__:
        assert callable(getattr(_timm_compat, name, None)), (
            f"timm no longer provides {name!r}; update discatt_timm/_timm_compat.py"
        )
    take, max_idx = _timm_compat.feature_take_indices(4, 2)
    assert list(take) == [2, 3] and max_idx == 3
    take, max_idx = _timm_compat.feature_take_indices(4, [0, -1])
    assert list(take) == [0, 3] and max_idx == 3


# --- registry / cfgs ------------------------------------------------------------------------


def test_list_models_has_all_five():
    listed = timm.list_models("cifar_resnet*")
    assert set(NAMES) <= set(listed)
    for name in NAMES:
        assert timm.is_model(name)


def test_pretrained_cfg(r20):
    cfg = r20.pretrained_cfg
    assert cfg["architecture"] == "cifar_resnet20"
    assert cfg["input_size"] == (3, 32, 32)
    assert cfg["pool_size"] == (8, 8)
    assert cfg["mean"] == pytest.approx((0.5071, 0.4865, 0.4409))
    assert cfg["std"] == pytest.approx((0.2673, 0.2564, 0.2762))
    assert cfg["crop_pct"] == 1.0
    assert cfg["interpolation"] == "bilinear"
    assert cfg["num_classes"] == 10
    assert cfg["first_conv"] == "conv1" and cfg["classifier"] == "fc"
    assert not cfg["url"]
    data_cfg = timm.data.resolve_data_config({}, model=r20)
    assert data_cfg["input_size"] == (3, 32, 32)
    assert data_cfg["mean"] == pytest.approx((0.5071, 0.4865, 0.4409))


# --- architecture ---------------------------------------------------------------------------


def test_param_counts_resnet20():
    a = timm.create_model("cifar_resnet20")
    b = timm.create_model("cifar_resnet20", shortcut="B")
    # option A is parameter-free: 269,722 (the "0.27M" of He et al. Table 6)
    assert n_params(a) == 269_722
    # option B adds 1x1 conv + BN projections at the two downsampling blocks (16->32, 32->64)
    assert n_params(b) == 272_474
    assert n_params(b) - n_params(a) == (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)


def test_param_counts_resnet110():
    a = timm.create_model("cifar_resnet110", num_classes=100)
    assert n_params(a) == 1_733_812
    assert 1_700_000 <= n_params(a) <= 1_750_000
    assert a.fc.out_features == 100
    b = timm.create_model("cifar_resnet110", num_classes=100, shortcut="B")
    assert n_params(b) > n_params(a)


@pytest.mark.parametrize("name,n", list(zip(NAMES, [3, 5, 7, 9, 18], strict=True)))
def test_depth_is_6n_plus_2(name, n):
    model = timm.create_model(name)
    assert [len(getattr(model, s)) for s in ("layer1", "layer2", "layer3")] == [n, n, n]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(convs) + len(linears) == 6 * n + 2  # option A adds no convs


def test_output_shapes(r20, x32):
    with torch.no_grad():
        assert r20(x32).shape == (2, 10)
        assert r20.forward_features(x32).shape == (2, 64, 8, 8)
        assert r20.forward_head(r20.forward_features(x32), pre_logits=True).shape == (2, 64)
    assert r20.num_features == 64 and r20.head_hidden_size == 64 and r20.num_classes == 10


def test_in_chans_1_and_28px():
    model = timm.create_model("cifar_resnet20", in_chans=1).eval()
    assert model.conv1.in_channels == model.in_chans == 1  # timm reads in_chans
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert model(x).shape == (2, 10)
        assert model.forward_features(x).shape == (2, 64, 7, 7)


def test_bad_shortcut_raises():
    with pytest.raises(ValueError, match=r"'C'.*'A'.*'B'"):
        timm.create_model("cifar_resnet20", shortcut="C")
    with pytest.raises(ValueError, match="'A', 'B'"):
        CifarResNet(shortcut="a")


def test_shortcut_a_subsamples_and_zero_pads():
    sc = ShortcutA(16, 32, stride=2)
    x = torch.randn(2, 16, 7, 7)
    y = sc(x)
    assert y.shape == (2, 32, 4, 4)
    assert torch.equal(y[:, :16], x[:, :, ::2, ::2])
    assert torch.count_nonzero(y[:, 16:]) == 0
    assert not list(sc.parameters())


def test_block_downsample_modules():
    a = timm.create_model("cifar_resnet20")
    b = timm.create_model("cifar_resnet20", shortcut="B")
    for model in (a, b):
        assert model.layer1[0].downsample is None
        assert model.layer2[1].downsample is None
    assert isinstance(a.layer2[0].downsample, ShortcutA)
    assert isinstance(b.layer2[0].downsample, nn.Sequential)
    assert isinstance(b.layer3[0].downsample[0], nn.Conv2d)
    assert b.layer3[0].downsample[0].kernel_size == (1, 1)
    with pytest.raises(ValueError, match="'A', 'B'"):
        BasicBlock(16, 32, stride=2, shortcut="X")


def test_init(r20):
    for m in r20.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
    w = r20.layer3[1].conv1.weight  # kaiming normal, fan_out = 64 * 3 * 3
    assert w.std().item() == pytest.approx(math.sqrt(2.0 / (64 * 9)), rel=0.1)


def test_stage_outputs_not_modified_in_place(x32):
    model = timm.create_model("cifar_resnet20").eval()
    seen, snapshots = {}, {}

    def hook(name):
        def fn(_m, _inp, out):
            seen[name] = out
            snapshots[name] = out.detach().clone()

        return fn

    for name in ("act1", "layer1", "layer2", "layer3"):
        getattr(model, name).register_forward_hook(hook(name))
    model(x32)
    for name in seen:
        assert torch.equal(seen[name], snapshots[name]), f"{name} output modified in place"


# --- forward_intermediates / pruning --------------------------------------------------------


def test_forward_intermediates_match_hooks(r20, x32):
    captured: dict[str, torch.Tensor] = {}
    handles = [
        getattr(r20, n).register_forward_hook(
            lambda _m, _i, out, n=n: captured.__setitem__(n, out.detach())
        )
        for n in ("act1", "layer1", "layer2", "layer3")
    ]
    try:
        with torch.no_grad():
            r20(x32)
            ref = dict(captured)
            final, inters = r20.forward_intermediates(x32)
            feats = r20.forward_features(x32)
    finally:
        for h in handles:
            h.remove()
    assert len(inters) == 4
    for t, name in zip(inters, ("act1", "layer1", "layer2", "layer3"), strict=True):
        torch.testing.assert_close(t, ref[name])
    assert [t.shape[1] for t in inters] == [16, 16, 32, 64]
    torch.testing.assert_close(final, feats)
    torch.testing.assert_close(final, inters[-1])


def test_forward_intermediates_indices(r20, x32):
    with torch.no_grad():
        full = r20.forward_intermediates(x32, intermediates_only=True)
        assert isinstance(full, list) and len(full) == 4

        last2 = r20.forward_intermediates(x32, indices=2, intermediates_only=True)
        assert [t.shape for t in last2] == [(2, 32, 16, 16), (2, 64, 8, 8)]
        torch.testing.assert_close(last2[0], full[2])

        sel = r20.forward_intermediates(x32, indices=[0, -1], intermediates_only=True)
        assert [t.shape[1] for t in sel] == [16, 64]
        torch.testing.assert_close(sel[0], full[0])
        torch.testing.assert_close(sel[1], full[3])

        final, early = r20.forward_intermediates(x32, indices=[1], stop_early=True)
        assert len(early) == 1
        torch.testing.assert_close(early[0], full[1])
        torch.testing.assert_close(final, full[1])  # stopped after layer1

        final, inters = r20.forward_intermediates(x32, indices=[1])
        assert final.shape == (2, 64, 8, 8) and len(inters) == 1

    with pytest.raises(AssertionError):
        r20.forward_intermediates(x32, indices=[4])
    with pytest.raises(AssertionError):
        r20.forward_intermediates(x32, indices=5)


def test_prune_intermediate_layers(x32):
    torch.manual_seed(0)
    model = timm.create_model("cifar_resnet20").eval()
    with torch.no_grad():
        ref = model.forward_intermediates(x32, intermediates_only=True)
    kept = model.prune_intermediate_layers(indices=[0, 2])
    assert list(kept) == [0, 2]
    assert len(model.layer3) == 0 and len(model.layer2) == 3
    assert isinstance(model.fc, nn.Identity) and model.num_classes == 0
    assert model.num_features == 32
    with torch.no_grad():
        final, inters = model.forward_intermediates(x32, indices=[0, 2])
    torch.testing.assert_close(inters[0], ref[0])
    torch.testing.assert_close(inters[1], ref[2])
    torch.testing.assert_close(final, ref[2])

    full = timm.create_model("cifar_resnet20")
    full.prune_intermediate_layers(indices=1, prune_head=False)  # keep last: nothing to cut
    assert len(full.layer3) == 3 and isinstance(full.fc, nn.Linear)


# --- timm features / head API ---------------------------------------------------------------


def test_feature_info(r20):
    info = r20.feature_info
    assert [f["module"] for f in info] == ["act1", "layer1", "layer2", "layer3"]
    assert [f["num_chs"] for f in info] == [16, 16, 32, 64]
    assert [f["reduction"] for f in info] == [1, 1, 2, 4]


def test_features_only(x32):
    fm = timm.create_model("cifar_resnet20", features_only=True).eval()
    assert fm.feature_info.channels() == [16, 16, 32, 64]
    assert fm.feature_info.reduction() == [1, 1, 2, 4]
    with torch.no_grad():
        outs = fm(x32)
    assert len(outs) == 4
    for t, c, r in zip(outs, fm.feature_info.channels(), fm.feature_info.reduction(), strict=True):
        assert t.shape == (2, c, 32 // r, 32 // r)

    sub = timm.create_model("cifar_resnet20", features_only=True, out_indices=(1, 3))
    assert sub.feature_info.channels() == [16, 64]
    with torch.no_grad():
        assert [t.shape[1] for t in sub(x32)] == [16, 64]


def test_reset_classifier(x32):
    model = timm.create_model("cifar_resnet20").eval()
    assert model.get_classifier() is model.fc and model.get_classifier(name_only=True) == "fc"
    model.reset_classifier(7)
    assert model.num_classes == 7 and isinstance(model.fc, nn.Linear)
    assert model.fc.out_features == 7 and model.get_classifier() is model.fc
    with torch.no_grad():
        assert model(x32).shape == (2, 7)
    model.reset_classifier(0)
    assert isinstance(model.fc, nn.Identity)
    with torch.no_grad():
        assert model(x32).shape == (2, 64)
    model.reset_classifier(0, global_pool="")  # timm's prune/feature idiom: no pool, no head
    assert model.head_hidden_size == 64
    with torch.no_grad():
        assert model(x32).shape == (2, 64, 8, 8)
    with pytest.raises(ValueError, match="num_classes=0"):
        model.reset_classifier(3, global_pool="")
    model.reset_classifier(5, global_pool="max")
    assert model.global_pool.pool_type == "max"
    with torch.no_grad():
        assert model(x32).shape == (2, 5)


def test_create_model_num_classes_0_and_drop_rate(x32):
    model = timm.create_model("cifar_resnet32", num_classes=0, drop_rate=0.5).eval()
    with torch.no_grad():
        a, b = model(x32), model(x32)
    assert a.shape == (2, 64)
    torch.testing.assert_close(a, b)  # dropout inactive in eval


# --- training -------------------------------------------------------------------------------


def test_gradients_flow(x32):
    model = timm.create_model("cifar_resnet20").train()
    loss = nn.functional.cross_entropy(model(x32), torch.tensor([1, 2]))
    loss.backward()
    g = model.conv1.weight.grad
    assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0
    assert all(p.grad is not None for p in model.parameters())


def test_grad_checkpointing_matches(x32):
    torch.manual_seed(0)
    model = timm.create_model("cifar_resnet20").eval()
    with torch.no_grad():
        ref = model(x32)
        ref_inter = model.forward_intermediates(x32, intermediates_only=True)
    model.set_grad_checkpointing(True)
    x = x32.clone().requires_grad_(True)
    out = model(x)
    torch.testing.assert_close(out, ref)
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    with torch.no_grad():
        inter = model.forward_intermediates(x32, intermediates_only=True)
    for a, b in zip(inter, ref_inter, strict=True):
        torch.testing.assert_close(a, b)


def test_group_matcher_layer_decay():
    model = timm.create_model("cifar_resnet20")
    fine = model.group_matcher()
    coarse = model.group_matcher(coarse=True)
    assert set(fine) == {"stem", "blocks"} and set(coarse) == {"stem", "blocks"}
    opt = timm.optim.create_optimizer_v2(model, "sgd", lr=0.1, layer_decay=0.5)
    scales = {g["lr_scale"] for g in opt.param_groups}
    assert len(scales) == 11  # stem + 9 blocks + head
    stem_scale = next(
        g["lr_scale"] for g in opt.param_groups if any(p is model.conv1.weight for p in g["params"])
    )
    head_scale = next(
        g["lr_scale"] for g in opt.param_groups if any(p is model.fc.weight for p in g["params"])
    )
    assert stem_scale == pytest.approx(0.5**10) and head_scale == 1.0
    n_opt = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n_opt == n_params(model)
