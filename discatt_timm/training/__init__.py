"""The Accelerate trainer: ``train(cfg) -> TrainResult``.

``builders`` (accelerator, model, criterion, optimizer, scheduler from the recipe),
``checkpoint`` (atomic ``save_state``, resume), ``tracking`` (trackers, loss means, the epoch
line), ``run`` (a run's state), ``loop`` (``setup``, ``train_epoch``, ``end_epoch``, ``train``)
and ``export`` (what a finished run leaves).
"""

from .builders import build_criterion, build_model, build_optimizer, build_scheduler
from .checkpoint import TrainerState, save_checkpoint
from .loop import train, train_step
from .run import TrainResult

__all__ = [
    "TrainResult",
    "TrainerState",
    "build_criterion",
    "build_model",
    "build_optimizer",
    "build_scheduler",
    "save_checkpoint",
    "train",
    "train_step",
]
