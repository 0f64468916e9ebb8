"""The one way to get a model and its weights: ``load_model(spec, checkpoint=...)``.

The trainer (``model.name`` with ``model.pretrained`` or ``model.checkpoint``), ``explain``,
``discatt metrics``, the zoo check and the study all load through here, so one spec means the
same model everywhere and a bad one gets the same one-line ``LoadError``.

``spec`` is one of

* a timm name (``resnet18``, ``resnet18.a1_in1k``, a zoo tag such as
  ``cifar_resnet20.discatt_fashion_mnist_demo``);
* ``local-dir:PATH`` or ``hf-hub:ORG/NAME`` (timm's ``save_for_hf`` layout);
* a run directory of the trainer (``config.json`` + ``model.safetensors``), read as
  ``local-dir:``.

``checkpoint`` is a weights file (``.safetensors``, or a torch file that
``torch.load(weights_only=True)`` accepts, possibly under a ``state_dict``/``model`` key, EMA
weights first as in timm) or a directory holding ``model.safetensors`` (a run directory or one
of its ``checkpoints/step_N``). Nothing is unpickled beyond torch's weights-only loader.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from .errors import LoadError, close_matches
from .rundir import latest_checkpoint

__all__ = ["WEIGHT_FILES", "find_weights", "load_model", "model_name", "weight_shapes"]

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_STATE_KEYS = ("state_dict_ema", "model_ema", "state_dict", "model")  # timm's order


def _unknown_model(name: str) -> LoadError:
    close = close_matches(name, timm.list_models())
    hint = f"close matches: {', '.join(close)}" if close else "see timm.list_models()"
    return LoadError(
        f"unknown model {name!r} ({hint}); --model also takes a run directory, "
        "local-dir:PATH or hf-hub:REPO"
    )


def model_name(spec: str) -> str:
    """The ``timm.create_model`` name of ``spec`` (a run directory becomes ``local-dir:``).

    Checked offline: a local folder must hold ``config.json``; an unknown timm name gets
    close matches.
    """
    path = Path(spec)
    if spec.startswith("local-dir:"):
        path = Path(spec.removeprefix("local-dir:"))
        if not (path / "config.json").is_file():
            raise LoadError(f"{spec}: no config.json in {path} (timm's save_for_hf layout)")
        return spec
    if spec.startswith("hf-hub:"):
        return spec
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise LoadError(
                f"{spec} is a directory but not a run directory (no config.json); a run "
                "directory holds config.json and model.safetensors (timm's save_for_hf layout)"
            )
        return f"local-dir:{path}"
    if path.is_file():
        raise LoadError(
            f"{spec} is a file, not a model name: pass the architecture with --model and "
            "the weights with --checkpoint"
        )
    if timm.is_model(spec):
        return spec
    if "/" in spec or "\\" in spec:
        hub = spec.count("/") == 1 and not spec.startswith((".", "/", "~"))
        hint = f" (for a Hub model use hf-hub:{spec})" if hub else ""
        raise LoadError(f"{spec}: no such run directory{hint}")
    raise _unknown_model(spec)


def find_weights(path: str | Path) -> Path:
    """A weights file: ``path`` itself, or the weights in a run or checkpoint directory."""
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        for candidate in (path / name for name in WEIGHT_FILES):
            if candidate.is_file():
                return candidate
        checkpoint = latest_checkpoint(path)
        if checkpoint is not None and (checkpoint / "model.safetensors").is_file():
            return checkpoint / "model.safetensors"
    raise LoadError(
        f"checkpoint {str(path)!r} is not a weights file or a directory holding "
        "model.safetensors (a run directory or one of its checkpoints)"
    )


def weight_shapes(file: Path) -> dict[str, tuple[int, ...]]:
    """Tensor shapes of a weights file, read safely (safetensors header or ``weights_only``)."""
    try:
        if file.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(file), framework="pt") as handle:
                return {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}  # noqa: SIM118
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # header, unpickling, zip errors: all one message
        raise LoadError(
            f"cannot read checkpoint {file}: neither a safetensors file nor a state_dict that "
            f"torch.load(weights_only=True) accepts ({type(err).__name__}: "
            f"{' '.join(str(err).split())[:120]})"
        ) from err
    if isinstance(state, Mapping):
        key = next((k for k in _STATE_KEYS if isinstance(state.get(k), Mapping)), None)
        state = state[key] if key else state
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise LoadError(f"checkpoint {file} holds no state_dict of tensors")
    return {k.removeprefix("module."): tuple(v.shape) for k, v in state.items()}


def _create(name: str, spec: str, *, pretrained: bool, **kwargs: Any) -> nn.Module:
    """``timm.create_model`` with its errors said in one line."""
    try:
        return timm.create_model(name, pretrained=pretrained, **kwargs)
    except OSError as err:  # hub offline / not cached / not found; URL download errors
        from huggingface_hub.errors import RepositoryNotFoundError

        if isinstance(err, RepositoryNotFoundError):
            raise LoadError(f"{spec}: no such model repository on the Hugging Face Hub") from err
        what = "pretrained weights" if pretrained else "config"
        raise LoadError(
            f"cannot get the {what} of {spec!r}: offline or not in the local cache "
            f"({type(err).__name__}); pass --checkpoint FILE (checkpoint= in Python) to load "
            "local weights without downloading"
        ) from err
    except (RuntimeError, ValueError) as err:
        if str(err).startswith("Unknown model"):  # e.g. an architecture named in a config.json
            raise _unknown_model(str(err).split("(", 1)[-1].rstrip(")")) from err
        raise LoadError(
            f"cannot build model {spec!r}: {type(err).__name__}: {' '.join(str(err).split())}"
        ) from err


def _head_rows(model: nn.Module, shapes: Mapping[str, tuple[int, ...]]) -> int:
    """Rows of the checkpoint's classifier (its name from ``pretrained_cfg``); 0 if none."""
    head = (getattr(model, "pretrained_cfg", None) or {}).get("classifier")
    for name in head if isinstance(head, list | tuple) else [head]:
        shape = shapes.get(f"{name}.weight") if name else None
        if shape:
            return int(shape[0])
    return 0


