"""Where a benchmark runs: the CPU line every result records, and the ``--device`` choice.

Shared by the benchmark scripts (run as ``python benchmarks/NAME.py``, so this folder is on
``sys.path``); results name the CPU because timings and fp32 kernels differ between CPU kinds.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
from pathlib import Path

import torch

__all__ = ["cpu_name", "pick_devices"]


def cpu_name() -> str:
    """The CPU model, as ``lscpu`` prints it (``platform`` where /proc/cpuinfo is absent)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def pick_devices(parser: argparse.ArgumentParser, device: str) -> list[str]:
    """``--device`` as the devices to time: ``auto`` is the CPU plus CUDA when present; an
    unknown name or an absent CUDA is the parser's one-line error."""
    if device == "auto":
        return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if device not in ("cpu", "cuda"):
        parser.error(f"--device must be cpu, cuda or auto, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    return [device]
