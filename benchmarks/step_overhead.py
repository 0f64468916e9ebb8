"""Cost of a training step with the attention losses, as ratios to a plain timm step (issue #3).

Four steps on the same model, batch and optimizer, timed interleaved (a b c d a b c d ...)
after warm-up rounds; medians over the rounds:

  a. plain     forward, cross-entropy, backward, SGD step;
  b. exact     ``DiscriminativeAttentionLoss`` (the default: double backward), backward, SGD step;
  c. detached  the same with ``grad_mode='detached'`` (class gradients as constants);
  d. naive     ``discatt_timm.reference.naive_attention_loss``: hooks, one ``autograd.grad``
               per class and per layer with ``create_graph=True``, no analytic last layer.

Cases: resnet18 at 64 px batch 32 and cifar_resnet56 at 32 px batch 64, 10 classes, random
weights; opt-in, cifar_resnet20 at 32 px batch 64 (the seeded study's model and batch, so that
its arms' cost per step is measured, not read off minutes from different machines). Opt-in
(issue 14), with ``--cases vit_tiny_patch16_224``: vit_tiny_patch16_224 at 224 px batch 16 (its
layers are ``blocks.8.norm1`` and ``blocks.11.norm1``, token outputs; the exact loss runs
attention on its math path, as fused SDPA has no double backward). It is not in the default list
because it takes 1.6 min on one thread (a round about 6.5 s), which would take the default run
(2.5 min) past 3 minutes. The naive reference cannot run it, so its row reads n/a: it takes maps
of the raw ``B x N x D`` module outputs (IndexError: no token folding), and its
``create_graph=True`` gradient would go through timm's fused SDPA, which has no double backward
(it does not switch ``fused_attn`` off as the exact loss does).

``--precision bf16`` runs every step under bf16 autocast with softmax-normalised pixel
maps (max-normalised ones are refused there) and times one more step, ``exact_bf16_maps``: the
exact loss with its maps combined in bf16 as before issue 13, so that the cost of keeping the
maps and losses in fp32 is the ratio of ``exact`` to it. Also per step: peak memory above the
level before the step (CPU: the allocation and free events of
``torch.profiler(profile_memory=True)``; CUDA: ``torch.cuda.max_memory_allocated``) and FLOPs
(``torch.utils.flop_counter``: the work done, free of timing noise). ``--profile``
prints where the exact step's extra time goes, by operator and input shape.

    .venv/bin/python benchmarks/step_overhead.py     # CPU, then CUDA when one is available
    .venv/bin/python benchmarks/step_overhead.py --threads 1 --cases vit_tiny_patch16_224
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import itertools
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Sequence

import timm
import torch
import torch.nn.functional as F
from machine import cpu_name, pick_devices
from torch import Tensor
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

import discatt_timm  # noqa: F401  (registers cifar_resnet*)
from discatt_timm import DiscriminativeAttentionLoss, resolve_layers
from discatt_timm import losses as discatt_losses
from discatt_timm.reference import naive_attention_loss
from discatt_timm.subset import subset_size

CASES = {  # name: (input px, batch)
    "resnet18": (64, 32),
    "cifar_resnet56": (32, 64),
    "cifar_resnet20": (32, 64),  # the study's model and batch (its clutter and multi regimes)
    "vit_tiny_patch16_224": (224, 16),
}
DEFAULT_CASES = ("resnet18", "cifar_resnet56")  # the others are opt-in: see the docstring
# Variants a case cannot run, and why (printed as n/a rows).
UNSUPPORTED = {
    "vit_tiny_patch16_224": {
        "naive": "no token layouts in the naive reference; fused SDPA has no double backward"
    },
}
VARIANTS = ("plain", "exact", "detached", "naive")
BF16_VARIANTS = ("plain", "exact", "exact_bf16_maps", "detached")
TARGET_CASE = "resnet18"  # issue #3's targets are for resnet18 @ 64 px, batch 32, CPU
TIME_TARGETS = {"exact": 1.35, "detached": 1.10}
# issue 15: one attention step in 4, or the terms on a quarter of the batch (either selection)
LAZY_TARGETS = {"every_4": 1.15, "random_0.25": 1.2, "margin_0.25": 1.2}
MEMORY_TARGETS = {"exact": 1.5}


class Case:
    """One model, optimizer and batch, and the training steps on them."""

    def __init__(
        self,
        name: str,
        device: torch.device,
        precision: str = "fp32",
        every: Sequence[int] = (),
        fractions: Sequence[float] = (),
    ) -> None:
        size, batch = CASES[name]
        self.name, self.device, self.precision = name, device, precision
        variants = BF16_VARIANTS if precision == "bf16" else VARIANTS
        variants += tuple(f"every_{k}" for k in every)
        variants += tuple(
            f"{sel}_{f:g}" for f in fractions for sel in ("split", "margin", "random")
        )
        # steps per timed call: a whole every-k cycle (one attention step, k - 1 plain ones)
        self.cycle = {v: 1 for v in variants} | {f"every_{k}": k for k in every}
        torch.manual_seed(0)  # the random subsets come from the global generator
        self.skipped = {v: why for v, why in UNSUPPORTED.get(name, {}).items() if v in variants}
        self.variants = tuple(v for v in variants if v not in self.skipped)
        torch.manual_seed(0)
        model = timm.create_model(name, pretrained=False, num_classes=10).to(device).train()
        self.optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        x = torch.randn(batch, 3, size, size, device=device)
        y = torch.randint(0, 10, (batch,), device=device)
        options = {"normalize": "softmax"} if precision == "bf16" else {}
        exact = DiscriminativeAttentionLoss(model, grad_mode="exact", **options)
        detached = DiscriminativeAttentionLoss(model, grad_mode="detached", **options)
        layers = resolve_layers(model)
        losses: dict[str, Callable[[], torch.Tensor]] = {
            "plain": lambda: F.cross_entropy(model(x), y),
            "exact": lambda: exact(x, y).loss,
            "exact_bf16_maps": lambda: _maps_in_model_precision(lambda: exact(x, y).loss),
            "detached": lambda: detached(x, y).loss,
            "naive": lambda: naive_attention_loss(
                model, x, y, inner=layers.inner, last=layers.last
            ),
        }
        for k in every:  # the criterion counts its calls: each cycle starts on an attention step
            lazy = DiscriminativeAttentionLoss(model, grad_mode="exact", every=k, **options)
            losses[f"every_{k}"] = lambda lazy=lazy: lazy(x, y).loss
        for f in fractions:  # attention terms on ceil(f * B) samples, cross-entropy on all
            count = subset_size(batch, f)
            losses[f"split_{f:g}"] = lambda count=count: split_cross_entropy(model, x, y, count)
            for sel in ("margin", "random"):
                part = DiscriminativeAttentionLoss(
                    model, grad_mode="exact", batch_fraction=f, select=sel, **options
                )
                losses[f"{sel}_{f:g}"] = lambda part=part: part(x, y).loss
        self.losses = losses

    def step(self, variant: str) -> None:
        """One training step, or one whole cycle of an ``every_k`` variant."""
        for _ in range(self.cycle[variant]):
            self.optimizer.zero_grad(set_to_none=True)
            with torch.autocast(self.device.type, torch.bfloat16, enabled=self.precision == "bf16"):
                loss = self.losses[variant]()
            loss.backward()
            self.optimizer.step()

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def split_cross_entropy(model: torch.nn.Module, x: Tensor, y: Tensor, count: int) -> Tensor:
    """Cross-entropy, mean over the ``B`` samples, from two forwards: the first ``count`` and
    the rest. A plain step with the batch split as ``random_f`` splits it: the floor of any
    implementation that maps a part of the batch apart from the rest (small batches run the
    kernels less efficiently than one large one)."""
    head = F.cross_entropy(model(x[:count]), y[:count], reduction="sum")
    tail = F.cross_entropy(model(x[count:]), y[count:], reduction="sum")
    return (head + tail) / y.shape[0]


def _maps_in_model_precision(loss: Callable[[], torch.Tensor]) -> torch.Tensor:
    """``loss()`` with the fp32 maps of issue 13 undone (maps in the autocast dtype)."""
    saved = discatt_losses.full_precision, discatt_losses.as_float32
    discatt_losses.full_precision = lambda device_type: contextlib.nullcontext()
    discatt_losses.as_float32 = lambda x: x
    try:
        return loss()
    finally:
        discatt_losses.full_precision, discatt_losses.as_float32 = saved


def time_interleaved(case: Case, repeats: int, warmup: int) -> dict[str, list[float]]:
    """Seconds per step for each variant, rounds a b c d a b c d ...; warm-up rounds dropped."""
    times: dict[str, list[float]] = {variant: [] for variant in case.variants}
    for round_ in range(warmup + repeats):
        for variant in case.variants:
            case.sync()
            start = time.perf_counter()
            case.step(variant)
            case.sync()
            if round_ >= warmup:  # per step: a whole cycle's time over its steps
                times[variant].append((time.perf_counter() - start) / case.cycle[variant])
    return times


def peak_memory(case: Case, variant: str) -> int:
    """Bytes allocated by one step above the level before it, at the step's peak."""
    case.step(variant)  # optimizer state exists, as in the timed rounds
    # The step would first free last step's .grad, allocated before any profiler started:
    # free it here so that every allocation and free inside the step is counted.
    case.optimizer.zero_grad(set_to_none=True)
    if case.device.type == "cuda":
        case.sync()
        base = torch.cuda.memory_allocated(case.device)
        torch.cuda.reset_peak_memory_stats(case.device)
        case.step(variant)
        case.sync()
        return torch.cuda.max_memory_allocated(case.device) - base
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        case.step(variant)
    events = sorted(
        (event.start_ns(), event.nbytes())
        for event in prof.profiler.kineto_results.events()
        if event.name() == "[memory]"
    )
    return max(itertools.accumulate(nbytes for _, nbytes in events), default=0)


