"""One-command device check (issue 13): what a few minutes on a GPU should establish.

Five sections, each caught on its own (a failed section is recorded with its error line and the
others still run; the exit status is 1 when any section failed, else 0):

  a. ``attention_maps`` (pixel, channel, gradcam, gradcampp; last and inner layer) and the loss
     terms (``DiscriminativeAttentionLoss(...).terms``: siou_inner, siou_last, consistency) on
     ``--device`` against the CPU's, fp32 (TF32 off): max relative error <= 1e-4.
  b. exact-mode parameter gradients of the total loss (Eq. 9) under bf16 autocast, and under
     fp16 autocast with a ``torch.amp.GradScaler`` (unscaled before the comparison), against
     fp32: cosine >= 0.97 and all finite. Pixel maps use ``normalize='softmax'`` (the loss
     refuses pixel + max under bf16/fp16), channel maps the default. The models are trained
     briefly on structured synthetic images first (random-init attention gradients are
     ill-conditioned in any precision; tests/test_precision.py).
  c. step time of the exact / detached attention steps as ratios to a plain step (timed
     interleaved, synchronised, medians after warm-up) and peak memory above the level before
     the step (CUDA only; ``null`` on CPU).
  d. ``attention_maps`` against pytorch-grad-cam (1 target, top-5): max relative error of the
     final maps and the time ratio; skipped when pytorch-grad-cam is not installed.
  e. ``discatt_timm.training.train`` (Accelerate, bf16) on a synthetic image folder, stopped
     at a step checkpoint (an exception at the next step, as a crash would) and resumed with
     ``train(cfg, resume=True)``: losses finite, the resumed run starts at the checkpoint's step.

A table (section, check, value, pass/fail) and the total wall time are printed; everything is
written to ``--out`` as JSON (never over an existing file without ``--overwrite``).

    .venv/bin/python benchmarks/gpu_check.py --device cuda           # <= 8 minutes on one H200
    .venv/bin/python benchmarks/gpu_check.py --device cpu --quick    # same code, tiny sizes
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import json
import math
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import discatt_timm  # noqa: F401  (registers cifar_resnet*)
from discatt_timm import DiscriminativeAttentionLoss, attention_maps

MAP_TOLERANCE = 1e-4  # (a): device vs CPU, fp32
COSINE_MIN = 0.97  # (b)
CAM_TOLERANCE = 1e-3  # (d): final maps, as benchmarks/cam_throughput.py
METHODS = ("pixel", "channel", "gradcam", "gradcampp")
GRAD_CONFIGS = {
    "pixel-softmax": {"method": "pixel", "normalize": "softmax"},
    "channel": {"method": "channel"},
}
VARIANTS = ("plain", "exact", "detached")
SECTIONS = {
    "a": "a_device_equals_cpu",
    "b": "b_mixed_precision_grads",
    "c": "c_step_time",
    "d": "d_pytorch_grad_cam",
    "e": "e_train_resume",
}


@dataclass(frozen=True)
class Sizes:
    fidelity: tuple[tuple[str, int, int, int], ...]  # (a), (b): model, px, batch, train steps
    speed: tuple[tuple[str, int, int], ...]  # (c): model, px, batch
    warmup: int
    rounds: int
    cam: tuple[str, int, int]  # (d): model, px, batch
    cam_rounds: int
    train: tuple[str, int, int]  # (e): model, px, batch
    train_images: tuple[int, int, int]  # classes, train and test images per class
    max_steps: int
    stop_at: int  # the step checkpoint the first run stops after


FULL = Sizes(
    fidelity=(("resnet18", 64, 32, 40), ("cifar_resnet56", 32, 64, 40), ("resnet50", 224, 16, 40)),
    speed=(("resnet50", 224, 64), ("cifar_resnet56", 32, 128)),
    warmup=3,
    rounds=10,
    cam=("resnet50", 224, 16),
    cam_rounds=5,
    train=("cifar_resnet20", 32, 64),
    train_images=(10, 320, 20),  # 50 steps an epoch
    max_steps=300,
    stop_at=120,
)
QUICK = Sizes(  # (b) at 24 px, batch 8: bf16/fp16 cosines 0.996-0.99996 on a CPU, 5 s not 24 s
    fidelity=(("cifar_resnet20", 24, 8, 20),),
    speed=(("resnet18", 64, 8), ("cifar_resnet20", 32, 16)),
    warmup=1,
    rounds=2,
    cam=("resnet18", 64, 4),
    cam_rounds=1,
    train=("cifar_resnet20", 16, 8),
    train_images=(3, 16, 4),  # 6 steps an epoch
    max_steps=20,
    stop_at=8,
)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rel_err(a: Tensor, ref: Tensor) -> float:
    """max |a - ref| / max |ref| (0 when both are all zero)."""
    a, ref = a.detach().double().cpu(), ref.detach().double().cpu()
    scale = float(ref.abs().max()) if ref.numel() else 0.0
    diff = float((a - ref).abs().max()) if ref.numel() else 0.0
    return diff / scale if scale > 0 else diff


def check(name: str, value: Any, ok: bool) -> dict[str, Any]:
    return {"check": name, "value": value, "pass": bool(ok)}


# --- models trained briefly on structured images (as tests/test_precision.py) ---------------


def structured_batch(gen: torch.Generator, n: int, size: int) -> tuple[Tensor, Tensor]:
    """Class c: a bright square at one of 10 places plus three dim distractors, on noise."""
    y = torch.randint(0, 10, (n,), generator=gen)
    x = 0.3 * torch.randn(n, 3, size, size, generator=gen)
    side = size // 4
    for i, c in enumerate(y.tolist()):
        row, col = divmod(c, 4)
        top = row * size // 3 + int(torch.randint(0, side // 2 + 1, (1,), generator=gen))
        left = col * size // 4
        x[i, c % 3, top : top + side, left : left + side] += 2.0
        for _ in range(3):
            t, s = (int(v) for v in torch.randint(0, size - side // 2, (2,), generator=gen))
            x[i, :, t : t + side // 2, s : s + side // 2] += 1.0
    return x, y


def trained(
    name: str, size: int, batch: int, steps: int, device: torch.device
) -> tuple[nn.Module, Tensor, Tensor]:
    """``name`` after ``steps`` SGD steps (fp32, cross-entropy) on ``device``; a held-out batch."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = timm.create_model(name, num_classes=10).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(steps):
        x, y = structured_batch(gen, 32, size)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x.to(device)), y.to(device)).backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    x, y = structured_batch(gen, batch, size)
    return model, x.to(device), y.to(device)


