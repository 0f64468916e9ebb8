"""The run directory: where one training run keeps everything, and how to find its checkpoint.

``<output_dir>/<name>/`` holds ``recipe.yaml`` (the resolved recipe), ``checkpoints/step_N``
(``accelerator.save_state`` + ``trainer_state.json``) with ``checkpoints/latest`` naming the
newest, ``logs/`` (trackers), ``metrics.json``, ``model.safetensors`` + ``config.json``
(timm's ``save_for_hf``) and ``attention_maps.png``. The trainer writes it, ``load_model``,
``discatt publish`` and ``discatt explain`` read it. Every file is written atomically.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "CHECKPOINTS",
    "LATEST",
    "STATE_FILE",
    "complete_checkpoints",
    "is_complete",
    "latest_checkpoint",
    "write_atomic",
]

CHECKPOINTS = "checkpoints"
LATEST = "latest"
STATE_FILE = "trainer_state.json"


def write_atomic(path: Path, text: str) -> None:
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


def is_complete(path: Path) -> bool:
    """A checkpoint folder whose writer finished (its ``trainer_state.json`` exists)."""
    return path.is_dir() and (path / STATE_FILE).is_file()


def complete_checkpoints(root: Path) -> list[Path]:
    """The complete ``step_N`` folders under ``root`` (a ``checkpoints/`` folder), oldest first."""
    return sorted((p for p in root.glob("step_*") if is_complete(p)), key=_step_of)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a run: ``checkpoints/latest`` if it names a complete
    ``step_N`` folder of this run, else the complete ``checkpoints/step_N`` with the largest N;
    None if none."""
    root = Path(run_dir) / CHECKPOINTS
    pointer = root / LATEST
    if pointer.is_file():
        name = pointer.read_text().strip()
        # only a folder of this run: a pointer to anywhere else is ignored, never followed
        if name.startswith("step_") and Path(name).name == name and is_complete(root / name):
            return root / name
    done = complete_checkpoints(root)
    return done[-1] if done else None
