"""``train(cfg) -> TrainResult``: one training run, one code path for every device.

It reads like Accelerate's ``cv_example``: ``setup`` (accelerator, seed, data, model, optimizer,
one ``prepare``, scheduler, criterion, resume), then epochs of ``train_epoch`` (``train_step``
under ``accelerator.accumulate``), ``end_epoch`` (evaluation gathered with
``gather_for_metrics``, the epoch line, the checkpoint), and ``export`` (``metrics.json``,
``save_for_hf`` weights, the attention grid). ``attention.method: none`` trains the plain
baseline through the same code (cross-entropy / multi-label soft margin).

``--resume`` restores model, optimizer, scheduler, gradient scaler, RNG states and the
position in the epoch (``skip_first_batches``); it is bitwise exact when the model has no
dropout (augmentation is seeded per sample and epoch).

Not supported, on purpose: ``torch.compile`` (a double backward through compiled code fails)
and DDP ``static_graph`` with attention supervision (refused by ``TrainConfig``: gradients
silently stop being all-reduced when the first backward of an iteration is the attention
``autograd.grad``). Tested on CPU with one and two processes (DDP, gloo); FSDP through an
Accelerate config is untested, and the final export assumes unsharded weights.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ..config import TrainConfig
from ..data import build_data, build_loaders, load_splits
from ..errors import DataError, TrainingError
from ..evaluation import evaluate
from ..losses import AttentionLossOutput
from ..recipes import dump_recipe
from .builders import (
    build_criterion,
    build_model,
    build_optimizer,
    build_scheduler,
    make_accelerator,
    release_accelerator_state,
)
from .checkpoint import load_checkpoint, remove_stale, resume_point, save_checkpoint
from .export import export, result_metrics
from .preflight import check_batches, check_before_work, check_same_recipe, deterministic
from .run import Run, TrainResult
from .tracking import Meter, flat_config, summary

if TYPE_CHECKING:
    from accelerate import Accelerator

__all__ = [
    "end_epoch",
    "evaluate_run",
    "setup",
    "start_epoch",
    "train",
    "train_epoch",
    "train_step",
]


def train_step(
    model: nn.Module,
    batch: Sequence[Tensor],
    criterion: Callable[..., AttentionLossOutput],
    optimizer: torch.optim.Optimizer,
    *,
    accelerator: Any | None = None,
    clip_grad: float | None = None,
    epoch: float | None = None,
    step: int | None = None,
) -> AttentionLossOutput:
    """Forward + loss, backward (the double backward when supervised), clip, step, zero grad.

    ``epoch`` (fractional) reaches the criterion for the attention warm-up (``warmup_epochs``),
    ``step`` (the optimizer step, the same for every micro-batch of it) for ``every``.

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
            out = criterion(x, targets, epoch=epoch, step=step)
        accelerator.backward(out.loss)
        if clip_grad is not None and accelerator.sync_gradients:
            accelerator.clip_grad_norm_(model.parameters(), clip_grad)
    else:
        out = criterion(x, targets, epoch=epoch, step=step)
        out.loss.backward()
        if clip_grad is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return out


def _prepare_run_dir(cfg: TrainConfig, accelerator: Any, run_dir: Path) -> None:
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        remove_stale(run_dir)  # left by a crash
        dump_recipe(cfg, run_dir / "recipe.yaml")