def fidelity_models(sizes: Sizes, device: torch.device, cache: dict) -> dict:
    """(a) and (b)'s trained models and held-out batches, trained on the first call (inside
    the first section that needs them, so that a failure is that section's)."""
    if not cache:
        started = time.perf_counter()
        for name, size, batch, steps in sizes.fidelity:
            cache[f"{name}@{size}px"] = trained(name, size, batch, steps, device)
        print(f"trained {len(cache)} model(s) in {time.perf_counter() - started:.1f} s")
    return cache


# --- (a) device vs CPU -------------------------------------------------------------------------


def section_a(sizes: Sizes, device: torch.device, models: dict) -> dict[str, Any]:
    checks, details = [], {}
    for key, (model, x, y) in fidelity_models(sizes, device, models).items():
        model = model.eval()
        cpu_model = copy.deepcopy(model).cpu()
        x_cpu, y_cpu = x.cpu(), y.cpu()
        with torch.no_grad():
            top = cpu_model(x_cpu).topk(2, dim=1).indices  # B x 2, the same on both
        errors: dict[str, float] = {}
        for method in METHODS:
            for layer in ("last", "inner"):
                ref = attention_maps(cpu_model, x_cpu, top, method=method, layer=layer)
                got = attention_maps(model, x, top.to(device), method=method, layer=layer)
                errors[f"maps {method} {layer}"] = rel_err(got, ref)
        for method in ("pixel", "channel"):
            ref = DiscriminativeAttentionLoss(cpu_model, method=method).terms(x_cpu, y_cpu)
            got = DiscriminativeAttentionLoss(model, method=method).terms(x, y)
            for term in ("siou_inner", "siou_last", "consistency", "cls"):
                errors[f"terms {method} {term}"] = rel_err(getattr(got, term), getattr(ref, term))
            errors[f"terms {method} confusing differ"] = float(
                (got.confusing.cpu() != ref.confusing).sum()
            )
        worst = max(errors.values())
        details[key] = errors
        checks.append(check(f"{key} max rel err (maps, terms)", worst, worst <= MAP_TOLERANCE))
    return {"checks": checks, "details": details}