def count_flops(case: Case, variant: str) -> int:
    """FLOPs per step (a whole cycle's over its steps)."""
    with FlopCounterMode(display=False) as counter:
        case.step(variant)
    return counter.get_total_flops() // case.cycle[variant]


def paired_ratios(times: dict[str, list[float]], variant: str) -> list[float]:
    """Per-round ratios to the plain step of the same round (robust to slow drifts in load)."""
    return [t / p for t, p in zip(times[variant], times["plain"], strict=True)]


def quartiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


def report(case: Case, times: dict[str, list[float]], peaks: dict, flops: dict) -> list[str]:
    """Print the table of one case; return its target-check lines."""
    size, batch = CASES[case.name]
    medians = {v: statistics.median(times[v]) for v in case.variants}
    print(
        f"\n{case.name} @ {size} px, batch {batch}, 10 classes, {case.device.type}: "
        f"{len(times['plain'])} interleaved rounds (medians)"
    )
    print(
        f"{'variant':15s} {'median ms':>10s} {'x plain':>8s} {'paired x [q1, q3]':>19s} "
        f"{'peak MiB':>9s} {'x plain':>8s} {'GFLOP':>7s} {'x plain':>8s}"
    )
    for v in case.variants:
        q1, q3 = quartiles(paired_ratios(times, v))
        print(
            f"{v:15s} {medians[v] * 1e3:10.1f} {medians[v] / medians['plain']:8.3f} "
            f"{f'[{q1:.3f}, {q3:.3f}]':>19s} {peaks[v] / 2**20:9.1f} "
            f"{peaks[v] / peaks['plain']:8.2f} {flops[v] / 1e9:7.2f} "
            f"{flops[v] / flops['plain']:8.3f}"
        )
    for v, why in case.skipped.items():
        print(
            f"{v:15s} {'n/a':>10s} {'n/a':>8s} {'n/a':>19s} {'n/a':>9s} {'n/a':>8s} {'n/a':>7s} "
            f"{'n/a':>8s}  ({why})"
        )
    print(
        "raw ms per round: "
        + "; ".join(f"{v} " + " ".join(f"{t * 1e3:.0f}" for t in times[v]) for v in case.variants)
    )
    checks = []
    if case.name == TARGET_CASE and case.device.type == "cpu" and case.precision == "fp32":
        for v, limit in TIME_TARGETS.items():
            ratio = medians[v] / medians["plain"]
            checks.append(
                f"{'PASS' if ratio <= limit else 'MISS'}  {v} time {ratio:.3f}x <= {limit}x "
                f"(naive {medians['naive'] / medians['plain']:.3f}x)"
            )
        for v, limit in MEMORY_TARGETS.items():
            ratio = peaks[v] / peaks["plain"]
            checks.append(
                f"{'PASS' if ratio <= limit else 'MISS'}  {v} peak memory {ratio:.2f}x <= {limit}x"
            )
        for v, limit in LAZY_TARGETS.items() if "plain" in medians else ():
            if v in medians:
                ratio = medians[v] / medians["plain"]
                checks.append(
                    f"{'PASS' if ratio <= limit else 'MISS'}  {v} time {ratio:.3f}x <= {limit}x "
                    f"(issue 15; FLOPs {flops[v] / flops['plain']:.3f}x)"
                )
    return checks