def _stem_channels(model: nn.Module, shapes: Mapping[str, tuple[int, ...]]) -> int:
    """Input channels of the checkpoint's first convolution (``pretrained_cfg``); 0 if unknown."""
    first = (getattr(model, "pretrained_cfg", None) or {}).get("first_conv")
    shape = shapes.get(f"{first}.weight") if isinstance(first, str) else None
    return int(shape[1]) if shape and len(shape) == 4 else 0


def _load_checkpoint(model: nn.Module, file: Path, rows: int, spec: str) -> None:
    """Load ``file`` into ``model`` through timm's ``load_pretrained``: strict, except that a
    classifier of another class count is left as built, and the stem adapts to ``in_chans``."""
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    cfg.update(source="", file=str(file), url="", hf_hub_id=None, num_classes=rows, label_offset=0)
    cfg.pop("state_dict", None)
    cfg["custom_load"] = False  # e.g. ViT's npz loader: our files are safetensors or torch
    in_chans = int(getattr(model, "in_chans", 0) or (cfg.get("input_size") or (3,))[0])
    try:
        timm.models.load_pretrained(
            model, pretrained_cfg=cfg, num_classes=model.num_classes, in_chans=in_chans
        )
    except RuntimeError as err:  # shape mismatches, missing keys: the first line is enough
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        first = lines[1] if len(lines) > 1 else (lines[0] if lines else type(err).__name__)
        raise LoadError(f"checkpoint {file} does not fit {spec}: {first[:300]}") from err


def load_model(
    spec: str,
    checkpoint: str | Path | None = None,
    *,
    pretrained: bool = True,
    num_classes: int | None = None,
    **kwargs: Any,
) -> nn.Module:
    """A timm model in eval mode from ``spec``, with the weights it names or ``checkpoint``'s.

    Args:
        spec: timm name, ``local-dir:``/``hf-hub:`` name or run directory (module docstring).
        checkpoint: local weights (file or run/checkpoint directory); the architecture is then
            built without downloading weights, with the checkpoint's input channels unless
            ``in_chans`` is given, and the checkpoint loaded strictly.
        pretrained: without ``checkpoint``, load the weights ``spec`` names (downloaded unless
            cached; a run directory's own); ``False`` for a random initialisation.
        num_classes: classifier outputs. ``None``: those of the weights. A different count
            keeps a fresh classifier (fine-tuning), as timm does for pretrained weights.
        **kwargs: ``timm.create_model`` arguments (``in_chans``, ``drop_rate``, ...).

    Raises:
        LoadError: one line naming the spec or file and what would be accepted.
    """
    name = model_name(spec)
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if checkpoint is None:
        if pretrained and name.startswith("local-dir:"):
            folder = Path(name.removeprefix("local-dir:"))
            if not any((folder / f).is_file() for f in WEIGHT_FILES):
                raise LoadError(
                    f"{spec}: no weights in {folder} (expected {' or '.join(WEIGHT_FILES)}); "
                    "pass --checkpoint FILE"
                )
            weight_shapes(find_weights(folder))  # truncated or foreign weights: one line
        return _create(name, spec, pretrained=pretrained, **kwargs).eval()
    file = find_weights(checkpoint)
    shapes = weight_shapes(file)
    model = _create(name, spec, pretrained=False, **kwargs)
    stem = _stem_channels(model, shapes)
    if "in_chans" not in kwargs and stem and stem != getattr(model, "in_chans", stem):
        model = _create(name, spec, pretrained=False, in_chans=stem, **kwargs)  # e.g. grayscale
    rows = _head_rows(model, shapes)
    if num_classes is None and rows and rows != model.num_classes:
        model.reset_classifier(rows)  # explain/metrics: the checkpoint's own classifier
    _load_checkpoint(model, file, rows, spec)
    return model.eval()
