"""The Accelerate trainer: ``train(cfg) -> TrainResult``, one code path for every device.

Run a recipe::

    discatt train --recipe recipes/cifar100_resnet110_pixel.yaml --set optim.lr=0.05
    accelerate launch -m discatt_timm.train --recipe recipes/... [--resume]
    # two CPU processes (gloo); `accelerate launch --cpu --num_processes 2` starts only ONE:
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 -m discatt_timm.train ...

On a busy CPU machine export ``OMP_WAIT_POLICY=PASSIVE`` (idle OpenMP threads then sleep
instead of spinning: a quickstart step measured 15-18 s without it, 0.6-0.85 s with it).

``train`` reads like Accelerate's ``cv_example``: accelerator, seed, data, model, optimizer,
one ``prepare``, scheduler, then epochs of ``train_step`` under ``accelerator.accumulate``
and an evaluation gathered with ``gather_for_metrics``. ``attention.method: none`` trains the
plain baseline through the same code (cross-entropy / multi-label soft margin).

Run directory ``<output_dir>/<name>``: ``recipe.yaml`` (resolved), ``checkpoints/step_N``
(``accelerator.save_state`` + ``trainer_state.json``; written to a temporary folder then
renamed, with ``checkpoints/latest`` replaced atomically, so a crash never leaves a
half-written latest checkpoint), ``logs/`` (trackers), ``metrics.json``, ``model.safetensors``
+ ``config.json`` (timm's ``save_for_hf`` format, loaded by
``timm.create_model("local-dir:<run>", pretrained=True)``) and ``attention_maps.png``.
``--resume`` restores model, optimizer, scheduler, gradient scaler, RNG states and the
position in the epoch (``skip_first_batches``).

Not supported, on purpose: ``torch.compile`` (a double backward through compiled code fails;
only the layers below the inner attention layer could be compiled) and DDP ``static_graph``
with attention supervision (refused: gradients silently stop being all-reduced when the first
backward of an iteration is the attention ``autograd.grad``). The resume is bitwise exact
when the model has no dropout (augmentation is seeded per sample and epoch). Tested on CPU
with one and two processes (DDP, gloo); FSDP through an Accelerate config is untested, and
the final ``model.safetensors`` export assumes unsharded weights.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .data import DataError, build_data, build_loaders, load_splits
from .losses import AttentionLossOutput, ClassificationLoss, DiscriminativeAttentionLoss
from .metrics import evaluate
from .recipes import dump_recipe, load_recipe
from .train_config import ModelConfig, OptimConfig, RecipeError, ScheduleConfig, TrainConfig

__all__ = [
    "CheckpointError",
    "ClassificationLoss",
    "TrainResult",
    "TrainerState",
    "add_arguments",
    "build_criterion",
    "build_model",
    "build_optimizer",
    "build_scheduler",
    "latest_checkpoint",
    "main",
    "refuse_static_graph",
    "run",
    "save_checkpoint",
    "train",
    "train_step",
]

CHECKPOINTS = "checkpoints"
LATEST = "latest"
STATE_FILE = "trainer_state.json"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be written, found or loaded (the message says which)."""


# --- model, criterion, optimizer, scheduler --------------------------------------------------


def _weights_file(path: str | Path) -> Path:
    """A weights file: the path itself, or ``model.safetensors`` in a run or checkpoint dir."""
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        for candidate in (path / "model.safetensors", path / "pytorch_model.bin"):
            if candidate.is_file():
                return candidate
        checkpoint = latest_checkpoint(path)
        if checkpoint is not None and (checkpoint / "model.safetensors").is_file():
            return checkpoint / "model.safetensors"
    raise CheckpointError(
        f"model.checkpoint {str(path)!r} is not a weights file or a directory holding "
        "model.safetensors (a run directory or one of its checkpoints)"
    )


