"""Feature capture and class gradients: the part of a Grad-CAM that touches the model.

One forward records the feature maps of named layers (hooks live only inside a ``with``
block). Class gradients ``dY_c/dF`` for ``K`` classes are vector-Jacobian products taken with
respect to the feature maps only, so no parameter gradient is computed. The ``K`` classes
share ONE backward pass (``torch.func.vmap`` over ``torch.autograd.grad`` folds them into the
batch of every backward kernel; ``is_grads_batched=True`` would loop over the classes on CPU,
its vmap having no rule for convolution or batch-norm backward), except where train-mode batch
norms make one backward per class cheaper (``folds_classes_well``). When the last layer feeds
a global-average-pool + linear head, its gradient is ``W_c / (H*W)`` exactly and no backward is
needed at all.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..layers import get_submodule, resolve_layout, unwrap_model
from ..layouts import fold, patch_grid_hook
from .precision import as_float32, autocast_enabled, class_grad_scale

__all__ = [
    "FeatureCapture",
    "attention_math_path",
    "capture_features",
    "class_cotangents",
    "class_gradients",
    "folds_classes_well",
]


def folds_classes_well(model: nn.Module) -> bool:
    """False if a batch norm of ``model`` is in train mode (or fused attention runs): then use
    one backward per class.

    ``torch.func.vmap`` folds the classes into the batch of a convolution (free) but into the
    channels of a batch norm, whose train-mode backward then runs on strided copies: more
    memory (cifar_resnet56 exact step: 1.62x plain instead of 1.33x) and, on CPU, more time for
    BatchNorm-heavy stages; within a few percent either way on resnet18. In eval mode the
    folded backward is the faster one (benchmarks/RESULTS.md).

    Also False where a fused scaled-dot-product attention runs (timm's ``fused_attn``): its
    backward has no vmap batching rule, so folding would fall back to a slow per-class loop
    that warns on every call; one plain backward per class keeps the fused kernels.
    """
    batch_norm = nn.modules.batchnorm._BatchNorm
    return not any(
        (isinstance(m, batch_norm) and m.training) or getattr(m, "fused_attn", False)
        for m in unwrap_model(model).modules()
    )


@dataclass
class FeatureCapture:
    """What one forward recorded: feature maps by layer name and the classifier's input/output."""

    features: dict[str, Tensor] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    head_input: Tensor | None = None
    head_output: Tensor | None = None
    head_weight: Tensor | None = None

    def __getitem__(self, name: str) -> Tensor:
        feats = self.features.get(name)
        if feats is None:
            raise RuntimeError(f"layer {name!r} did not run in the forward pass")
        if feats._version != self.versions[name]:
            raise RuntimeError(
                f"the output of layer {name!r} was modified in place after it was computed; "
                "choose a layer whose output is not overwritten (e.g. the block, not its norm)"
            )
        return feats

    def pooled_linear(self, name: str, logits: Tensor) -> bool:
        """True if ``logits == head_weight @ mean_hw(features[name]) + b`` (analytic gradient).

        Checks that the classifier's output is the logits (the same tensor, or an upcast copy
        of it as Accelerate's mixed-precision wrapper returns) and that its input is the
        spatial mean of the layer (so no dropout, max pooling or norm sits between them), to
        the rounding of the head input's dtype (bfloat16: 2**-7). One sync.
        """
        feats, x, out = self.features.get(name), self.head_input, self.head_output
        if feats is None or x is None or out is None or feats.ndim != 4:
            return False
        if out is not logits and not (
            out.shape == logits.shape
            and torch.equal(out.detach().to(logits.dtype), logits.detach())
        ):
            return False
        if x.shape != feats.shape[:2]:
            return False
        pooled = feats.detach().float().mean(dim=(-2, -1))
        rtol = max(1e-3, 2 * torch.finfo(x.dtype).eps) if x.is_floating_point() else 1e-3
        return bool(torch.allclose(x.detach().float(), pooled, rtol=rtol, atol=1e-5))


@contextmanager
def capture_features(
    model: nn.Module, names: Sequence[str], *, graph_below: bool = True
) -> Iterator[FeatureCapture]:
    """Record the outputs of ``names`` (and the linear classifier's input) during a forward.

    A recorded output that does not require grad (frozen model, no-grad input) is replaced by
    a copy that does, so class gradients can always be taken with respect to it.
    With ``graph_below=False`` autograd is off until the first named layer has run: nothing
    below it is recorded or kept for a backward (maps need no parameter gradient), and the
    forward is cheaper in time and memory. Grad mode is restored on exit.
    All hooks are removed on exit, also when the forward raises.
    """
    core = unwrap_model(model)
    capture = FeatureCapture()
    handles = []
    grad_mode = torch.is_grad_enabled()
    layout = resolve_layout(core)
    grid: list[tuple[int, int]] = []  # this forward's patch grid (tokens layout)

    def record(name: str):
        def hook(module: nn.Module, args: tuple, output: Tensor) -> Tensor | None:
            if not isinstance(output, Tensor):
                raise TypeError(
                    f"layer {name!r} returns {type(output).__name__}, not a tensor; "
                    "pick a module whose output is a feature map"
                )
            if not graph_below:
                torch.set_grad_enabled(grad_mode)  # record the graph from here on
            replaced = None
            if not output.requires_grad and torch.is_grad_enabled():
                # A non-leaf copy, so a later in-place op still meets the version check below.
                replaced = output = output.detach().requires_grad_().clone()
            # The B x D x H x W map; the module passes on an output rebuilt from it (layouts.py).
            feats, rebuilt = fold(output, layout, core, name, grid)
            capture.features[name] = feats
            capture.versions[name] = feats._version
            return rebuilt if rebuilt is not None else replaced

        return hook

    if layout == "tokens" and isinstance(getattr(core, "patch_embed", None), nn.Module):
        handles.append(core.patch_embed.register_forward_hook(patch_grid_hook(grid)))
    try:
        for name in dict.fromkeys(names):
            handles.append(get_submodule(core, name).register_forward_hook(record(name)))
        get_classifier = getattr(core, "get_classifier", None)
        head = get_classifier() if callable(get_classifier) else None
        if isinstance(head, nn.Linear):

            def record_head(module: nn.Module, args: tuple, output: Tensor) -> None:
                capture.head_input = args[0] if args else None
                capture.head_output = output
                capture.head_weight = module.weight

            handles.append(head.register_forward_hook(record_head))
        if not graph_below:
            torch.set_grad_enabled(False)
        yield capture
    finally:
        torch.set_grad_enabled(grad_mode)
        for handle in handles:
            handle.remove()


@contextmanager
def attention_math_path(model: nn.Module, enabled: bool = True) -> Iterator[None]:
    """Scaled-dot-product attention on its math path inside the block (when ``enabled``).

    The fused SDPA kernels have no double backward (pytorch/pytorch#116350), which the exact
    mode needs; the math path is composed of matmuls and a softmax, which have one. Only the
    forward is affected: outside the block (maps, detached mode) the fused kernels stay.
    """
    if not enabled:
        yield
        return
    flagged = [m for m in unwrap_model(model).modules() if getattr(m, "fused_attn", False)]
    for module in flagged:  # timm's per-block switch: its non-fused path never calls SDPA
        module.fused_attn = False
    try:
        try:
            from torch.nn.attention import SDPBackend, sdpa_kernel
        except ImportError:  # torch < 2.3: timm's flags alone
            yield
        else:
            with sdpa_kernel(SDPBackend.MATH):  # any other module calling SDPA
                yield
    finally:
        for module in flagged:
            module.fused_attn = True


def class_cotangents(targets: Tensor, num_classes: int, dtype: torch.dtype) -> Tensor:
    """Turn user targets into ``K x B x C`` weights on the logits (one row per map).

    ``(B,)`` indices -> ``1 x B x C`` one-hot; ``(B, K)`` indices -> ``K x B x C``;
    ``(B, C)`` float/bool multi-hot -> ``1 x B x C`` (the map of the summed present scores).
    """
    if targets.dtype == torch.bool or targets.is_floating_point():
        if targets.ndim != 2 or targets.shape[1] != num_classes:
            raise ValueError(
                f"multi-hot targets must have shape (B, {num_classes}), got {tuple(targets.shape)}"
            )
        return targets.to(dtype).unsqueeze(0)
    if targets.ndim not in (1, 2):
        raise ValueError(
            "targets must be (B,) class indices, (B, K) indices or a (B, C) multi-hot float "
            f"tensor, got shape {tuple(targets.shape)}"
        )
    if targets.numel() and (targets.min() < 0 or targets.max() >= num_classes):
        raise ValueError(
            f"target class indices must lie in [0, {num_classes - 1}], got "
            f"min {int(targets.min())}, max {int(targets.max())}"
        )
    index = targets.reshape(targets.shape[0], -1).t()  # K x B
    onehot = torch.zeros(*index.shape, num_classes, dtype=dtype, device=targets.device)
    return onehot.scatter_(-1, index.unsqueeze(-1), 1.0)


def class_gradients(
    logits: Tensor,
    capture: FeatureCapture,
    names: Sequence[str],
    cotangents: Tensor,
    *,
    create_graph: bool,
    analytic: Sequence[str] = (),
    fold_classes: bool = True,
) -> list[Tensor]:
    """``K x B x D x H x W`` gradients of ``sum_c V[k, b, c] Y[b, c]`` w.r.t. each named layer.

    Layers listed in ``analytic`` (checked pooled-linear by the caller) get the exact
    ``V @ W / (H*W)`` as ``K x B x D x 1 x 1`` instead; the others share one batched VJP
    (``fold_classes``), or get one VJP per class on the same graph (``fold_classes=False``,
    see ``folds_classes_well``). Both give the same values. With ``create_graph`` the result
    is differentiable (the double backward of the exact mode).
    """
    out: dict[str, Tensor] = {}
    for name in analytic:
        feats = capture[name]
        weight = capture.head_weight
        if not create_graph:
            weight = weight.detach()
        # In the head's dtype (float32 parameters under autocast): no rounding to the features'.
        grads = torch.matmul(cotangents.to(weight.dtype), weight) / (
            feats.shape[-2] * feats.shape[-1]
        )
        out[name] = grads[..., None, None]
    rest = [name for name in names if name not in out]
    if rest:
        inputs = [capture[name] for name in rest]
        scale = class_grad_scale(inputs)  # float16 backward: keep the gradients in range
        cotangents = cotangents.to(logits.dtype) * scale
        grads = _vjps(logits, inputs, cotangents, create_graph, fold_classes)
        for name, grad in zip(rest, grads, strict=True):
            if grad is None:
                raise RuntimeError(f"the logits do not depend on layer {name!r}")
            out[name] = as_float32(grad) / scale if scale != 1.0 else grad
    return [out[name] for name in names]


def _vjps(
    outputs: Tensor,
    inputs: list[Tensor],
    cotangents: Tensor,
    create_graph: bool,
    fold_classes: bool,
) -> list[Tensor | None]:
    """``K x ...`` VJPs of ``outputs`` for the ``K`` cotangents; ``None``: an unused input.

    Folded: ``torch.func.vmap`` runs ONE backward with the classes in the batch of every
    kernel. Under autocast it has no rule for batch norm with half-precision input and float
    parameters, so there ``is_grads_batched`` (a loop over the classes) is used. Not folded: one
    plain backward per class, all on the retained graph.
    """
    options = {"retain_graph": True, "create_graph": create_graph, "allow_unused": True}
    if cotangents.shape[0] > 1 and fold_classes and autocast_enabled(outputs.device.type):
        grads = torch.autograd.grad(outputs, inputs, cotangents, is_grads_batched=True, **options)
        return list(grads)
    unused: list[bool] = []

    def vjp(cotangent: Tensor) -> tuple[Tensor, ...]:
        grads = torch.autograd.grad(outputs, inputs, cotangent, **options)
        unused[:] = [grad is None for grad in grads]  # vmap returns tensors only
        return tuple(grad for grad in grads if grad is not None)

    if cotangents.shape[0] == 1:
        found = [grad.unsqueeze(0) for grad in vjp(cotangents[0])]
    elif fold_classes:
        found = list(torch.func.vmap(vjp)(cotangents))
    else:
        per_class = [vjp(cotangent) for cotangent in cotangents]
        found = [torch.stack(grads) for grads in zip(*per_class, strict=True)]
    grads = iter(found)
    return [None if skip else next(grads) for skip in unused]
