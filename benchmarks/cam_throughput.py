"""Attention-map throughput: ``discatt_timm.attention_maps`` against pytorch-grad-cam (issue #3).

resnet50 (random weights) at 224 px, batch 16, eval mode, maps of ``layer4`` resized to the
input and min-max scaled per map (the tools' final maps), for 1 target per image (its top
class) and for the top-5 classes per image. pytorch-grad-cam maps one target per image per call
(a forward and a backward into every parameter), so its top-5 is 5 calls; ``attention_maps``
does one forward for any number of classes, and at a pooled-linear head's last layer needs no
backward at all (``dY_c/dF = W_c / HW``). Timed interleaved after one warm-up call of each
function; medians over the rounds. Before any speed is printed the final maps are asserted
equal (max abs difference <= 1e-3).

``--model`` takes one or more comma-separated cases of ``CASES``: ``resnet50`` (the default,
as above) and ``vit_small_patch16_224`` (issue 14; opt-in, a ViT round takes about 35 s on
one thread). For a transformer the layer is the module ``discatt_timm.resolve_layers`` names
(``blocks.11.norm1`` for ``last``, ``blocks.8.norm1`` for ``inner``), and pytorch-grad-cam gets
the usual ViT ``reshape_transform``: drop ``model.num_prefix_tokens`` tokens and fold the rest
onto ``model.patch_embed.grid_size`` (``B x N x D`` -> ``B x D x h x w``), which is what
``attention_maps`` does with token outputs.

A round: ours GradCAM (1 target, top-5), pytorch-grad-cam GradCAM for the top-5 (5 calls; its
rank-1 call gives the 1-target figure), ours GradCAM++ (1 target), pytorch-grad-cam GradCAM++
(1 call). ``--all`` adds GradCAM++ for the top-5 (4 more calls a round: past 5 minutes on 2 CPU
cores).

    .venv/bin/python benchmarks/cam_throughput.py
    .venv/bin/python benchmarks/cam_throughput.py --model vit_small_patch16_224 --threads 1
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version

import numpy as np
import timm
import torch
from machine import cpu_name, pick_devices
from torch import Tensor, nn

from discatt_timm import attention_maps, resolve_layers
from discatt_timm.layers import get_submodule

TOLERANCE = 1e-3  # max abs difference of the final, input-size maps
TARGETS = {1: 2.5, 5: 10.0}  # issue #3: GradCAM speed-up with 1 target, with the top-5
TARGET_MODEL = "resnet50"  # issue #3's targets are for resnet50's layer4
# case: True when its layer outputs tokens (B x N x D), folded for pytorch-grad-cam
CASES = {"resnet50": False, "vit_small_patch16_224": True}


def grad_cam_version() -> str:
    try:
        return version("grad-cam")
    except PackageNotFoundError:
        return "unknown"


def token_reshape(model: nn.Module) -> Callable[[Tensor], Tensor]:
    """pytorch-grad-cam's ``reshape_transform`` for a ViT: prefix tokens dropped, grid folded."""
    p = model.num_prefix_tokens
    h, w = model.patch_embed.grid_size
    return lambda t: t[:, p:].reshape(t.size(0), h, w, t.size(2)).permute(0, 3, 1, 2)


def pgc_maps(
    model: nn.Module,
    layer: nn.Module,
    x: Tensor,
    top: Tensor,
    method: str,
    ranks: int,
    reshape: Callable[[Tensor], Tensor] | None = None,
) -> tuple[np.ndarray, list[float]]:
    """pytorch-grad-cam's final maps ``B x ranks x H x W``, one call per rank; seconds per call."""
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam_class = {"gradcam": GradCAM, "gradcampp": GradCAMPlusPlus}[method]
    maps, seconds = [], []
    for rank in range(ranks):
        sync(x.device)
        start = time.perf_counter()
        with cam_class(model=model, target_layers=[layer], reshape_transform=reshape) as cam:
            targets = [ClassifierOutputTarget(int(c)) for c in top[:, rank]]
            maps.append(cam(input_tensor=x, targets=targets))
        sync(x.device)
        seconds.append(time.perf_counter() - start)
    return np.stack(maps, axis=1), seconds


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Tensor], device: torch.device) -> tuple[Tensor, float]:
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - start


def max_diff(a: Tensor, b: np.ndarray) -> float:
    return float((a.float().cpu() - torch.from_numpy(b)).abs().max())


