"""What ``train`` builds from a recipe: the accelerator, model, criterion, optimizer, scheduler.

Each is a plain function of the recipe's section, so a test can build one alone. The model
comes through ``loading.load_model`` (the same loader as explain and metrics); the optimizer
and scheduler are timm's ``create_optimizer_v2`` / ``create_scheduler_v2``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import ModelConfig, OptimConfig, ScheduleConfig, TrainConfig
from ..errors import RecipeError
from ..loading import load_model
from ..losses import ClassificationLoss, DiscriminativeAttentionLoss
from .tracking import trackers

__all__ = [
    "build_criterion",
    "build_model",
    "build_optimizer",
    "build_scheduler",
    "make_accelerator",
    "release_accelerator_state",
]


def make_accelerator(cfg: TrainConfig, run_dir: Path) -> Any:
    """The run's ``Accelerator``: precision, accumulation, trackers, seeded global batches."""
    from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs
    from accelerate.utils import ProjectConfiguration

    log_with = trackers(cfg, run_dir)
    try:
        accelerator = Accelerator(
            cpu=cfg.accelerate.cpu,
            mixed_precision=cfg.accelerate.mixed_precision,
            gradient_accumulation_steps=cfg.accelerate.gradient_accumulation_steps,
            log_with=log_with or None,
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
    if cfg.accelerate.mixed_precision == "fp16" and accelerator.device.type == "cpu":
        raise RecipeError(
            "recipe key 'accelerate.mixed_precision' is fp16, which the CPU runs in fp32 (the "
            "run would say fp16 and be fp32): use bf16 or no on the CPU, fp16 on a GPU"
        )
    return accelerator


def release_accelerator_state() -> None:
    """Forget Accelerate's process-wide precision/accumulation settings (not the process
    group), so that a following ``train`` in the same process may use other ones."""
    from accelerate.state import AcceleratorState, GradientState

    for state in (AcceleratorState, GradientState):
        reset = getattr(state, "_reset_state", None)  # private, guarded: only a convenience
        if reset is not None:
            reset()


def build_model(cfg: ModelConfig, num_classes: int) -> nn.Module:
    """A timm model for ``num_classes`` (train mode), with the starting weights of ``cfg``.

    Pretrained weights come through timm (``pretrained=True``: a tag, ``hf-hub:`` or
    ``local-dir:``); a local ``checkpoint`` (file or run directory) is read safely and loaded
    by ``load_model``. Either way a classifier whose class count differs is not loaded and the
    model keeps a fresh one of ``num_classes`` outputs.
    """
    model = load_model(
        cfg.name,
        cfg.checkpoint,
        pretrained=cfg.pretrained,
        num_classes=num_classes,
        in_chans=cfg.in_chans,
        drop_rate=cfg.drop_rate,
    ).train()
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


def build_criterion(
    model: nn.Module, cfg: TrainConfig
) -> DiscriminativeAttentionLoss | ClassificationLoss:
    """``DiscriminativeAttentionLoss`` when supervised, else ``ClassificationLoss``."""
    if not cfg.supervised:
        return ClassificationLoss(model, multilabel=cfg.data.multilabel)
    return DiscriminativeAttentionLoss(model, cfg.attention, layers=cfg.model.layers)


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


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, updates_per_epoch: int
) -> Any | None:
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