def _state_dict_shapes(file: Path) -> dict[str, tuple[int, ...]]:
    """Tensor shapes of a weights file, read safely (safetensors or ``weights_only``)."""
    try:
        if file.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(file), framework="pt") as handle:
                return {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}  # noqa: SIM118
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(
            f"cannot read weights from {file} ({type(err).__name__}: {err}); only safetensors "
            "and torch.load(weights_only=True) files are accepted"
        ) from err
    for key in ("state_dict", "model", "state_dict_ema"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    return {
        k.removeprefix("module."): tuple(v.shape) for k, v in state.items() if isinstance(v, Tensor)
    }


def build_model(cfg: ModelConfig, num_classes: int) -> nn.Module:
    """A timm model for ``num_classes``, with the starting weights of ``cfg``.

    Pretrained weights come through timm (``pretrained=True``: a tag, ``hf-hub:`` or
    ``local-dir:``); a local ``checkpoint`` goes through timm's ``pretrained_cfg_overlay``
    (``file=``). Either way timm drops a classifier whose class count differs, and the model
    keeps a fresh one of ``num_classes`` outputs.
    """
    import timm

    kwargs: dict[str, Any] = dict(
        num_classes=num_classes, in_chans=cfg.in_chans, drop_rate=cfg.drop_rate
    )
    try:
        if cfg.checkpoint:
            file = _weights_file(cfg.checkpoint)
            shapes = _state_dict_shapes(file)
            classifier = timm.models.get_pretrained_cfg_value(cfg.name.split(".")[0], "classifier")
            classifiers = [classifier] if isinstance(classifier, str) else list(classifier or [])
            head = next(
                (shapes[f"{c}.weight"][0] for c in classifiers if f"{c}.weight" in shapes), 0
            )
            overlay = dict(file=str(file), num_classes=head)
            model = timm.create_model(
                cfg.name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs
            )
        else:
            model = timm.create_model(cfg.name, pretrained=cfg.pretrained, **kwargs)
    except (RuntimeError, ValueError, OSError) as err:
        if isinstance(err, CheckpointError):
            raise
        what = (
            f"from {cfg.checkpoint}" if cfg.checkpoint else "(pretrained)" if cfg.pretrained else ""
        )
        raise CheckpointError(
            f"cannot build model {cfg.name!r} {what}: {type(err).__name__}: {err}"
        ) from err
    if not hasattr(model, "in_chans"):
        # timm reads the input channels of a model from this attribute (e.g. in save_for_hf);
        # models outside timm's zoo may lack it.
        model.in_chans = cfg.in_chans
    if cfg.freeze:
        from timm.utils import freeze

        names = dict(model.named_modules())
        for name in cfg.freeze:
            if name not in names:
                raise RecipeError(
                    f"recipe key 'model.freeze' names no module {name!r} of {cfg.name}"
                )
        freeze(model, list(cfg.freeze))
    return model


def build_criterion(model: nn.Module, cfg: TrainConfig) -> Callable[[Tensor, Tensor], Any]:
    """``DiscriminativeAttentionLoss`` when supervised, else ``ClassificationLoss``."""
    if not cfg.supervised:
        return ClassificationLoss(model, multilabel=cfg.data.multilabel)
    options = dataclasses.asdict(cfg.attention)
    return DiscriminativeAttentionLoss(model, layers=cfg.model.layers, **options)


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """timm's ``create_optimizer_v2``; with ``backbone_lr_scale < 1`` two LR groups.

    Frozen parameters are left out. With a lower backbone rate the groups are (classifier,
    backbone) x (decay, no decay), the backbone's ``lr`` scaled (timm schedulers then scale
    each group from its own base value).
    """
    from timm.optim import create_optimizer_v2

    common = dict(opt=cfg.name, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum)
    if cfg.backbone_lr_scale == 1.0:
        return create_optimizer_v2(model, filter_bias_and_bn=cfg.filter_bias_and_bn, **common)
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    head_ids = {id(p) for p in head.parameters()} if isinstance(head, nn.Module) else set()
    skip = set(getattr(model, "no_weight_decay", lambda: set())())
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = cfg.filter_bias_and_bn and (
            param.ndim <= 1 or name.endswith(".bias") or name in skip
        )
        groups.setdefault((id(param) in head_ids, not no_decay), []).append(param)
    params = [
        {
            "params": members,
            "lr": cfg.lr * (1.0 if is_head else cfg.backbone_lr_scale),
            "weight_decay": cfg.weight_decay if decay else 0.0,
        }
        for (is_head, decay), members in sorted(groups.items(), reverse=True)
    ]
    return create_optimizer_v2(params, **common)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, updates_per_epoch: int):
    """timm's ``create_scheduler_v2`` (``None`` for a constant rate)."""
    if cfg.sched == "none":
        return None
    from timm.scheduler import create_scheduler_v2

    scheduler, _ = create_scheduler_v2(
        optimizer,
        sched=cfg.sched,
        num_epochs=cfg.epochs,
        decay_epochs=cfg.decay_epochs,
        decay_milestones=list(cfg.milestones),
        decay_rate=cfg.decay_rate,
        min_lr=cfg.min_lr,
        warmup_lr=cfg.warmup_lr,
        warmup_epochs=cfg.warmup_epochs,
        step_on_epochs=cfg.step_on_epochs,
        updates_per_epoch=updates_per_epoch,
    )
    return scheduler