# --- (b) bf16 / fp16 gradients against fp32 ----------------------------------------------------


def total_loss_grad(
    model: nn.Module, x: Tensor, y: Tensor, dtype: torch.dtype | None, options: dict
) -> tuple[Tensor, dict[str, Any]]:
    """The parameter gradient of the exact total loss, flattened (fp32), under ``dtype``
    autocast; fp16 runs through a GradScaler (a step with inf/NaN lowers the scale and is
    retried, as a training loop would skip it). Model state is restored afterwards."""
    device = x.device
    state = {k: v.clone() for k, v in model.state_dict().items()}
    params = [p for p in model.parameters() if p.requires_grad]
    criterion = DiscriminativeAttentionLoss(model, grad_mode="exact", **options)
    fp16 = dtype is torch.float16
    scaler = torch.amp.GradScaler(device.type) if fp16 else None
    holder = torch.optim.SGD(params, lr=0.0)  # only for scaler.unscale_
    info: dict[str, Any] = {"skipped_steps": 0}
    try:
        for _ in range(17 if fp16 else 1):  # 2**16 down to 1
            model.load_state_dict(state)
            model.zero_grad(set_to_none=True)
            autocast = (
                torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()
            )
            with autocast:
                loss = criterion(x, y).loss
            (scaler.scale(loss) if scaler else loss).backward()
            if scaler is not None:
                info["scale"] = float(scaler.get_scale())
                scaler.unscale_(holder)
            grad = torch.cat(
                [
                    (p.grad if p.grad is not None else torch.zeros_like(p)).float().flatten()
                    for p in params
                ]
            )
            if scaler is None or bool(torch.isfinite(grad).all()):
                break
            info["skipped_steps"] += 1
            scaler.update()  # found inf: lower the scale, try again
        info["loss"] = float(loss.detach())
        return grad, info
    finally:
        model.zero_grad(set_to_none=True)
        model.load_state_dict(state)


def section_b(sizes: Sizes, device: torch.device, models: dict) -> dict[str, Any]:
    checks, details = [], {}
    for key, (model, x, y) in fidelity_models(sizes, device, models).items():
        model = model.train()
        for name, options in GRAD_CONFIGS.items():
            ref, ref_info = total_loss_grad(model, x, y, None, options)
            row: dict[str, Any] = {"fp32_finite": bool(torch.isfinite(ref).all()), **ref_info}
            for label, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
                low, info = total_loss_grad(model, x, y, dtype, options)
                finite = bool(torch.isfinite(low).all()) and row["fp32_finite"]
                cosine = float(F.cosine_similarity(ref.double(), low.double(), dim=0))
                row[label] = {"cosine": cosine, "finite": finite, **info}
                checks.append(
                    check(
                        f"{key} {name} {label} cosine",
                        cosine,
                        finite and math.isfinite(cosine) and cosine >= COSINE_MIN,
                    )
                )
            details[f"{key} {name}"] = row
    return {"checks": checks, "details": details}


# --- (c) step time ------------------------------------------------------------------------------


