"""What a run reports: Accelerate trackers (with a JSON-lines one), running means, the epoch line.

``trackers(cfg, run_dir)`` turns ``accelerate.log_with`` into what ``Accelerator(log_with=...)``
takes; ``json`` is this package's ``JSONTracker`` (``logs/metrics.jsonl``, no extra package).
``Meter`` keeps the loss parts of an epoch on the device (one sync when read) and ``summary``
formats the line printed after each epoch.
"""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..config import TrainConfig
from ..errors import RecipeError
from ..losses import AttentionLossOutput
from ..recipes import config_to_dict

__all__ = ["Meter", "flat_config", "json_tracker_class", "summary", "trackers"]


def json_tracker_class() -> type:
    """``JSONTracker``: an Accelerate tracker appending one JSON record per ``log`` call."""
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


def trackers(cfg: TrainConfig, run_dir: Path) -> list[Any]:
    """The recipe's trackers for ``Accelerator(log_with=...)``; a missing package is one line."""
    out: list[Any] = []
    for name in cfg.accelerate.log_with:
        if name == "json":
            out.append(json_tracker_class()(cfg.name, run_dir / "logs"))
            continue
        if importlib.util.find_spec(name) is None:  # each tracker's package has its name
            raise RecipeError(
                f"recipe key 'accelerate.log_with' lists {name}, which is not installed: "
                f"pip install 'discatt-timm[{name}]' (or pip install {name}; or log_with: [json])"
            )
        out.append(name)
    return out


def flat_config(cfg: TrainConfig) -> dict[str, Any]:
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

    return walk(config_to_dict(cfg))


class Meter:
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


def summary(
    epoch: int, epochs: int, step: int, train: dict, lr: float, metrics: dict, secs: float
) -> str:
    """The line printed after an epoch: position, train loss parts, rate, eval, seconds."""
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
