"""Parking an unfinished study run in the repository, so that another machine resumes it.

The study runner resumes an interrupted run from its newest epoch checkpoint under ``runs/``,
but a work session on these machines starts from a fresh clone: ``runs/`` is gone, and a run
longer than a session (a 30-epoch ``full`` softmax_px run takes about 175 minutes) would start
over forever. ``park`` packs what resuming needs, the run's ``recipe.yaml``, its tracker logs
(the per-epoch evaluation curve) and its newest complete checkpoint (about 3 MB for
cifar_resnet20), into ``benchmarks/study/parked/<run name>.tar`` to be committed;
``unpark`` unpacks it before the run starts again, and ``discard`` deletes it once the run's
JSON line is written.

    python benchmarks/study_fashion_mnist.py --regimes full --park   # before a session ends
"""

from __future__ import annotations

import io
import os
import tarfile
import time
from pathlib import Path

from discatt_timm.rundir import CHECKPOINTS, LATEST, latest_checkpoint

PARKED = Path(__file__).resolve().parent / "study" / "parked"


def archive_path(parked_dir: Path, name: str) -> Path:
    """Where the run ``name`` is parked."""
    return parked_dir / f"{name}.tar"


def park(run_dir: Path, parked_dir: Path = PARKED) -> Path | None:
    """Pack ``run_dir``'s recipe, logs and newest complete checkpoint into
    ``parked_dir/<run name>.tar`` (written atomically); None if it has no checkpoint yet."""
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        return None
    parked_dir.mkdir(parents=True, exist_ok=True)
    target = archive_path(parked_dir, run_dir.name)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    with tarfile.open(tmp, "w") as tar:
        for part in ("recipe.yaml", "logs"):
            if (run_dir / part).exists():
                tar.add(run_dir / part, arcname=part)
        tar.add(checkpoint, arcname=f"{CHECKPOINTS}/{checkpoint.name}")
        pointer = tarfile.TarInfo(f"{CHECKPOINTS}/{LATEST}")
        name = checkpoint.name.encode()
        pointer.size, pointer.mtime = len(name), int(time.time())
        tar.addfile(pointer, io.BytesIO(name))
    os.replace(tmp, target)
    return target


def unpark(run_dir: Path, parked_dir: Path = PARKED) -> bool:
    """Unpack the parked state of ``run_dir`` unless the run already has a checkpoint here.

    Returns whether it did. Members are extracted with tarfile's ``data`` filter: nothing is
    written outside ``run_dir``, no links or devices are made."""
    source = archive_path(parked_dir, run_dir.name)
    if not source.is_file() or latest_checkpoint(run_dir) is not None:
        return False
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(source) as tar:
            tar.extractall(run_dir, filter="data")
    except tarfile.TarError as err:
        message = f"parked run {source} cannot be unpacked ({err}); delete it to start over"
        raise SystemExit(message) from None
    return True


def discard(name: str, parked_dir: Path = PARKED) -> None:
    """Delete the parked state of the run ``name`` (its JSON line is written)."""
    archive_path(parked_dir, name).unlink(missing_ok=True)