class StepCase:
    """One model, optimizer and batch, and the three training steps on them (the plain,
    exact and detached steps of benchmarks/step_overhead.py)."""

    def __init__(self, name: str, size: int, batch: int, device: torch.device) -> None:
        torch.manual_seed(0)
        model = timm.create_model(name, num_classes=10).to(device).train()
        self.device = device
        self.optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        x = torch.randn(batch, 3, size, size, device=device)
        y = torch.randint(0, 10, (batch,), device=device)
        exact = DiscriminativeAttentionLoss(model, grad_mode="exact")
        detached = DiscriminativeAttentionLoss(model, grad_mode="detached")
        self.losses: dict[str, Callable[[], Tensor]] = {
            "plain": lambda: F.cross_entropy(model(x), y),
            "exact": lambda: exact(x, y).loss,
            "detached": lambda: detached(x, y).loss,
        }

    def step(self, variant: str) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.losses[variant]().backward()
        self.optimizer.step()

    def timed(self, variant: str) -> float:
        sync(self.device)
        start = time.perf_counter()
        self.step(variant)
        sync(self.device)
        return time.perf_counter() - start

    def peak_memory(self, variant: str) -> int | None:
        """Bytes allocated by one step above the level before it (CUDA; None elsewhere)."""
        if self.device.type != "cuda":
            return None
        self.step(variant)  # optimizer state exists, as in the timed rounds
        self.optimizer.zero_grad(set_to_none=True)
        sync(self.device)
        base = torch.cuda.memory_allocated(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        self.step(variant)
        sync(self.device)
        return torch.cuda.max_memory_allocated(self.device) - base


def section_c(sizes: Sizes, device: torch.device, models: dict) -> dict[str, Any]:
    checks, details = [], {}
    for name, size, batch in sizes.speed:
        key = f"{name}@{size}px b{batch}"
        case = StepCase(name, size, batch, device)
        times: dict[str, list[float]] = {v: [] for v in VARIANTS}
        for round_ in range(sizes.warmup + sizes.rounds):
            for variant in VARIANTS:  # interleaved: a b c a b c ...
                seconds = case.timed(variant)
                if round_ >= sizes.warmup:
                    times[variant].append(seconds)
        medians = {v: statistics.median(times[v]) for v in VARIANTS}
        peaks = {v: case.peak_memory(v) for v in VARIANTS}
        ratios = {v: medians[v] / medians["plain"] for v in VARIANTS}
        mem_ratios = {
            v: (peaks[v] / peaks["plain"] if peaks[v] is not None and peaks["plain"] else None)
            for v in VARIANTS
        }
        details[key] = {
            "median_ms": {v: medians[v] * 1e3 for v in VARIANTS},
            "ms": {v: [t * 1e3 for t in times[v]] for v in VARIANTS},
            "time_ratio": ratios,
            "peak_mib": {v: (p / 2**20 if p is not None else None) for v, p in peaks.items()},
            "memory_ratio": mem_ratios,
        }
        checks.append(check(f"{key} exact/plain time", ratios["exact"], ratios["exact"] > 1))
        checks.append(
            check(f"{key} detached/plain time", ratios["detached"], ratios["detached"] > 0)
        )
        checks.append(check(f"{key} exact/plain memory", mem_ratios["exact"], True))
        del case
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return {"checks": checks, "details": details}


# --- (d) pytorch-grad-cam -------------------------------------------------------------------------


def section_d(sizes: Sizes, device: torch.device, models: dict) -> dict[str, Any]:
    try:
        from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except ImportError:
        return {"skipped": "skipped: pytorch-grad-cam not installed", "checks": [], "details": {}}
    name, size, batch = sizes.cam
    torch.manual_seed(0)
    model = timm.create_model(name).to(device).eval()
    x = torch.randn(batch, 3, size, size, device=device)
    with torch.no_grad():
        top = model(x).topk(5, dim=1).indices
    layer = model.get_submodule("layer4")
    cams = {"gradcam": GradCAM, "gradcampp": GradCAMPlusPlus}

    def theirs(method: str, k: int) -> Tensor:
        maps = []
        for rank in range(k):  # one call per target rank
            with cams[method](model=model, target_layers=[layer]) as cam:
                targets = [ClassifierOutputTarget(int(c)) for c in top[:, rank]]
                maps.append(torch.from_numpy(cam(input_tensor=x, targets=targets)))
        return torch.stack(maps, dim=1)

    def ours(method: str, k: int) -> Tensor:
        return attention_maps(model, x, top[:, :k], method=method, size=(size, size))

    def timed(fn: Callable[[], Tensor]) -> tuple[Tensor, float]:
        sync(device)
        start = time.perf_counter()
        out = fn()
        sync(device)
        return out, time.perf_counter() - start

    checks, details = [], {}
    for method, k in (("gradcam", 1), ("gradcam", 5), ("gradcampp", 1)):
        ours(method, k)  # warm-up
        theirs(method, 1)
        mine_s, their_s, err = [], [], 0.0
        for _ in range(sizes.cam_rounds):  # interleaved
            a, t_a = timed(lambda m=method, k=k: ours(m, k))
            b, t_b = timed(lambda m=method, k=k: theirs(m, k))
            mine_s.append(t_a)
            their_s.append(t_b)
            err = max(err, rel_err(a, b))
        ratio = statistics.median(their_s) / statistics.median(mine_s)
        key = f"{method} {'1 target' if k == 1 else f'top-{k}'}"
        details[key] = {
            "max_rel_err": err,
            "speedup": ratio,
            "discatt_ms": [t * 1e3 for t in mine_s],
            "grad_cam_ms": [t * 1e3 for t in their_s],
        }
        checks.append(check(f"{key} max rel err", err, err <= CAM_TOLERANCE))
        checks.append(check(f"{key} grad-cam time / ours", ratio, ratio > 0))
    return {"checks": checks, "details": details}


# --- (e) train and resume through Accelerate --------------------------------------------------


class _Stop(Exception):
    """Raised inside the trainer at the step after the step checkpoint: a crash."""


def write_images(root: Path, classes: int, per_split: tuple[int, int], size: int) -> None:
    """An image folder (train/, test/): noise with a class-coloured block at a class place."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in zip(("train", "test"), per_split, strict=True):
        for c in range(classes):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True, exist_ok=True)
            color = np.array([(c * 97) % 256, (c * 57 + 80) % 256, (c * 31 + 160) % 256])
            corner = (c * size // 5) % max(1, size // 2)
            for i in range(count):
                pixels = rng.integers(0, 80, (size, size, 3), dtype=np.uint8)
                pixels[corner : corner + size // 2, corner : corner + size // 2] = color
                Image.fromarray(pixels).save(folder / f"{i}.png")


def train_recipe(sizes: Sizes, device: torch.device, root: Path) -> dict[str, Any]:
    name, size, batch = sizes.train
    classes, per_train, per_test = sizes.train_images
    write_images(root / "data", classes, (per_train, per_test), size)
    return {
        "name": "gpu_check",
        "output_dir": str(root / "runs"),
        "seed": 0,
        "model": {"name": name},
        "data": {
            "source": "imagefolder",
            "path": str(root / "data"),
            "image_size": size,
            "augment": "pad_crop",
            "crop_padding": 2,
            "batch_size": batch,
            "num_workers": 0,
            "cache_dir": str(root / "cache"),
        },
        "optim": {"name": "momentum", "lr": 0.01, "weight_decay": 5.0e-4},
        "schedule": {"epochs": 1000, "sched": "cosine", "max_steps": sizes.max_steps},
        "attention": {"method": "pixel", "normalize": "softmax"},
        "accelerate": {
            "mixed_precision": "bf16",
            "cpu": device.type == "cpu",
            "log_with": ["json"],
            "log_every_n_steps": 1,
        },
        "checkpoint": {"every_epoch": False, "every_n_steps": sizes.stop_at, "keep_last": 3},
        "eval": {"every_n_epochs": 1000, "num_images": 0, "attention_max_samples": 32},
    }


def section_e(sizes: Sizes, device: torch.device, models: dict) -> dict[str, Any]:
    from discatt_timm.recipes import config_from_dict
    from discatt_timm.rundir import latest_checkpoint
    from discatt_timm.training import TrainerState, train
    from discatt_timm.training import loop as train_loop

    losses: dict[str, list[float]] = {"first": [], "resumed": []}
    original = train_loop.train_step
    phase = {"name": "first"}

    def counting_step(*args: Any, **kwargs: Any) -> Any:
        if phase["name"] == "first" and len(losses["first"]) == sizes.stop_at:
            raise _Stop  # the step checkpoint at stop_at is written: crash at the next step
        out = original(*args, **kwargs)
        losses[phase["name"]].append(float(out.loss.detach()))
        return out

    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        cfg = config_from_dict(train_recipe(sizes, device, Path(tmp)))
        run_dir = Path(cfg.output_dir) / cfg.name
        train_loop.train_step = counting_step
        try:
            started = time.perf_counter()
            with contextlib.suppress(_Stop):
                train(cfg)
            first_s = time.perf_counter() - started
            checkpoint = latest_checkpoint(run_dir)
            first_step = TrainerState.read(checkpoint / "trainer_state.json").global_step
            phase["name"] = "resumed"
            started = time.perf_counter()
            result = train(cfg, resume=True)
            resumed_s = time.perf_counter() - started
        finally:
            train_loop.train_step = original
        metrics = dict(result.metrics)
    all_losses = losses["first"] + losses["resumed"]
    finite = bool(all_losses) and all(math.isfinite(v) for v in all_losses)
    continued = len(losses["resumed"]) == result.global_step - first_step
    details = {
        "first_step": first_step,
        "resumed_step": result.global_step,
        "steps_first": len(losses["first"]),
        "steps_resumed": len(losses["resumed"]),
        "first_s": first_s,
        "resumed_s": resumed_s,
        "loss_first": losses["first"][:1] + losses["first"][-1:],
        "loss_last": losses["resumed"][-1:],
        "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float, str))},
    }
    checks = [
        check("losses finite (all steps)", len(all_losses), finite),
        check("checkpoint step (first run)", first_step, first_step == sizes.stop_at),
        check(
            "resumed run: final step",
            result.global_step,
            result.global_step == sizes.max_steps and result.global_step > first_step,
        ),
        check("resumed run: steps trained", len(losses["resumed"]), continued),
        check(
            "mixed precision",
            metrics.get("mixed_precision"),
            metrics.get("mixed_precision") == "bf16",
        ),
    ]
    return {"checks": checks, "details": details}


# --- driver ----------------------------------------------------------------------------------


def run_section(key: str, fn: Callable, *args: Any) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        result = fn(*args)
        if "skipped" in result:
            result["status"] = "skipped"
        else:
            ok = bool(result["checks"]) and all(c["pass"] for c in result["checks"])
            result["status"] = "passed" if ok else "failed"
    except Exception as err:  # one bad section must not lose the others
        traceback.print_exc(file=sys.stderr)
        line = (str(err).strip().splitlines() or [""])[0]
        result = {"status": "failed", "error": f"{type(err).__name__}: {line}", "checks": []}
    result["seconds"] = time.perf_counter() - started
    print(f"[{key}] {result['status']} in {result['seconds']:.1f} s", flush=True)
    return result


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.5g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return "null" if value is None else str(value)


def print_table(sections: dict[str, dict[str, Any]], wall: float) -> None:
    rows = []
    for name, result in sections.items():
        if result["status"] == "skipped":
            rows.append((name, "-", result["skipped"], "skip"))
        elif "error" in result:
            rows.append((name, "section raised", "(error below)", "FAIL"))
        for c in result.get("checks", []):
            rows.append((name, c["check"], fmt(c["value"]), "pass" if c["pass"] else "FAIL"))
    widths = [max(len(r[i]) for r in rows + [("section", "check", "value", "")]) for i in range(3)]
    print()
    print(f"{'section':{widths[0]}s}  {'check':{widths[1]}s}  {'value':>{widths[2]}s}  result")
    for section, name, value, verdict in rows:
        print(f"{section:{widths[0]}s}  {name:{widths[1]}s}  {value:>{widths[2]}s}  {verdict}")
    for name, result in sections.items():
        if "error" in result:
            print(f"{name} error: {result['error']}")
    print(f"total wall time {wall:.1f} s")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda or cpu (default cuda)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CPU, < 1 minute)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/gpu_check.json"))
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--sections", default="abcde", help="a subset of abcde (default all)")
    args = parser.parse_args(argv)
    if args.out.exists() and not args.overwrite:
        parser.error(f"{args.out} exists; pass --overwrite to replace it")
    if args.device not in ("cpu", "cuda"):
        parser.error(f"--device must be cpu or cuda, got {args.device!r}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    if not args.sections or set(args.sections) - set(SECTIONS):
        parser.error(f"--sections must be letters of abcde, got {args.sections!r}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    wall = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sizes = QUICK if args.quick else FULL
    if device.type == "cuda":  # strict fp32 for (a) and (b)'s reference (and the whole run)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    meta = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "argv": sys.argv[1:] if argv is None else list(argv),
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "threads": torch.get_num_threads(),
        "quick": args.quick,
        "tf32": False if device.type == "cuda" else None,
        "sizes": asdict(sizes),
    }
    print(
        f"gpu_check {meta['date']}: {meta['gpu'] or meta['device']}, torch {torch.__version__}, "
        f"timm {timm.__version__}, {meta['threads']} CPU threads"
    )
    models: dict[str, tuple[nn.Module, Tensor, Tensor]] = {}  # (a) and (b)'s, trained once
    funcs = {"a": section_a, "b": section_b, "c": section_c, "d": section_d, "e": section_e}
    sections = {}
    for letter, key in SECTIONS.items():
        if letter in args.sections:
            sections[key] = run_section(key, funcs[letter], sizes, device, models)
            if device.type == "cuda":
                torch.cuda.empty_cache()
    meta["wall_s"] = time.perf_counter() - wall
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "sections": sections}, indent=1) + "\n")
    print_table(sections, meta["wall_s"])
    print(f"wrote {args.out}")
    return 1 if any(s["status"] == "failed" for s in sections.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
