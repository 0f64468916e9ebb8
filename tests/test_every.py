"""``every: k`` (issue 15): one attention step in k with its weights times k; the others are
plain cross-entropy steps. Trainer-level cycles (accumulation, resume): tests/test_train.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F

from discatt_timm import DiscriminativeAttentionLoss
from discatt_timm.config import AttentionLossConfig
from discatt_timm.subset import margins

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import step_overhead  # noqa: E402  (a benchmark script, importable from its folder)


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model("cifar_resnet20", num_classes=10).eval()


def _grad(model: torch.nn.Module, loss: torch.Tensor) -> list[torch.Tensor]:
    model.zero_grad(set_to_none=True)
    loss.backward()
    return [p.grad.clone() for p in model.parameters()]


def test_attention_steps_weigh_the_terms_k_times_and_the_others_are_cross_entropy():
    model = _model()
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([1, 2, 3, 4])
    once = DiscriminativeAttentionLoss(model, method="pixel")(x, y)
    cls_grad = _grad(model, once.cls)
    once = DiscriminativeAttentionLoss(model, method="pixel")(x, y)
    attention_grad = _grad(model, once.loss - once.cls)
    assert max(float(g.abs().max()) for g in attention_grad) > 1e-4  # the terms do something

    lazy = DiscriminativeAttentionLoss(model, method="pixel", every=4)
    on = lazy(x, y, step=8)
    for got, c, a in zip(_grad(model, on.loss), cls_grad, attention_grad, strict=True):
        want = c + 4 * a  # to float reassociation, relative to the tensor's scale
        assert float((got - want).abs().max()) <= 1e-5 * float(want.abs().max()) + 1e-9
    for step in (1, 2, 3, 9):
        off = lazy(x, y, step=step)
        assert off.siou_inner == off.siou_last == off.consistency == 0
        ce = _grad(model, F.cross_entropy(model(x), y))
        assert all(torch.equal(a, b) for a, b in zip(_grad(model, off.loss), ce, strict=True))


def test_without_a_step_the_criterion_counts_its_calls():
    model = _model()
    lazy = DiscriminativeAttentionLoss(model, method="pixel", every=3)
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([1, 2])
    on = [bool(lazy(x, y).siou_last > 0) for _ in range(7)]
    assert on == [True, False, False, True, False, False, True]
    assert lazy.calls == 7


@pytest.mark.parametrize("every", [0, -1, 1.5, True, "4"])
def test_every_must_be_a_positive_integer(every):
    with pytest.raises(ValueError, match="every must be an integer >= 1"):
        AttentionLossConfig(every=every)


def test_margin_subset_maps_the_hardest_samples_and_classifies_all():
    model = _model()
    x, y = torch.randn(8, 3, 32, 32), torch.tensor([0, 1, 2, 3, 4, 5, 6, 7])
    full = DiscriminativeAttentionLoss(model, method="pixel")
    part = DiscriminativeAttentionLoss(model, method="pixel", batch_fraction=0.25)
    out = part(x, y)
    logits = model(x)
    torch.testing.assert_close(out.logits, logits)
    torch.testing.assert_close(out.cls, F.cross_entropy(logits, y))
    hardest = margins(logits, y).argsort()[:2]  # ceil(0.25 * 8)
    ref = full(x[hardest], y[hardest])
    for name in ("siou_inner", "siou_last", "consistency"):
        torch.testing.assert_close(getattr(out, name), getattr(ref, name))
    torch.testing.assert_close(out.loss - out.cls, ref.loss - ref.cls)


def test_random_subset_forwards_each_sample_once_and_keeps_the_batch_order():
    model = _model()  # eval mode: a split forward equals the whole one
    x, y = torch.randn(8, 3, 32, 32), torch.tensor([0, 1, 2, 3, 4, 5, 6, 7])
    part = DiscriminativeAttentionLoss(model, method="pixel", batch_fraction=0.5, select="random")
    torch.manual_seed(3)
    out = part(x, y)
    torch.testing.assert_close(out.logits, model(x), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.cls, F.cross_entropy(model(x), y), rtol=1e-5, atol=1e-6)
    torch.manual_seed(3)
    chosen = torch.randperm(8)[:4]
    ref = DiscriminativeAttentionLoss(model, method="pixel")(x[chosen], y[chosen])
    torch.testing.assert_close(out.siou_last, ref.siou_last)


def test_margin_subset_leaves_running_statistics_as_one_forward_does():
    torch.manual_seed(0)
    model = timm.create_model("cifar_resnet20", num_classes=10).train()
    x, y = torch.randn(8, 3, 32, 32), torch.arange(8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model(x)
    after_one = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(before)
    DiscriminativeAttentionLoss(model, method="pixel", batch_fraction=0.25)(x, y)
    for key, value in model.state_dict().items():
        assert torch.equal(value, after_one[key]), key


@pytest.mark.parametrize("options", [{"batch_fraction": 0.0}, {"batch_fraction": 1.5},
                                     {"select": "hardest"}])  # fmt: skip
def test_fraction_and_select_are_checked(options):
    with pytest.raises(ValueError, match="batch_fraction must be|select must be one of"):
        AttentionLossConfig(**options)


def test_the_benchmarks_split_step_is_a_plain_cross_entropy_step():
    """step_overhead's ``split_f`` row (the floor of ``random_f``) must time a plain step."""
    model = _model()  # eval mode: a split forward equals the whole one
    x, y = torch.randn(8, 3, 32, 32), torch.arange(8)
    split = step_overhead.split_cross_entropy(model, x, y, 2)
    whole = F.cross_entropy(model(x), y)
    torch.testing.assert_close(split, whole, rtol=1e-5, atol=1e-6)
    for a, b in zip(_grad(model, split), _grad(model, whole), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
