"""Checks and settings before a run does any work: refusals that name the recipe key, before
any data loads or any file is written, and the deterministic-kernel settings."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..config import TrainConfig
from ..errors import CheckpointError, RecipeError
from ..layers import resolve_layers
from ..loading import find_weights, load_model, weight_shapes
from ..recipes import config_from_dict, read_recipe, recipe_diff

__all__ = ["check_batches", "check_before_work", "check_same_recipe", "deterministic"]


def deterministic() -> None:
    """Deterministic kernels where torch has them, a warning where it has none (on CUDA the
    adaptive-average-pool backward of every timm head has none: an error would stop the run),
    and the cuBLAS workspace that deterministic matmuls need (set before CUDA starts)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def check_before_work(cfg: TrainConfig) -> None:
    """What can be refused before any data loads or any file is written: the output folder,
    an unreadable starting checkpoint, layer names the model does not have."""
    out = Path(cfg.output_dir)
    if out.exists() and not out.is_dir():
        raise RecipeError(f"recipe key 'output_dir' names a file ({out}); give a folder")
    if cfg.model.checkpoint:
        weight_shapes(find_weights(cfg.model.checkpoint))
    if cfg.model.layers:
        skeleton = load_model(cfg.model.name, pretrained=False, in_chans=cfg.model.in_chans)
        resolve_layers(skeleton, *cfg.model.layers)


def check_same_recipe(cfg: TrainConfig, run_dir: Path) -> None:
    """``--resume`` continues the run it finds: with its own recipe, or not at all (before
    anything is written or loaded)."""
    saved = run_dir / "recipe.yaml"
    if not saved.is_file():
        return
    try:
        before = config_from_dict(read_recipe(saved))
    except RecipeError as err:
        raise CheckpointError(
            f"cannot resume {run_dir}: its recipe.yaml no longer reads ({err})"
        ) from err
    diff = {k: v for k, v in recipe_diff(before, cfg).items() if k not in ("name", "output_dir")}
    if diff:
        shown = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in list(diff.items())[:3])
        more = f" and {len(diff) - 3} more" if len(diff) > 3 else ""
        raise CheckpointError(
            f"--resume with a recipe that differs from the run's ({shown}{more}); resume with "
            f"--recipe {saved}, or start a new run (--set name=...)"
        )


def check_batches(cfg: TrainConfig, processes: int) -> None:
    """Global batches split evenly over the processes."""
    for key in ("batch_size", "eval_batch_size"):
        batch = getattr(cfg.data, key)
        if batch is not None and batch % processes:
            raise RecipeError(
                f"recipe key 'data.{key}' ({batch}) must be divisible by the "
                f"{processes} processes (it is the global batch)"
            )