def refuse_static_graph(model: nn.Module, supervised: bool) -> None:
    """Raise if ``model`` is DDP with ``static_graph`` while the attention losses are on.

    DDP's static graph records which parameters the first backward reaches; when that
    backward is the attention ``autograd.grad`` (features only), it then silently skips the
    gradient all-reduce (measured, METHOD.md).
    """
    ddp = isinstance(model, nn.parallel.DistributedDataParallel)
    if supervised and ddp and getattr(model, "static_graph", False):
        raise RecipeError(
            "recipe key 'accelerate.static_graph' must be false with attention supervision: "
            "DDP static_graph silently stops the gradient all-reduce when the first "
            "backward of an iteration is the attention autograd.grad"
        )


# --- one step ----------------------------------------------------------------------------------


def train_step(
    model: nn.Module,
    batch: Sequence[Tensor],
    criterion: Callable[[Tensor, Tensor], AttentionLossOutput],
    optimizer: torch.optim.Optimizer,
    *,
    accelerator: Any | None = None,
    clip_grad: float | None = None,
    epoch: float | None = None,
) -> AttentionLossOutput:
    """Forward + loss, backward (the double backward when supervised), clip, step, zero grad.

    ``epoch`` (fractional) reaches the criterion for the attention warm-up (``warmup_epochs``).

    ``criterion`` wraps ``model`` (``DiscriminativeAttentionLoss`` or ``ClassificationLoss``).
    With an ``accelerator`` (and inside ``accelerator.accumulate``), backward, clipping and the
    step go through it: the step and zero-grad only act on synchronising micro-steps. The
    caller owns the train/eval mode.
    """
    x, targets = batch[0], batch[1]
    if accelerator is not None:
        # Accelerate autocasts the model's forward; the criterion's class gradients and
        # losses run in the same mixed-precision context (a no-op in full precision).
        with accelerator.autocast():
            out = criterion(x, targets, epoch=epoch)
        accelerator.backward(out.loss)
        if clip_grad is not None and accelerator.sync_gradients:
            accelerator.clip_grad_norm_(model.parameters(), clip_grad)
    else:
        out = criterion(x, targets, epoch=epoch)
        out.loss.backward()
        if clip_grad is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return out


# --- checkpoints ---------------------------------------------------------------------------


@dataclass
class TrainerState:
    """Position of a run: ``epoch`` (0-based, the one in progress), ``batch`` (micro-batches
    of it already trained) and ``global_step`` (optimizer steps)."""

    epoch: int = 0
    batch: int = 0
    global_step: int = 0

    @classmethod
    def read(cls, path: Path) -> TrainerState:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError) as err:
            raise CheckpointError(f"checkpoint state {path} is unreadable ({err})") from err


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file, fsync it, then ``os.replace`` it onto ``path``."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _step_of(path: Path) -> int:
    try:
        return int(path.name.removeprefix("step_"))
    except ValueError:
        return -1


