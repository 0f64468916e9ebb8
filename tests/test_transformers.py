"""Vision transformers (issue 14): token and channels-last layouts, the registry's layers, maps
equal to pytorch-grad-cam's (with a reshape_transform written for each model's prefix tokens
and grid), the loss equal to the naive reference, gradcheck through attention, training, explain.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import timm
import torch
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from safetensors.torch import save_file

from discatt_timm import DiscriminativeAttentionLoss, attention_maps, resolve_layers
from discatt_timm.cli import main
from discatt_timm.layers import get_submodule
from discatt_timm.reference import naive_attention_loss

pytestmark = pytest.mark.usefixtures("one_thread")

# name, timm keywords, input px, map side at that size
CASES = [
    ("vit_tiny_patch16_224", {}, 224, 14),
    ("vit_tiny_patch16_224", {"img_size": 160}, 160, 10),
    ("deit_tiny_distilled_patch16_224", {}, 224, 14),
    ("deit_tiny_distilled_patch16_224", {"img_size": 160}, 160, 10),
    ("vit_little_patch16_reg4_gap_256", {}, 256, 16),
    ("vit_little_patch16_reg4_gap_256", {"img_size": 192}, 192, 12),
    ("eva02_tiny_patch14_224", {}, 224, 16),
    ("eva02_tiny_patch14_224", {"img_size": 168}, 168, 12),
    ("swin_tiny_patch4_window7_224", {}, 224, 7),
    ("swin_tiny_patch4_window7_224", {"img_size": 192, "window_size": 6}, 192, 6),
]
TARGETS = torch.tensor([1, 3])


@functools.cache
def _model(name: str, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, num_classes=10, **kwargs).eval()


def reshape_transform(model: torch.nn.Module):
    """What a pytorch-grad-cam user writes: tokens minus the prefix onto the grid; NHWC -> NCHW."""
    if getattr(model, "output_fmt", None) == "NHWC":
        return lambda t: t.permute(0, 3, 1, 2)
    prefix, (h, w) = model.num_prefix_tokens, model.patch_embed.grid_size
    return lambda t: t[:, prefix:].reshape(t.size(0), h, w, t.size(2)).permute(0, 3, 1, 2)


def oracle(model, layer_name, x, targets, cam_class) -> torch.Tensor:
    layer = get_submodule(model, layer_name)
    transform = reshape_transform(model)
    with cam_class(model=model, target_layers=[layer], reshape_transform=transform) as cam:
        cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in targets])
        acts = cam.activations_and_grads.activations[0].numpy()
        grads = cam.activations_and_grads.gradients[0].numpy()
        raw = np.maximum(cam.get_cam_image(x, layer, None, acts, grads), 0)
    return torch.from_numpy(raw)


@pytest.mark.parametrize("method", ["gradcam", "gradcampp"])
@pytest.mark.parametrize("case", CASES, ids=[f"{n}-{s}" for n, _, s, _ in CASES])
def test_maps_equal_pytorch_grad_cam(case, method):
    name, kwargs, size, side = case
    model = _model(name, **kwargs)
    torch.manual_seed(1)
    x = torch.randn(2, 3, size, size)
    last = resolve_layers(model).last
    ref = oracle(
        model, last, x, TARGETS, {"gradcam": GradCAM, "gradcampp": GradCAMPlusPlus}[method]
    )
    ours = attention_maps(model, x, TARGETS, method=method, layer="last")
    assert ours.shape == ref.shape == (2, side, side)
    assert ref.abs().max() > 0
    assert ((ours - ref).abs().max() / ref.abs().max()).item() <= 1e-5


def test_the_registry_skips_the_zero_gradient_of_the_last_block_output():
    """With global_pool='token' the last block's patch tokens never reach the logits: a map
    there is all zero; the registry's last layer (that block's norm1) is not."""
    model = _model("vit_tiny_patch16_224")
    layers = resolve_layers(model)
    assert (layers.inner, layers.last) == ("blocks.8.norm1", "blocks.11.norm1")
    x = torch.randn(2, 3, 224, 224)
    assert attention_maps(model, x, TARGETS, method="gradcam", layer="blocks.11").abs().max() == 0
    assert attention_maps(model, x, TARGETS, method="gradcam", layer="last").amax() > 0
    swin = resolve_layers(_model("swin_tiny_patch4_window7_224"))
    assert (swin.inner, swin.last) == ("layers.2", "norm")


def test_dynamic_image_size_follows_each_forward():
    model = _model("vit_tiny_patch16_224", dynamic_img_size=True)
    for h, w in ((160, 160), (128, 192)):
        maps = attention_maps(model, torch.randn(1, 3, h, w), TARGETS[:1], size=(h, w))
        assert maps.shape == (1, h, w)
        raw = attention_maps(model, torch.randn(1, 3, h, w), TARGETS[:1])
        assert raw.shape == (1, h // 16, w // 16)


def _tiny(name: str) -> torch.nn.Module:
    """A few-block ViT or Swin at 32-64 px: cheap enough for exact-mode checks."""
    torch.manual_seed(0)
    if name == "vit":
        return timm.create_model(
            "vit_tiny_patch16_224", num_classes=5, img_size=64, depth=4, embed_dim=32,
            num_heads=2,
        )  # fmt: skip
    return timm.create_model(
        "swin_tiny_patch4_window7_224", num_classes=5, img_size=64, window_size=2,
        depths=(1, 1, 1, 1), embed_dim=16, num_heads=(1, 2, 2, 2), drop_path_rate=0.0,
    )  # fmt: skip


@pytest.mark.parametrize("name", ["vit", "swin"])
def test_loss_equals_the_naive_reference(name):
    """Parameter gradients of the exact loss (math-path attention switched on inside the
    loss) equal the naive reference's (timm's fused attention switched off by hand)."""
    model = _tiny(name).train()
    x, y = torch.randn(4, 3, 64, 64), torch.tensor([0, 1, 2, 3])
    criterion = DiscriminativeAttentionLoss(model, method="pixel")
    out = criterion(x, y)
    model.zero_grad()
    out.loss.backward()
    ours = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    fused = [m for m in model.modules() if getattr(m, "fused_attn", False)]
    for m in fused:
        m.fused_attn = False
    layers = criterion.layers
    ref_loss = naive_attention_loss(
        model, x, y, inner=layers.inner, last=layers.last, reshape=reshape_transform(model)
    )
    model.zero_grad()
    ref_loss.backward()
    for m in fused:
        m.fused_attn = True
    torch.testing.assert_close(out.loss, ref_loss, rtol=1e-5, atol=1e-6)
    # Swin's norm -> average pool -> linear head: the analytic last layer; ViT's: autograd
    assert criterion._pooled_linear == {True: name == "swin"}
    assert len(ours) > 10
    for n, p in model.named_parameters():
        if n in ours:
            scale = p.grad.abs().max().clamp_min(1e-12)
            assert ((ours[n] - p.grad).abs().max() / scale).item() <= 1e-5, n


def test_gradcheck_and_gradgradcheck_through_attention_in_float64():
    torch.manual_seed(0)
    model = timm.create_model(
        "vit_tiny_patch16_224", num_classes=3, img_size=32, patch_size=16, depth=2,
        embed_dim=8, num_heads=2,
    ).double()  # fmt: skip
    criterion = DiscriminativeAttentionLoss(
        model, method="pixel", normalize="softmax", omega=10.0, detach_mask=False
    )
    y = torch.tensor([0, 2])
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64, requires_grad=True)

    def loss(inp):
        return criterion(inp, y).loss

    assert torch.autograd.gradcheck(loss, (x,), eps=1e-6, atol=1e-9, rtol=1e-6, fast_mode=True)
    assert torch.autograd.gradgradcheck(loss, (x,), eps=1e-6, atol=1e-8, rtol=1e-5, fast_mode=True)


@pytest.mark.parametrize("name", ["vit", "swin"])
def test_twenty_sgd_steps_have_finite_losses(name):
    model = _tiny(name).train()
    criterion = DiscriminativeAttentionLoss(model, method="pixel", normalize="softmax")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    flags = [m.fused_attn for m in model.modules() if hasattr(m, "fused_attn")]
    losses = []
    for _ in range(20):
        x = torch.randn(8, 3, 64, 64, generator=gen)
        y = torch.randint(0, 5, (8,), generator=gen)
        out = criterion(x, y)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(float(out.loss.detach()))
    assert all(np.isfinite(losses)) and float(out.siou_last.detach()) > 0
    # timm's fused-attention flags are as they were after every step
    assert flags and flags == [m.fused_attn for m in model.modules() if hasattr(m, "fused_attn")]


def test_explain_writes_a_panel_for_a_vit(tmp_path):
    from PIL import Image

    model = _model("vit_tiny_patch16_224")
    checkpoint = tmp_path / "vit.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(checkpoint))
    image = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (240, 320, 3), np.uint8)).save(image)
    out = tmp_path / "panels"
    code = main(
        ["explain", "--model", "vit_tiny_patch16_224", "--checkpoint", str(checkpoint),
         str(image), "--out", str(out), "--layer", "inner,last"]
    )  # fmt: skip
    panels = list(out.glob("*.png"))
    assert code == 0 and len(panels) == 1 and panels[0].stat().st_size > 1000


@pytest.mark.parametrize("name", ["vit", "swin"])
def test_evaluation_measures_transformers(name):
    """What ``discatt metrics`` and the trainer's evaluation run: top-1, sIoU, consistency."""
    from discatt_timm.evaluation import evaluate

    model = _tiny(name).eval()
    gen = torch.Generator().manual_seed(0)
    loader = [(torch.randn(4, 3, 64, 64, generator=gen), torch.tensor([0, 1, 2, 3]))] * 2
    metrics = evaluate(model, loader, topk=(1,))
    assert 0 <= metrics["top1"] <= 1
    assert all(np.isfinite(metrics[k]) for k in ("siou_inner", "siou_last", "consistency"))
    assert 0 < metrics["siou_last"] < 1