def run(args: argparse.Namespace, name: str, device: torch.device) -> list[str]:
    """Time and check one model on one device; print its table; return the target-check lines."""
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False).to(device).eval()
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    with torch.no_grad():
        top = model(x).topk(5, dim=1).indices  # B x 5, chosen once, given to both tools
    if CASES[name]:  # a transformer: the registry's layer, tokens folded for pytorch-grad-cam
        layers = resolve_layers(model)
        layer_name = layers.last if args.layer == "last" else layers.inner
        reshape = token_reshape(model)
    else:
        layer_name = "layer4" if args.layer == "last" else "layer3"
        reshape = None
    layer = get_submodule(model, layer_name)
    methods = ("gradcam", "gradcampp")
    pgc_ranks = {"gradcam": 5, "gradcampp": 5 if args.all else 1}  # rank 1 is the 1-target call
    rows = [(m, 1) for m in methods] + [(m, 5) for m in methods if pgc_ranks[m] == 5]

    def mine(method: str, k: int) -> Tensor:
        """``attention_maps``' final maps ``B x k x H x W`` of the top-k classes."""
        size = x.shape[-2:]
        return attention_maps(model, x, top[:, :k], method=method, layer=args.layer, size=size)

    # Warm-up: one call of each function, not timed.
    for method, k in rows:
        mine(method, k)
    for method in methods:
        pgc_maps(model, layer, x, top, method, ranks=1, reshape=reshape)

    ours_s: dict[tuple[str, int], list[float]] = {row: [] for row in rows}
    pgc_s: dict[tuple[str, int], list[float]] = {row: [] for row in rows}
    diffs: dict[tuple[str, int], float] = {}
    for round_ in range(args.repeats):
        for method in methods:  # interleaved: ours, theirs, ours, theirs, ...
            for k in (1, 5):
                if (method, k) not in ours_s:
                    continue
                maps, seconds = timed(lambda m=method, k=k: mine(m, k), device)
                ours_s[method, k].append(seconds)
                if round_ == 0:
                    diffs[method, k] = maps  # compared below, once pytorch-grad-cam has run
            ref, calls = pgc_maps(model, layer, x, top, method, pgc_ranks[method], reshape)
            pgc_s[method, 1].append(calls[0])
            if pgc_ranks[method] == 5:
                pgc_s[method, 5].append(sum(calls))
            if round_ == 0:
                for k in (1, 5):
                    if (method, k) in diffs:
                        diffs[method, k] = max_diff(diffs[method, k], ref[:, :k])
    return report(args, name, device, ours_s, pgc_s, diffs, layer_name)


def report(
    args: argparse.Namespace,
    name: str,
    device: torch.device,
    ours_s: dict[tuple[str, int], list[float]],
    pgc_s: dict[tuple[str, int], list[float]],
    diffs: dict[tuple[str, int], float],
    layer_name: str,
) -> list[str]:
    bad = {key: d for key, d in diffs.items() if not d <= TOLERANCE}
    if bad:
        raise AssertionError(f"maps differ from pytorch-grad-cam by more than {TOLERANCE}: {bad}")
    print(
        f"\n{name} @ {args.size} px, batch {args.batch}, {layer_name} ({args.layer}), "
        f"{device.type}: {args.repeats} interleaved rounds (medians)"
    )
    print(f"agreement: PASS, max abs difference of the final maps <= {TOLERANCE} for every row")
    print(
        f"{'targets':>8s}  {'method':10s} {'discatt ms':>11s} {'grad-cam ms':>12s} "
        f"{'speed-up':>9s} {'max |diff|':>11s}"
    )
    checks = []
    for (method, k), times in ours_s.items():
        mine, theirs = statistics.median(times), statistics.median(pgc_s[method, k])
        speedup = theirs / mine
        label = "1 target" if k == 1 else f"top-{k}"
        print(
            f"{label:>8s}  {method:10s} {mine * 1e3:11.0f} {theirs * 1e3:12.0f} "
            f"{speedup:8.2f}x {diffs[method, k]:11.1e}"
        )
        is_target = name == TARGET_MODEL and device.type == "cpu" and args.layer == "last"
        if method == "gradcam" and is_target:
            limit = TARGETS[k]
            checks.append(
                f"{'PASS' if speedup >= limit else 'MISS'}  GradCAM, {label} per image: "
                f"{speedup:.2f}x faster >= {limit}x"
            )
    print("raw ms per round:")
    for (method, k), times in ours_s.items():
        print(f"  discatt {method} k={k}: " + " ".join(f"{t * 1e3:.0f}" for t in times))
    for (method, k), times in pgc_s.items():
        print(f"  grad-cam {method} k={k}: " + " ".join(f"{t * 1e3:.0f}" for t in times))
    return checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds (default 7)")
    parser.add_argument(
        "--device", default="auto", help="cpu, cuda, or auto: cpu, then cuda when available"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (CPU)")
    parser.add_argument(
        "--model",
        default="resnet50",
        help=f"comma-separated cases: {', '.join(CASES)} (default resnet50)",
    )
    parser.add_argument("--size", type=int, default=224, help="input px (default 224)")
    parser.add_argument("--batch", type=int, default=16, help="batch size (default 16)")
    parser.add_argument(
        "--layer",
        choices=["last", "inner"],
        default="last",
        help="layer4 or layer3 (a ViT: the registry's last or inner block)",
    )
    parser.add_argument("--all", action="store_true", help="also time GradCAM++ for the top-5")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    models = [m.strip() for m in args.model.split(",") if m.strip()]
    unknown = [m for m in models if m not in CASES]
    if unknown or not models:
        parser.error(f"unknown --model {args.model!r}; choose from {', '.join(CASES)}")
    try:
        import pytorch_grad_cam  # noqa: F401
    except ImportError:
        parser.error("needs pytorch-grad-cam: pip install grad-cam (the 'test' extra)")
    devices = pick_devices(parser, args.device)

    torch.set_num_threads(args.threads)
    print(
        f"cam_throughput {datetime.date.today()}: torch {torch.__version__}, timm "
        f"{timm.__version__}, pytorch-grad-cam {grad_cam_version()}, CPU {cpu_name()}, "
        f"torch.set_num_threads({args.threads})"
    )
    if "cuda" in devices:
        print(f"GPU: {torch.cuda.get_device_name()}")
    checks: list[str] = []
    for device_name in devices:
        for name in models:
            checks += run(args, name, torch.device(device_name))
    if checks:
        print("\ntargets (issue #3; CPU, layer4):")
        print("\n".join(checks))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
