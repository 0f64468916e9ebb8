"""Settings: every frozen, validated dataclass of the package, in one place.

``AttentionLossConfig`` (the losses) and ``TrainConfig`` with its sections (one training run,
a recipe). Values are checked in ``__post_init__``: the loss's errors are ``ValueError`` naming
the field, the recipe's are ``RecipeError`` naming the recipe key. Reading and writing recipes
(YAML, ``--set``, dict <-> dataclass) is ``discatt_timm.recipes``.
"""

from .attention import GRAD_MODES, NORMALIZATIONS, AttentionLossConfig
from .data import DataConfig
from .training import (
    NO_ATTENTION,
    AccelerateConfig,
    CheckpointConfig,
    EvalConfig,
    ModelConfig,
    OptimConfig,
    ScheduleConfig,
    TrainConfig,
)

__all__ = [
    "GRAD_MODES",
    "NORMALIZATIONS",
    "NO_ATTENTION",
    "AccelerateConfig",
    "AttentionLossConfig",
    "CheckpointConfig",
    "DataConfig",
    "EvalConfig",
    "ModelConfig",
    "OptimConfig",
    "ScheduleConfig",
    "TrainConfig",
]
