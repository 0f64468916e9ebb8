"""What a finished run leaves in its directory: ``metrics.json``, the weights in timm's
``save_for_hf`` layout (``model.safetensors`` + ``config.json``) and ``attention_maps.png``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..rundir import write_atomic
from .run import Run

__all__ = ["export", "result_metrics"]


def result_metrics(run: Run) -> dict[str, Any]:
    """``metrics.json``: the eval metrics with what produced them (recipe, split, precision)."""
    cfg = run.cfg
    return {
        "recipe": cfg.name,
        "split": cfg.data.eval_split,
        "epochs_done": run.state.epoch,
        "global_step": run.state.global_step,
        "attention_supervision": cfg.attention.method,
        "attention_metrics_method": cfg.eval.attention_method if cfg.eval.attention else None,
        "attention_metrics_grad_mode": "detached",
        "mixed_precision": cfg.accelerate.mixed_precision,
        "num_processes": run.accelerator.num_processes,
        **run.metrics,
    }


def export(run: Run, metrics: dict[str, Any]) -> Path:
    """``metrics.json``, ``model.safetensors`` + ``config.json`` (timm's ``save_for_hf``) and
    ``attention_maps.png`` in the run directory (main process). Returns the weights file."""
    from timm.models import save_for_hf

    cfg, accelerator, run_dir, data = run.cfg, run.accelerator, run.run_dir, run.data
    if accelerator.is_main_process:
        write_atomic(run_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        core = accelerator.unwrap_model(run.model, keep_fp32_wrapper=False)  # plain forward
        save_for_hf(
            core,
            str(run_dir),
            model_config={"label_names": list(data.class_names)},
            model_args={"in_chans": cfg.model.in_chans},
            safe_serialization=True,
            data_config=data.data_config,
        )
        if cfg.eval.num_images:
            from ..viz import save_attention_grid

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
    return run_dir / "model.safetensors"
