"""Speed never changes the maths: the fast loss equals the naive reference of the benchmark.

``discatt_timm/reference.py`` computes the loss the obvious way (one ``autograd.grad`` per
class and per layer, no analytic head, no batched VJP). The package's exact and detached modes
must give the same loss and the same parameter gradients, in train mode (BatchNorm couples the
batch) and in float64, so that a difference is a change of maths, not of rounding.
"""

from __future__ import annotations

import pytest
import timm
import torch

from discatt_timm import DiscriminativeAttentionLoss, attention_maps, resolve_layers
from discatt_timm.attention import capture_features, class_cotangents, class_gradients
from discatt_timm.attention.gradients import folds_classes_well
from discatt_timm.reference import naive_attention_loss

TOL = 1e-5


def loss_and_grads(model: torch.nn.Module, loss: torch.Tensor) -> list[torch.Tensor]:
    params = [p for p in model.parameters() if p.requires_grad]
    return [loss.detach(), *torch.autograd.grad(loss, params)]


def compare(name: str, size: int, method: str, grad_mode: str, analytic: bool) -> None:
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=10).double().train()
    x = torch.randn(4, 3, size, size, dtype=torch.float64)
    targets = torch.tensor([1, 3, 5, 7])
    criterion = DiscriminativeAttentionLoss(model, method=method, grad_mode=grad_mode)
    if not analytic:
        criterion._pooled_linear[True] = False  # autograd at the last layer too
    fast = loss_and_grads(model, criterion(x, targets).loss)
    assert criterion._pooled_linear == {True: analytic}
    layers = resolve_layers(model)
    naive = naive_attention_loss(
        model,
        x,
        targets,
        inner=layers.inner,
        last=layers.last,
        method=method,
        create_graph=grad_mode == "exact",
    )
    reference = loss_and_grads(model, naive)
    assert len(fast) == len(reference)
    for got, want in zip(fast, reference, strict=True):
        assert (got - want).abs().max().item() <= TOL * max(1.0, want.abs().max().item())
    assert reference[0] > 0 and any(g.abs().max() > 0 for g in reference[1:])


@pytest.mark.parametrize("method", ["pixel", "channel", "gradcam"])
def test_exact_mode_equals_the_naive_reference(method):
    compare("cifar_resnet20", 32, method, "exact", analytic=True)


def test_exact_mode_without_the_analytic_head_equals_the_naive_reference():
    compare("cifar_resnet20", 32, "pixel", "exact", analytic=False)


def test_detached_mode_equals_the_naive_reference_without_create_graph():
    compare("cifar_resnet20", 32, "pixel", "detached", analytic=True)


def test_benchmark_model_exact_mode_equals_the_naive_reference():
    compare("resnet18", 64, "pixel", "exact", analytic=True)


def test_the_comparison_sees_the_double_backward():
    """Guard: exact and detached gradients differ, so the tests above can tell them apart."""
    torch.manual_seed(0)
    model = timm.create_model("cifar_resnet20", num_classes=10).double().train()
    x = torch.randn(4, 3, 32, 32, dtype=torch.float64)
    targets = torch.tensor([1, 3, 5, 7])
    layers = resolve_layers(model)
    grads = {}
    for create_graph in (True, False):
        loss = naive_attention_loss(
            model, x, targets, inner=layers.inner, last=layers.last, create_graph=create_graph
        )
        grads[create_graph] = loss_and_grads(model, loss)[1:]
    gap = max((a - b).abs().max().item() for a, b in zip(grads[True], grads[False], strict=True))
    assert gap > 100 * TOL


@pytest.mark.parametrize("train", [True, False])
def test_folded_and_per_class_vjps_equal_is_grads_batched(train):
    """The K classes in one vmapped backward, or one backward each: the same gradients."""
    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=10).train(train)
    layers = resolve_layers(model)
    with capture_features(model, [layers.inner, layers.last]) as capture:
        logits = model(torch.randn(4, 3, 64, 64))
    cotangents = class_cotangents(torch.tensor([[1, 2, 3]] * 4), 10, logits.dtype)
    names = [layers.inner, layers.last]
    assert folds_classes_well(model) is not train  # train-mode BatchNorm: one backward per class
    reference = torch.autograd.grad(
        logits, [capture[n] for n in names], cotangents, is_grads_batched=True, retain_graph=True
    )
    for fold in (True, False):
        grads = class_gradients(
            logits, capture, names, cotangents, create_graph=False, fold_classes=fold
        )
        for got, want in zip(grads, reference, strict=True):
            assert got.shape == want.shape == (3, *want.shape[1:])
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


def test_maps_record_no_graph_below_the_layer_and_restore_grad_mode():
    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=10).eval()
    x = torch.randn(2, 3, 64, 64)
    with capture_features(model, ["layer3"], graph_below=False) as capture:
        assert not torch.is_grad_enabled()
        logits = model(x)
    assert torch.is_grad_enabled()
    (unused,) = torch.autograd.grad(logits.sum(), [model.conv1.weight], allow_unused=True)
    assert unused is None  # nothing below layer3 was recorded
    assert torch.autograd.grad(logits.sum(), capture["layer3"])[0].abs().max() > 0
    with torch.no_grad(), capture_features(model, ["layer3"], graph_below=False):
        assert not model(x).requires_grad  # the mode on entry holds from the layer on
    assert torch.is_grad_enabled()
    with pytest.raises(RuntimeError), capture_features(model, ["layer3"], graph_below=False):
        raise RuntimeError("the forward failed")
    assert torch.is_grad_enabled()


def test_a_layer_overwritten_in_place_still_gets_the_clear_error():
    model = timm.create_model("resnet18", num_classes=10).eval()
    with pytest.raises(RuntimeError, match="modified in place"):
        attention_maps(model, torch.randn(2, 3, 64, 64), torch.tensor([1, 2]), layer="layer4.1.bn1")