def setup(cfg: TrainConfig, accelerator: Any, run_dir: Path, resume: bool) -> Run:
    """Seed, data, model, optimizer, ``prepare``, scheduler, criterion, resume: a ``Run``."""
    from accelerate.utils import set_seed

    if cfg.supervised and cfg.accelerate.mixed_precision == "fp16":
        accelerator.print(
            "warning: fp16 with attention supervision: the class gradients are not loss-scaled "
            "(METHOD.md); prefer bf16"
        )
    check_before_work(cfg)
    set_seed(cfg.seed)
    if cfg.deterministic:
        deterministic()
    start_from = resume_point(accelerator, run_dir, resume)
    if start_from is not None:
        check_same_recipe(cfg, run_dir)
    _prepare_run_dir(cfg, accelerator, run_dir)

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
    check_batches(cfg, accelerator.num_processes)
    train_loader, eval_loader = build_loaders(data, cfg.data)
    optimizer = build_optimizer(model, cfg.optim)

    model, optimizer, train_loader, eval_loader = accelerator.prepare(
        model, optimizer, train_loader, eval_loader
    )
    accumulation = cfg.accelerate.gradient_accumulation_steps
    updates = -(-len(train_loader) // accumulation)  # ceil
    scheduler = build_scheduler(optimizer, cfg.schedule, updates)
    run = Run(
        cfg=cfg,
        accelerator=accelerator,
        run_dir=run_dir,
        data=data,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        criterion=build_criterion(model, cfg),
        train_loader=train_loader,
        eval_loader=eval_loader,
        checkpoint=start_from,
    )
    if start_from is not None:
        run.state = load_checkpoint(accelerator, start_from, scheduler=scheduler)
        accelerator.print(
            f"resumed from {start_from} (epoch {run.state.epoch + 1}, batch {run.state.batch})"
        )
    accelerator.init_trackers(cfg.name, config=flat_config(cfg))
    return run


def _set_bn_eval(model: nn.Module) -> None:
    norms = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
    for module in model.modules():
        if isinstance(module, norms):
            module.eval()


def _after_step(run: Run, progress: Any, window: Meter) -> Meter:
    """One optimizer step done: scheduler, logging every ``log_every_n_steps``, step
    checkpoints. Returns the logging window (a fresh one after each log)."""
    cfg, state, accelerator = run.cfg, run.state, run.accelerator
    state.global_step += 1
    if run.scheduler is not None:
        run.scheduler.step_update(num_updates=state.global_step)
    if state.global_step % cfg.accelerate.log_every_n_steps == 0:
        values = {f"train/{k}": v for k, v in window.means().items()}
        values["train/lr"] = run.optimizer.param_groups[0]["lr"]
        if not math.isfinite(values["train/loss"]):  # the means are read here anyway
            raise TrainingError(
                f"the training loss is {values['train/loss']} at step {state.global_step}: "
                "check the inputs for NaN/inf values, or lower optim.lr (the last checkpoint "
                "is kept for --resume)"
            )
        accelerator.log(values, step=state.global_step)
        progress.set_postfix(loss=f"{values['train/loss']:.4f}")
        window = Meter()
    # (the last step of an epoch is saved by the epoch's checkpoint, scheduler stepped)
    every = cfg.checkpoint.every_n_steps
    at_end = state.batch >= len(run.train_loader)
    if every and state.global_step % every == 0 and not at_end:
        run.checkpoint = save_checkpoint(
            accelerator,
            run.run_dir,
            state,
            keep_last=cfg.checkpoint.keep_last,
            scheduler=run.scheduler,
        )
    return window


def start_epoch(run: Run) -> None:
    """Seed the epoch in this process: the shuffle (the loader's ``set_epoch``) and the
    per-sample augmentation (the dataset's ``set_epoch``, which Accelerate's loader does not
    reach behind its batch-sampler shard when there are two or more processes)."""
    run.train_loader.set_epoch(run.state.epoch)
    run.data.train.set_epoch(run.state.epoch)


def _update_start(batch: int, accelerator: Accelerator) -> int:
    """The first micro-batch of the optimizer update that ``batch`` belongs to: every
    micro-batch of one update sees the same (fractional) epoch, so warm-up switches between
    updates and accumulation stays equal to the large batch."""
    steps = accelerator.gradient_accumulation_steps
    return batch - batch % steps


def train_epoch(run: Run) -> Meter:
    """Train the rest of the current epoch (or up to ``max_steps``); the epoch's loss means."""
    from tqdm.auto import tqdm

    cfg, state, accelerator, loader = run.cfg, run.state, run.accelerator, run.train_loader
    run.model.train()
    if cfg.model.bn_eval:
        _set_bn_eval(run.model)
    start_epoch(run)
    batches = loader
    if state.batch:  # resumed mid-epoch: continue at the next unseen batch
        batches = accelerator.skip_first_batches(loader, state.batch)
    meter, window = Meter(), Meter()
    progress = tqdm(
        batches,
        total=len(loader),
        initial=state.batch,
        desc=f"epoch {state.epoch + 1}/{cfg.schedule.epochs}",
        disable=not accelerator.is_local_main_process,
        leave=False,
        dynamic_ncols=True,
    )
    for batch in progress:
        with accelerator.accumulate(run.model):
            out = train_step(
                run.model,
                batch,
                run.criterion,
                run.optimizer,
                accelerator=accelerator,
                clip_grad=cfg.optim.clip_grad,
                epoch=state.epoch + _update_start(state.batch, accelerator) / len(loader),
                step=state.global_step,
            )
        state.batch += 1
        meter.update(out)
        window.update(out)
        if not accelerator.sync_gradients:
            continue
        window = _after_step(run, progress, window)
        if run.stopped:
            break
    progress.close()
    return meter


def _forked_rng(device: torch.device) -> Any:
    """Torch's RNG on the CPU and ``device``, restored on exit (``torch.random.fork_rng``)."""
    if device.type == "cpu":
        return torch.random.fork_rng(devices=[])
    return torch.random.fork_rng(devices=[device], device_type=device.type)


def evaluate_run(run: Run) -> dict[str, Any]:
    """Metrics of the current weights on the eval split, gathered over processes.

    Iterating the eval loader draws from torch's RNG; the fork puts it back, so dropout and
    every other draw of training are the same however often a run evaluates.
    """
    cfg = run.cfg
    with _forked_rng(run.accelerator.device), run.accelerator.autocast():
        run.metrics = evaluate(
            run.accelerator.unwrap_model(run.model),
            run.eval_loader,
            multilabel=cfg.data.multilabel,
            topk=cfg.eval.topk,
            attention=cfg.eval.attention,
            attention_method=cfg.eval.attention_method,
            attention_max_samples=cfg.eval.attention_max_samples,
            layers=cfg.model.layers,
            accelerator=run.accelerator,
        )
    run.metrics_step = run.state.global_step
    return run.metrics


def end_epoch(run: Run, epoch: int, meter: Meter, started: float) -> None:
    """After ``train_epoch``: advance the position, evaluate when due, print, checkpoint."""
    cfg, state = run.cfg, run.state
    finished = state.batch >= len(run.train_loader)
    if finished:
        state.epoch, state.batch = epoch + 1, 0
        if run.scheduler is not None:
            run.scheduler.step(state.epoch)
    if (finished and state.epoch % cfg.eval.every_n_epochs == 0) or run.stopped:
        metrics = evaluate_run(run)
        run.accelerator.log({f"eval/{k}": v for k, v in metrics.items()}, step=state.global_step)
    line = summary(
        epoch + 1,
        cfg.schedule.epochs,
        state.global_step,
        meter.means(run.accelerator),
        run.optimizer.param_groups[0]["lr"],
        run.metrics if run.metrics_step == state.global_step else {},
        time.time() - started,
    )
    run.accelerator.print(line)
    if cfg.checkpoint.every_epoch or run.stopped:
        run.checkpoint = save_checkpoint(
            run.accelerator,
            run.run_dir,
            state,
            keep_last=cfg.checkpoint.keep_last,
            scheduler=run.scheduler,
        )


def train(cfg: TrainConfig, *, resume: bool = False) -> TrainResult:
    """Train and evaluate one recipe; the run directory is ``output_dir/name`` (``rundir``).

    Raises ``RecipeError``, ``DataError``, ``LoadError`` or ``CheckpointError`` (one-line
    messages) for bad recipes, missing data, unusable weights and checkpoints.
    """
    run_dir = Path(cfg.output_dir) / cfg.name
    try:
        accelerator = make_accelerator(cfg, run_dir)
        run = setup(cfg, accelerator, run_dir, resume)
        while not run.stopped:
            epoch, started = run.state.epoch, time.time()
            meter = train_epoch(run)
            end_epoch(run, epoch, meter, started)
        if run.metrics_step != run.state.global_step:  # e.g. resumed a finished run
            evaluate_run(run)
        metrics = result_metrics(run)
        accelerator.wait_for_everyone()
        model_file = export(run, metrics)
        accelerator.wait_for_everyone()
        accelerator.end_training()
        return TrainResult(
            run_dir=run_dir,
            metrics=metrics,
            global_step=run.state.global_step,
            epochs_done=run.state.epoch,
            checkpoint=run.checkpoint,
            model_file=model_file,
        )
    finally:
        release_accelerator_state()
