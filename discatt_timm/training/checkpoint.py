"""Checkpoints of a run: ``accelerator.save_state`` made crash-safe, and the resume point.

``save_checkpoint`` writes ``checkpoints/step_N`` through a temporary folder and a rename, and
points ``checkpoints/latest`` at it atomically, so a kill at any moment leaves the previous
checkpoint and pointer intact. ``TrainerState`` (epoch, batch, optimizer step) is JSON.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CheckpointError
from ..rundir import (
    CHECKPOINTS,
    LATEST,
    STATE_FILE,
    complete_checkpoints,
    is_complete,
    latest_checkpoint,
    write_atomic,
)

__all__ = [
    "TrainerState",
    "load_checkpoint",
    "remove_stale",
    "resume_point",
    "save_checkpoint",
]


@dataclass
class TrainerState:
    """Position of a run: ``epoch`` (0-based, the one in progress), ``batch`` (micro-batches
    of it already trained), ``global_step`` (optimizer steps) and the scheduler's state (a
    small dict of numbers, kept here in JSON rather than in one of Accelerate's pickles)."""

    epoch: int = 0
    batch: int = 0
    global_step: int = 0
    scheduler: dict[str, Any] | None = None

    @classmethod
    def read(cls, path: Path) -> TrainerState:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError) as err:
            raise CheckpointError(f"checkpoint state {path} is unreadable ({err})") from err


def save_checkpoint(
    accelerator: Any,
    run_dir: str | Path,
    state: TrainerState,
    *,
    keep_last: int = 2,
    scheduler: Any | None = None,
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
    if is_complete(final):  # e.g. the epoch ends right on a step checkpoint: same weights
        return final
    tmp = root / f".tmp-{final.name}"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if scheduler is not None:
            state.scheduler = scheduler.state_dict()
        write_atomic(tmp / STATE_FILE, json.dumps(dataclasses.asdict(state)))
        shutil.rmtree(final, ignore_errors=True)  # an incomplete leftover of the same step
        os.replace(tmp, final)
        write_atomic(root / LATEST, final.name + "\n")
        for old in complete_checkpoints(root)[:-keep_last]:
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator: Any, path: Path, *, scheduler: Any | None = None) -> TrainerState:
    """Restore everything ``save_checkpoint`` saved; returns the run's position.

    Nothing is unpickled that Accelerate's weights-only loader refuses: no object is
    registered for Accelerate's ``custom_checkpoint_*.pkl`` (read with ``weights_only=False``),
    and a checkpoint holding such a file, planted or left over, is refused before anything is
    read. An RNG state file that does not read (Accelerate would skip it silently) is an
    error: the resume would not be exact.
    """
    from accelerate.utils.other import load

    state = TrainerState.read(path / STATE_FILE)
    planted = sorted(p.name for p in path.glob("custom_checkpoint_*.pkl"))
    if planted:
        raise CheckpointError(
            f"checkpoint {path} holds {', '.join(planted)}: a pickle this trainer never writes "
            "and will not load (it could run code); delete it to resume (an older version "
            "kept the scheduler there; its state follows from the step count)"
        )
    rng = path / f"random_states_{accelerator.process_index}.pkl"
    try:
        load(rng)  # weights_only=True with Accelerate's safe globals (numpy RNG state)
    except Exception as err:
        raise CheckpointError(
            f"checkpoint {path}: {rng.name} does not read ({type(err).__name__}); the resume "
            "would not be exact: delete the checkpoint to resume from an older one"
        ) from err
    try:
        accelerator.load_state(str(path))
    except Exception as err:
        detail = " ".join(str(err).split())[:200]
        raise CheckpointError(
            f"checkpoint {path} is corrupt or does not match this recipe "
            f"({type(err).__name__}: {detail}); delete it to resume from an older one"
        ) from err
    if scheduler is not None and state.scheduler is not None:
        scheduler.load_state_dict(state.scheduler)
    return state


def resume_point(accelerator: Any, run_dir: Path, resume: bool) -> Path | None:
    """The checkpoint to resume from (``resume``), or None; a run directory that already holds
    checkpoints is never trained over without ``--resume``."""
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is not None and not resume:
        raise CheckpointError(
            f"run directory {run_dir} already holds checkpoints; pass --resume to continue it "
            "or choose another run name (--set name=...)"
        )
    if resume and checkpoint is None:
        accelerator.print(f"no checkpoint in {run_dir}: starting from scratch")
    return checkpoint if resume else None


def remove_stale(run_dir: Path) -> None:
    """Delete the temporary checkpoint folders a crash left behind."""
    for stale in (run_dir / CHECKPOINTS).glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
