"""Arguments several commands share: the model to load and the device to run it on."""

from __future__ import annotations

import argparse

import torch

from ..errors import ExplainError

__all__ = ["add_model_arguments", "resolve_device"]


def add_model_arguments(parser: argparse.ArgumentParser, *, checkpoint_help: str) -> None:
    """``--model NAME_OR_PATH`` (required) and ``--checkpoint FILE`` (``loading.load_model``)."""
    parser.add_argument(
        "--model",
        required=True,
        metavar="NAME_OR_PATH",
        help="timm name (pretrained weights unless --checkpoint), local-dir:PATH, hf-hub:REPO, "
        "or a training run directory (config.json + model.safetensors)",
    )
    parser.add_argument("--checkpoint", metavar="FILE", help=checkpoint_help)


def resolve_device(name: str | None) -> torch.device:
    """``--device``: the named device, default CUDA when available, else the CPU
    (``ExplainError`` for a bad name or a CUDA device that is not there)."""
    try:
        device = torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))
    except RuntimeError as err:
        raise ExplainError(f"--device: {err}") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ExplainError("--device cuda: no CUDA device is available; use --device cpu")
    return device
