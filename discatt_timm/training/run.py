"""A run while it trains (``Run``: what ``setup`` built, the position, the last metrics) and
what it leaves (``TrainResult``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import TrainConfig
from ..data import DataBundle
from ..losses import AttentionLossOutput
from .checkpoint import TrainerState

__all__ = ["Run", "TrainResult"]


@dataclass(frozen=True)
class TrainResult:
    """What a run left: its directory, final metrics and files."""

    run_dir: Path
    metrics: dict[str, Any]
    global_step: int
    epochs_done: int
    checkpoint: Path | None
    model_file: Path


@dataclass
class Run:
    """Everything one run holds while it trains (built by ``setup``)."""

    cfg: TrainConfig
    accelerator: Any
    run_dir: Path
    data: DataBundle
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any | None
    criterion: Callable[..., AttentionLossOutput]
    train_loader: Any
    eval_loader: Any
    state: TrainerState = field(default_factory=TrainerState)
    checkpoint: Path | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    metrics_step: int = -1  # the optimizer step ``metrics`` were measured at

    @property
    def stopped(self) -> bool:
        """All epochs done, or ``schedule.max_steps`` reached."""
        max_steps = self.cfg.schedule.max_steps
        return self.state.epoch >= self.cfg.schedule.epochs or (
            max_steps is not None and self.state.global_step >= max_steps
        )