def print_profile(case: Case, steps: int = 3, rows: int = 20) -> None:
    """Self time of the exact step minus the plain step, by operator and input shapes."""
    per_key: dict[str, dict[tuple[str, str], float]] = {}
    for variant in ("plain", "exact"):
        case.step(variant)
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            for _ in range(steps):
                case.step(variant)
        table: dict[tuple[str, str], float] = defaultdict(float)
        for event in prof.key_averages(group_by_input_shape=True):
            shapes = str([s for s in event.input_shapes if s][:3])
            table[event.key, shapes] += event.self_cpu_time_total / steps / 1e3
        per_key[variant] = table
    plain, exact = per_key["plain"], per_key["exact"]
    total_plain, total_exact = sum(plain.values()), sum(exact.values())
    print(
        f"\nprofile of {case.name} ({case.device.type} self time per step, ms): plain "
        f"{total_plain:.0f}, exact {total_exact:.0f} (+{total_exact - total_plain:.0f}); "
        "largest differences:"
    )
    diffs = {key: exact.get(key, 0.0) - plain.get(key, 0.0) for key in set(plain) | set(exact)}
    for (op, shapes), extra in sorted(diffs.items(), key=lambda kv: -abs(kv[1]))[:rows]:
        print(f"{extra:+8.1f}  {op:34s} {shapes[:90]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=9, help="timed rounds (default 9)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds (default 2)")
    parser.add_argument(
        "--device",
        default="auto",
        help="cpu, cuda, or auto: cpu, then cuda when available (default auto)",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (CPU)")
    parser.add_argument(
        "--cases",
        default=",".join(DEFAULT_CASES),
        help=f"comma-separated, from {', '.join(CASES)} (default {','.join(DEFAULT_CASES)})",
    )
    parser.add_argument("--profile", action="store_true", help="print where exact's time goes")
    parser.add_argument(
        "--every",
        default="",
        help="comma-separated k: also time exact steps with every=k (one attention step in k; "
        "per-step average over whole cycles), e.g. 2,4,8",
    )
    parser.add_argument(
        "--fraction",
        default="",
        help="comma-separated f: also time exact steps with the attention terms on ceil(f*B) "
        "samples (margin_f and random_f rows), e.g. 0.5,0.25",
    )
    parser.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        default="fp32",
        help="fp32, or every step under bf16 autocast (default fp32)",
    )
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    try:
        every = [int(k) for k in args.every.split(",") if k.strip()]
    except ValueError:
        parser.error(f"--every must be comma-separated integers, got {args.every!r}")
    if any(k < 1 for k in every):
        parser.error(f"--every values must be >= 1, got {args.every!r}")
    try:
        fractions = [float(f) for f in args.fraction.split(",") if f.strip()]
    except ValueError:
        parser.error(f"--fraction must be comma-separated numbers, got {args.fraction!r}")
    if any(not 0 < f <= 1 for f in fractions):
        parser.error(f"--fraction values must lie in (0, 1], got {args.fraction!r}")
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        parser.error(f"unknown case {unknown[0]!r}; choose from {', '.join(CASES)}")
    devices = pick_devices(parser, args.device)

    torch.set_num_threads(args.threads)
    print(
        f"step_overhead {datetime.date.today()}: torch {torch.__version__}, timm "
        f"{timm.__version__}, CPU {cpu_name()}, torch.set_num_threads({args.threads})"
    )
    if "cuda" in devices:
        print(f"GPU: {torch.cuda.get_device_name()}")
    elif args.device == "auto":
        print("GPU: none available, CPU figures only")
    checks: list[str] = []
    for device_name in devices:
        for name in cases:
            case = Case(name, torch.device(device_name), args.precision, every, fractions)
            times = time_interleaved(case, args.repeats, args.warmup)
            peaks = {v: peak_memory(case, v) for v in case.variants}
            flops = {v: count_flops(case, v) for v in case.variants}
            checks += report(case, times, peaks, flops)
            if args.profile and device_name == "cpu":
                print_profile(case)
    if checks:
        print(f"\ntargets (issues #3 and #15; {TARGET_CASE} @ 64 px, batch 32, CPU):")
        print("\n".join(checks))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