def _complete(path: Path) -> bool:
    return path.is_dir() and (path / STATE_FILE).is_file()


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a run: ``checkpoints/latest`` if it names a complete
    one, else the complete ``checkpoints/step_N`` with the largest N; None if none."""
    root = Path(run_dir) / CHECKPOINTS
    pointer = root / LATEST
    if pointer.is_file():
        candidate = root / pointer.read_text().strip()
        if candidate.name and _complete(candidate):
            return candidate
    done = sorted((p for p in root.glob("step_*") if _complete(p)), key=_step_of)
    return done[-1] if done else None


def save_checkpoint(
    accelerator: Any, run_dir: str | Path, state: TrainerState, *, keep_last: int = 2
) -> Path:
    """``accelerator.save_state`` into ``checkpoints/step_N``, crash-safe.

    All processes write into ``checkpoints/.tmp-step_N``; the main process adds
    ``trainer_state.json``, renames the folder to ``step_N``, points ``checkpoints/latest``
    at it (temp file + ``os.replace``) and deletes all but the ``keep_last`` newest. A kill at
    any moment leaves the previous checkpoint and pointer intact. With several machines the
    run directory must be on a shared filesystem.
    """
    root = Path(run_dir) / CHECKPOINTS
    final = root / f"step_{state.global_step:09d}"
    if _complete(final):  # e.g. the epoch ends right on a step checkpoint: same weights
        return final
    tmp = root / f".tmp-{final.name}"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        _write_atomic(tmp / STATE_FILE, json.dumps(dataclasses.asdict(state)))
        shutil.rmtree(final, ignore_errors=True)  # an incomplete leftover of the same step
        os.replace(tmp, final)
        _write_atomic(root / LATEST, final.name + "\n")
        complete = sorted((p for p in root.glob("step_*") if _complete(p)), key=_step_of)
        for old in complete[:-keep_last]:
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def _load_checkpoint(accelerator: Any, path: Path) -> TrainerState:
    state = TrainerState.read(path / STATE_FILE)
    try:
        accelerator.load_state(str(path))
    except Exception as err:
        raise CheckpointError(
            f"checkpoint {path} is corrupt or does not match this recipe "
            f"({type(err).__name__}: {err}); delete it to resume from an older one"
        ) from err
    return state


# --- trackers ----------------------------------------------------------------------------------


def _json_tracker_class():
    from accelerate.tracking import GeneralTracker

    class JSONTracker(GeneralTracker):
        """Accelerate tracker appending one JSON record per ``log`` to ``metrics.jsonl``."""

        name = "json"
        requires_logging_directory = True
        main_process_only = True

        def __init__(self, run_name: str, logging_dir: str | Path) -> None:
            super().__init__()
            self.run_name = run_name
            self.directory = Path(logging_dir)
            self.path = self.directory / "metrics.jsonl"

        @property
        def tracker(self) -> Path:
            return self.path

        def store_init_configuration(self, values: dict) -> None:
            self.directory.mkdir(parents=True, exist_ok=True)
            (self.directory / "config.json").write_text(json.dumps(values, indent=1))

        def log(self, values: dict, step: int | None = None, **kwargs: Any) -> None:
            self.directory.mkdir(parents=True, exist_ok=True)
            record = {"step": step, "time": time.time(), **values}
            with open(self.path, "a") as handle:
                handle.write(json.dumps(record) + "\n")

    return JSONTracker


def _trackers(cfg: TrainConfig, run_dir: Path) -> list[Any]:
    out: list[Any] = []
    for name in cfg.accelerate.log_with:
        if name == "json":
            out.append(_json_tracker_class()(cfg.name, run_dir / "logs"))
            continue
        if name == "tensorboard":
            try:
                import tensorboard  # noqa: F401
            except ImportError:
                raise RecipeError(
                    "recipe key 'accelerate.log_with' lists tensorboard, which is not "
                    "installed: pip install tensorboard (or log_with: [json])"
                ) from None
        out.append(name)
    return out


def _flat_config(cfg: TrainConfig) -> dict[str, Any]:
    """Tracker hyper-parameters: dotted keys, scalar values (lists as text, None as 'none')."""

    def walk(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in data.items():
            if isinstance(value, dict):
                out.update(walk(value, f"{prefix}{key}."))
            elif value is None:
                out[f"{prefix}{key}"] = "none"
            elif isinstance(value, list):
                out[f"{prefix}{key}"] = json.dumps(value)
            else:
                out[f"{prefix}{key}"] = value
        return out

    return walk(cfg.to_dict())


# --- the run ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainResult:
    """What a run left: its directory, final metrics and files."""

    run_dir: Path
    metrics: dict[str, Any]
    global_step: int
    epochs_done: int
    checkpoint: Path | None
    model_file: Path


class _Meter:
    """Running sums of the loss parts of one epoch (on device; one sync when read)."""

    keys = ("loss", "cls", "siou_inner", "siou_last", "consistency")

    def __init__(self) -> None:
        self.sums: Tensor | None = None
        self.count = 0

    def update(self, out: AttentionLossOutput) -> None:
        values = torch.stack([getattr(out, k).detach().float() for k in self.keys])
        self.sums = values if self.sums is None else self.sums + values
        self.count += 1

    def means(self, accelerator: Any | None = None) -> dict[str, float]:
        if self.sums is None:
            return {}
        means = self.sums / self.count
        if accelerator is not None:
            means = accelerator.reduce(means, reduction="mean")
        return dict(zip(self.keys, means.tolist(), strict=True))


def _set_bn_eval(model: nn.Module) -> None:
    norms = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
    for module in model.modules():
        if isinstance(module, norms):
            module.eval()


def _summary(
    epoch: int, epochs: int, step: int, train: dict, lr: float, metrics: dict, secs: float
) -> str:
    parts = [f"epoch {epoch}/{epochs}", f"step {step}"]
    if train:
        parts.append(
            f"loss {train['loss']:.4f} (cls {train['cls']:.4f} sIoU_i {train['siou_inner']:.3f} "
            f"sIoU_l {train['siou_last']:.3f} L_ac {train['consistency']:.3f})"
        )
    parts.append(f"lr {lr:.3g}")
    if metrics:
        shown = [
            f"{k} {metrics[k]:.4f}"
            for k in ("top1", "top5", "mAP", "roc_auc", "siou_inner", "siou_last", "consistency")
            if k in metrics
        ]
        parts.append("eval " + " ".join(shown))
    parts.append(f"{secs:.0f}s")
    return " | ".join(parts)


def _make_accelerator(cfg: TrainConfig, run_dir: Path):
    from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs
    from accelerate.utils import ProjectConfiguration

    trackers = _trackers(cfg, run_dir)
    try:
        return Accelerator(
            cpu=cfg.accelerate.cpu,
            mixed_precision=cfg.accelerate.mixed_precision,
            gradient_accumulation_steps=cfg.accelerate.gradient_accumulation_steps,
            log_with=trackers or None,
            project_config=ProjectConfiguration(
                project_dir=str(run_dir), logging_dir=str(run_dir / "logs")
            ),
            # The recipe's batch is global: each process gets its slice of it, and the data
            # order is seeded, so 1 or N processes see the same samples per step.
            dataloader_config=DataLoaderConfiguration(
                split_batches=True, use_seedable_sampler=True, data_seed=cfg.seed
            ),
            kwargs_handlers=[
                DistributedDataParallelKwargs(
                    static_graph=cfg.accelerate.static_graph,
                    find_unused_parameters=cfg.accelerate.find_unused_parameters,
                )
            ],
            step_scheduler_with_optimizer=False,
        )
    except ValueError as err:  # e.g. fp16 without a GPU
        raise RecipeError(f"recipe section 'accelerate': {err}") from err


def _resume_point(accelerator: Any, run_dir: Path, resume: bool) -> Path | None:
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is not None and not resume:
        raise CheckpointError(
            f"run directory {run_dir} already holds checkpoints; pass --resume to continue it "
            "or choose another run name (--set name=...)"
        )
    if resume and checkpoint is None:
        accelerator.print(f"no checkpoint in {run_dir}: starting from scratch")
    return checkpoint if resume else None


def _release_accelerator_state() -> None:
    """Forget Accelerate's process-wide precision/accumulation settings (not the process
    group), so that a following ``train`` in the same process may use other ones."""
    from accelerate.state import AcceleratorState, GradientState

    for state in (AcceleratorState, GradientState):
        reset = getattr(state, "_reset_state", None)  # private, guarded: only a convenience
        if reset is not None:
            reset()


def train(cfg: TrainConfig, *, resume: bool = False) -> TrainResult:
    """Train and evaluate one recipe; see the module docstring for what the run leaves.

    Raises ``RecipeError``, ``DataError`` or ``CheckpointError`` (one-line messages) for bad
    recipes, missing data and unusable checkpoints.
    """
    run_dir = Path(cfg.output_dir) / cfg.name
    accelerator = _make_accelerator(cfg, run_dir)
    try:
        return _train(cfg, accelerator, run_dir, resume)
    finally:
        _release_accelerator_state()


def _train(cfg: TrainConfig, accelerator: Any, run_dir: Path, resume: bool) -> TrainResult:
    from accelerate.utils import set_seed
    from timm.models import save_for_hf
    from tqdm.auto import tqdm

    if cfg.supervised and cfg.accelerate.mixed_precision == "fp16":
        accelerator.print(
            "warning: fp16 with attention supervision: the class gradients are not loss-scaled "
            "(METHOD.md); prefer bf16"
        )
    set_seed(cfg.seed, deterministic=cfg.deterministic)
    start_from = _resume_point(accelerator, run_dir, resume)
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        for stale in (run_dir / CHECKPOINTS).glob(".tmp-*"):  # left by a crash
            shutil.rmtree(stale, ignore_errors=True)
        dump_recipe(cfg, run_dir / "recipe.yaml")

    # Data first: the class count sizes the model's head; the main process converts/caches.
    with accelerator.main_process_first():
        splits = load_splits(cfg.data)
    num_classes = cfg.model.num_classes or splits.num_classes
    if num_classes < splits.num_classes:
        raise DataError(
            f"model.num_classes={num_classes} is smaller than the {splits.num_classes} classes "
            "of the data"
        )
    model = build_model(cfg.model, num_classes)
    data = build_data(cfg.data, model, splits, seed=cfg.seed)
    for key, batch in (
        ("batch_size", cfg.data.batch_size),
        ("eval_batch_size", cfg.data.eval_batch_size),
    ):
        if batch is not None and batch % accelerator.num_processes:
            raise RecipeError(
                f"recipe key 'data.{key}' ({batch}) must be divisible by the "
                f"{accelerator.num_processes} processes (it is the global batch)"
            )
    train_loader, eval_loader = build_loaders(data, cfg.data)
    optimizer = build_optimizer(model, cfg.optim)

    model, optimizer, train_loader, eval_loader = accelerator.prepare(
        model, optimizer, train_loader, eval_loader
    )
    refuse_static_graph(model, cfg.supervised)
    accumulation = cfg.accelerate.gradient_accumulation_steps
    scheduler = build_scheduler(
        optimizer, cfg.schedule, math.ceil(len(train_loader) / accumulation)
    )
    if scheduler is not None:
        accelerator.register_for_checkpointing(scheduler)
    criterion = build_criterion(model, cfg)

    state = TrainerState()
    if start_from is not None:
        state = _load_checkpoint(accelerator, start_from)
        accelerator.print(
            f"resumed from {start_from} (epoch {state.epoch + 1}, batch {state.batch})"
        )
    accelerator.init_trackers(cfg.name, config=_flat_config(cfg))

    def run_eval() -> dict[str, Any]:
        with accelerator.autocast():  # the training precision, attention terms included
            return evaluate(
                accelerator.unwrap_model(model),
                eval_loader,
                multilabel=cfg.data.multilabel,
                topk=cfg.eval.topk,
                attention=cfg.eval.attention,
                attention_method=cfg.eval.attention_method,
                attention_max_samples=cfg.eval.attention_max_samples,
                layers=cfg.model.layers,
                accelerator=accelerator,
            )

    epochs, max_steps = cfg.schedule.epochs, cfg.schedule.max_steps
    log_every = cfg.accelerate.log_every_n_steps
    every_n_steps = cfg.checkpoint.every_n_steps
    metrics: dict[str, Any] = {}
    metrics_step = -1
    checkpoint = start_from
    stop = max_steps is not None and state.global_step >= max_steps
    while state.epoch < epochs and not stop:
        epoch, started = state.epoch, time.time()
        model.train()
        if cfg.model.bn_eval:
            _set_bn_eval(model)
        train_loader.set_epoch(epoch)  # seeds the shuffle and the per-sample augmentation
        batches = train_loader
        if state.batch:  # resumed mid-epoch: continue at the next unseen batch
            batches = accelerator.skip_first_batches(train_loader, state.batch)
        meter, window = _Meter(), _Meter()
        progress = tqdm(
            batches,
            total=len(train_loader),
            initial=state.batch,
            desc=f"epoch {epoch + 1}/{epochs}",
            disable=not accelerator.is_local_main_process,
            leave=False,
            dynamic_ncols=True,
        )
        for batch in progress:
            with accelerator.accumulate(model):
                out = train_step(
                    model,
                    batch,
                    criterion,
                    optimizer,
                    accelerator=accelerator,
                    clip_grad=cfg.optim.clip_grad,
                    epoch=epoch + state.batch / len(train_loader),
                )
            state.batch += 1
            meter.update(out)
            window.update(out)
            if not accelerator.sync_gradients:
                continue
            state.global_step += 1
            if scheduler is not None:
                scheduler.step_update(num_updates=state.global_step)
            if state.global_step % log_every == 0:
                values = {f"train/{k}": v for k, v in window.means().items()}
                values["train/lr"] = optimizer.param_groups[0]["lr"]
                accelerator.log(values, step=state.global_step)
                progress.set_postfix(loss=f"{values['train/loss']:.4f}")
                window = _Meter()
            # (the last step of an epoch is saved by the epoch's checkpoint, scheduler stepped)
            at_end = state.batch >= len(train_loader)
            if every_n_steps and state.global_step % every_n_steps == 0 and not at_end:
                checkpoint = save_checkpoint(
                    accelerator, run_dir, state, keep_last=cfg.checkpoint.keep_last
                )
            if max_steps is not None and state.global_step >= max_steps:
                stop = True
                break
        progress.close()
        finished_epoch = state.batch >= len(train_loader)
        if finished_epoch:
            state.epoch, state.batch = epoch + 1, 0
            if scheduler is not None:
                scheduler.step(state.epoch)
        last = state.epoch >= epochs or stop
        if (finished_epoch and state.epoch % cfg.eval.every_n_epochs == 0) or last:
            metrics, metrics_step = run_eval(), state.global_step
            accelerator.log({f"eval/{k}": v for k, v in metrics.items()}, step=state.global_step)
        train_means = meter.means(accelerator)
        accelerator.print(
            _summary(
                epoch + 1,
                epochs,
                state.global_step,
                train_means,
                optimizer.param_groups[0]["lr"],
                metrics if metrics_step == state.global_step else {},
                time.time() - started,
            )
        )
        if cfg.checkpoint.every_epoch or last:
            checkpoint = save_checkpoint(
                accelerator, run_dir, state, keep_last=cfg.checkpoint.keep_last
            )

    if metrics_step != state.global_step:  # e.g. resumed a finished run
        metrics, metrics_step = run_eval(), state.global_step
    result_metrics = {
        "recipe": cfg.name,
        "split": cfg.data.eval_split,
        "epochs_done": state.epoch,
        "global_step": state.global_step,
        "attention_supervision": cfg.attention.method,
        "attention_metrics_method": cfg.eval.attention_method if cfg.eval.attention else None,
        "attention_metrics_grad_mode": "detached",
        "mixed_precision": cfg.accelerate.mixed_precision,
        "num_processes": accelerator.num_processes,
        **metrics,
    }
    accelerator.wait_for_everyone()
    model_file = run_dir / "model.safetensors"
    if accelerator.is_main_process:
        _write_atomic(run_dir / "metrics.json", json.dumps(result_metrics, indent=2) + "\n")
        core = accelerator.unwrap_model(model, keep_fp32_wrapper=False)  # plain forward
        save_for_hf(
            core,
            str(run_dir),
            model_config={"label_names": list(data.class_names)},
            model_args={"in_chans": cfg.model.in_chans},
            safe_serialization=True,
            data_config=data.data_config,
        )
        if cfg.eval.num_images:
            from .report import save_attention_grid

            save_attention_grid(
                core,
                data.eval,
                run_dir / "attention_maps.png",
                class_names=data.class_names,
                mean=data.data_config["mean"],
                std=data.data_config["std"],
                num_images=cfg.eval.num_images,
                method=cfg.eval.attention_method,
                layers=cfg.model.layers,
            )
        accelerator.print(f"run directory: {run_dir}")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return TrainResult(
        run_dir=run_dir,
        metrics=result_metrics,
        global_step=state.global_step,
        epochs_done=state.epoch,
        checkpoint=checkpoint,
        model_file=model_file,
    )


# --- command line ------------------------------------------------------------------------------

USER_ERRORS = (RecipeError, DataError, CheckpointError)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``discatt train`` / ``python -m discatt_timm.train``."""
    parser.add_argument(
        "--recipe",
        required=True,
        help="recipe file, or the name of one in recipes/ (e.g. fashion_mnist_quickstart)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="override recipe keys; values are read as YAML "
        "(e.g. --set optim.lr=0.05 data.batch_size=64)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from the run directory's latest checkpoint (from scratch if it has none)",
    )
    parser.add_argument(
        "--print-recipe", action="store_true", help="print the resolved recipe and exit"
    )


def run(args: argparse.Namespace) -> int:
    """Run ``discatt train`` from parsed arguments; user errors raise (the CLI prints them)."""
    cfg = load_recipe(args.recipe, args.overrides)
    if args.print_recipe:
        print(dump_recipe(cfg), end="")
        return 0
    train(cfg, resume=args.resume)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m discatt_timm.train",
        description="Train a timm CNN with (or without) discriminative attention supervision.",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
