"""``explain``: what a timm CNN looks at for its top-k classes, as PNG panels.

Python::

    model = load_model("resnet18")                   # pretrained weights (or checkpoint=FILE)
    panels = explain(model, ["cat.jpg"], topk=5, layer="both", out_dir="explain")

Command (wired as ``discatt explain`` through ``add_arguments`` and ``run``)::

    discatt explain --model resnet18 cat.jpg dog.png --layer both --out explain

Per image, one forward gives the top-k classes and, per (method, layer) row, one more forward
and one batched backward give all K maps (``attention_maps`` with ``(B, K)`` targets). Images
are prepared with the model's own eval transform (timm's ``resolve_data_config`` +
``create_transform``). ``--model`` is a timm name, a ``local-dir:``/``hf-hub:`` name, or a run
directory of the trainer (``config.json`` + ``model.safetensors``, timm's ``save_for_hf``
layout, loaded as ``local-dir:``). Bad input (missing or non-image file, unknown model, layer or
class, unreadable checkpoint, weights not cached while offline) raises ``ExplainError``, a
one-line ``ValueError``; the command prints it and exits with status 2.
"""

from __future__ import annotations

import argparse
import difflib
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import timm
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from timm.data import ImageNetInfo, create_transform, infer_imagenet_subset, resolve_data_config
from torch import Tensor, nn

from .attention import attention_maps, create_attention, unwrap_model
from .layers import get_submodule, resolve_layers
from .panels import TILE, Panel, PanelRow

__all__ = [
    "EXIT_ERROR",
    "ExplainError",
    "ImageConversionWarning",
    "add_arguments",
    "class_names",
    "explain",
    "load_model",
    "model_transform",
    "run",
]

EXIT_ERROR = 2  # the command's exit status for any bad input
_GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")

ImageInput = str | Path | Image.Image


class ExplainError(ValueError):
    """A one-line user error: a file, model, checkpoint, layer or class that cannot be used."""


class ImageConversionWarning(UserWarning):
    """An image was converted to the model's colour mode (e.g. grayscale -> RGB)."""


# ---------------------------------------------------------------------------------------------
# models


def _unknown_model(name: str) -> ExplainError:
    close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
    hint = f"close matches: {', '.join(close)}" if close else "see timm.list_models()"
    return ExplainError(
        f"unknown model {name!r} ({hint}); --model also takes a run directory, "
        "local-dir:PATH or hf-hub:REPO"
    )


def _timm_name(spec: str) -> str:
    """The ``timm.create_model`` name of a model spec, or ``ExplainError`` (checked offline)."""
    path = Path(spec)
    if spec.startswith("local-dir:"):
        path = Path(spec.removeprefix("local-dir:"))
        if not (path / "config.json").is_file():
            raise ExplainError(f"{spec}: no config.json in {path} (timm's save_for_hf layout)")
        return spec
    if spec.startswith("hf-hub:"):
        return spec
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ExplainError(
                f"{spec} is a directory but not a run directory (no config.json); a run "
                "directory holds config.json and model.safetensors (timm's save_for_hf layout)"
            )
        return f"local-dir:{path}"
    if path.is_file():
        raise ExplainError(
            f"{spec} is a file, not a model name: pass the architecture with --model and "
            "the weights with --checkpoint"
        )
    if timm.is_model(spec):
        return spec
    if "/" in spec or "\\" in spec:
        hub = spec.count("/") == 1 and not spec.startswith((".", "/", "~"))
        hint = f" (for a Hub model use hf-hub:{spec})" if hub else ""
        raise ExplainError(f"{spec}: no such run directory{hint}")
    raise _unknown_model(spec)


def _create(name: str, spec: str, *, pretrained: bool, **kwargs: object) -> nn.Module:
    """``timm.create_model`` with its errors re-worded to one line."""
    try:
        return timm.create_model(name, pretrained=pretrained, **kwargs)
    except RuntimeError as err:
        if str(err).startswith("Unknown model"):  # e.g. an architecture named in a config.json
            raise _unknown_model(str(err).split("(", 1)[-1].rstrip(")")) from err
        raise
    except OSError as err:  # hub offline / not cached / not found; URL download errors
        from huggingface_hub.errors import RepositoryNotFoundError

        if isinstance(err, RepositoryNotFoundError):
            raise ExplainError(f"{spec}: no such model repository on the Hugging Face Hub") from err
        what = "pretrained weights" if pretrained else "config"
        raise ExplainError(
            f"cannot get the {what} of {spec!r}: offline or not in the local cache "
            f"({type(err).__name__}); pass --checkpoint FILE (checkpoint= in Python) to load "
            "local weights without downloading"
        ) from err


def _read_checkpoint(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise ExplainError(f"checkpoint {path}: no such file")
    try:
        state = timm.models.load_state_dict(str(path), weights_only=True)
    except Exception as err:  # safetensors header, unpickling, zip errors: all one message
        raise ExplainError(
            f"cannot read checkpoint {path}: neither a safetensors file nor a torch.save'd "
            f"state_dict ({type(err).__name__}: {' '.join(str(err).split())[:120]})"
        ) from err
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ExplainError(f"checkpoint {path} holds no state_dict of tensors")
    return dict(state)


def _classifier_rows(model: nn.Module, state: Mapping[str, Tensor]) -> int | None:
    """Number of classes in ``state``'s classifier weight (name from ``pretrained_cfg``)."""
    head = (getattr(model, "pretrained_cfg", None) or {}).get("classifier")
    heads = head if isinstance(head, list | tuple) else [head]
    for name in heads:
        weight = state.get(f"{name}.weight") if name else None
        if weight is not None and weight.ndim >= 1:
            return int(weight.shape[0])
    return None


def load_model(spec: str, checkpoint: str | Path | None = None) -> nn.Module:
    """An eval-mode timm model from a name, ``local-dir:``/``hf-hub:`` name or run directory.

    Without ``checkpoint`` the pretrained weights are loaded (downloaded unless cached; the
    run directory's own weights for a run directory). With it, the architecture is built
    without weights (``pretrained=False``, nothing downloaded for a timm name) with the
    checkpoint's number of classes, and the checkpoint is loaded strictly: a ``.safetensors``
    file or a ``torch.save`` d state_dict, possibly under a ``state_dict``/``model`` key (EMA
    weights win when present, as in timm). Errors are one-line ``ExplainError`` s.
    """
    name = _timm_name(spec)
    if checkpoint is None:
        if name.startswith("local-dir:"):
            folder = Path(name.removeprefix("local-dir:"))
            if not any((folder / f).is_file() for f in _WEIGHT_FILES):
                raise ExplainError(
                    f"{spec}: no weights in {folder} (expected {' or '.join(_WEIGHT_FILES)}); "
                    "pass --checkpoint FILE"
                )
        return _create(name, spec, pretrained=True).eval()
    path = Path(checkpoint)
    state = _read_checkpoint(path)
    model = _create(name, spec, pretrained=False)
    rows = _classifier_rows(model, state)
    if rows is not None and rows != getattr(model, "num_classes", rows):
        model = _create(name, spec, pretrained=False, num_classes=rows)
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches: the first one is enough
        first = next((line.strip() for line in str(err).splitlines()[1:] if line.strip()), "")
        raise ExplainError(f"checkpoint {path} does not fit {spec}: {first}") from err
    if result.missing_keys or result.unexpected_keys:
        raise ExplainError(
            f"checkpoint {path} does not fit {spec}: {len(result.missing_keys)} missing keys "
            f"{result.missing_keys[:3]}, {len(result.unexpected_keys)} unexpected keys "
            f"{result.unexpected_keys[:3]}"
        )
    return model.eval()


def class_names(model: nn.Module) -> list[str]:
    """Class names of ``model``, by class index.

    From ``pretrained_cfg['label_names']`` (with ``label_descriptions`` when present), else
    the ImageNet names (``ImageNetInfo``, first synonym) when the class count is an ImageNet
    subset's (1000 classes: ImageNet-1k), else ``class 0``, ``class 1``, ...
    """
    core = unwrap_model(model)
    count = int(getattr(core, "num_classes", 0) or 0)
    cfg = getattr(core, "pretrained_cfg", None) or {}
    labels = cfg.get("label_names")
    if isinstance(labels, Mapping):
        labels = [labels.get(i, labels.get(str(i), f"class {i}")) for i in range(count)]
    if labels and len(labels) == count:
        descriptions = cfg.get("label_descriptions") or {}
        return [str(descriptions.get(label, label)) for label in labels]
    subset = infer_imagenet_subset(core)
    if subset is not None:
        info = ImageNetInfo(subset)
        return [info.index_to_description(i).split(",")[0] for i in range(count)]
    return [f"class {i}" for i in range(count)]


def model_transform(
    model: nn.Module, input_size: int | None = None
) -> tuple[Callable[[Image.Image], Tensor], dict]:
    """The model's eval transform (PIL -> normalised ``C x H x W``) and its data config.

    ``input_size`` overrides the side of the (square) input; the resize/crop ratio stays the
    model's ``crop_pct``.
    """
    config = resolve_data_config(model=unwrap_model(model))
    if input_size is not None:
        if input_size < 8:
            raise ExplainError(f"input size must be at least 8 pixels, got {input_size}")
        config["input_size"] = (config["input_size"][0], input_size, input_size)
    return create_transform(**config, is_training=False), config


# ---------------------------------------------------------------------------------------------
# images, classes, layers


def _open_image(item: ImageInput, index: int) -> tuple[str, Image.Image]:
    if isinstance(item, Image.Image):
        return f"image {index}", item
    path = Path(item)
    if not path.exists():
        raise ExplainError(f"{path}: no such file")
    if path.is_dir():
        raise ExplainError(f"{path} is a directory, not an image file")
    try:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened)
            image.load()
    except UnidentifiedImageError as err:
        raise ExplainError(f"{path}: not an image file (Pillow cannot identify it)") from err
    except (OSError, Image.DecompressionBombError) as err:
        raise ExplainError(f"{path}: cannot read the image ({' '.join(str(err).split())})") from err
    return str(path), image


def _to_mode(image: Image.Image, mode: str, source: str, said: set[tuple[str, str]]) -> Image.Image:
    """``image`` in ``mode`` ('RGB' or 'L'); a colour-mode change is said once per image."""
    if image.mode == mode:
        return image
    gray = image.mode in _GRAY_MODES
    if (gray and mode == "RGB") or (not gray and mode == "L"):
        key = (source, mode)
        if key not in said:
            said.add(key)
            what = "grayscale" if gray else f"{image.mode} colour"
            warnings.warn(
                f"{source}: {what} image converted to {mode} for the model",
                ImageConversionWarning,
                stacklevel=3,
            )
    return image.convert(mode)


def _class_index(label: int | str, names: Sequence[str]) -> int:
    """A class index from an index or a class name (case-insensitive); one-line errors."""
    if isinstance(label, str) and label.strip().lstrip("-").isdigit():
        label = int(label)
    if isinstance(label, int):
        if not 0 <= label < len(names):
            raise ExplainError(f"label {label} is not a class index in [0, {len(names) - 1}]")
        return label
    lowered = [n.lower() for n in names]
    if label.lower() in lowered:
        return lowered.index(label.lower())
    close = difflib.get_close_matches(label, names, n=5)
    hint = f"close matches: {', '.join(close)}" if close else "give a class index"
    raise ExplainError(f"unknown class {label!r} ({hint})")


def _layer_module(model: nn.Module, layer: str) -> str:
    """Module name of ``'last'``, ``'inner'`` or a module (one-line ``ValueError`` if absent)."""
    core = unwrap_model(model)
    if layer in ("last", "inner"):
        return getattr(resolve_layers(core), layer)
    get_submodule(core, layer)
    return layer


def _split(values: str | Sequence[str], what: str) -> list[str]:
    """Names from a string or list, each possibly comma-separated; duplicates dropped."""
    items = [values] if isinstance(values, str) else list(values)
    names = [part.strip() for item in items for part in item.split(",") if part.strip()]
    if not names:
        raise ExplainError(f"no {what} given")
    return list(dict.fromkeys(names))


def _model_title(model: nn.Module) -> str:
    cfg = getattr(unwrap_model(model), "pretrained_cfg", None) or {}
    return str(cfg.get("architecture") or type(unwrap_model(model)).__name__)


# ---------------------------------------------------------------------------------------------
# explain


def _maps(model: nn.Module, x: Tensor, top: Tensor, method: str, module: str, title: str) -> Tensor:
    """``B x K x H x W`` maps in [0, 1] on the CPU; a layer without a feature map is an error."""
    try:
        maps = attention_maps(model, x, top, method=method, layer=module, size=x.shape[-2:])
    except (RuntimeError, TypeError) as err:  # layer overwritten in place, not a tensor, ...
        raise ExplainError(f"layer {module!r} of {title}: {' '.join(str(err).split())}") from err
    if maps.shape != (*top.shape, *x.shape[-2:]):
        raise ExplainError(
            f"layer {module!r} of {title} gives no B x C x H x W feature map; choose a "
            "convolutional stage or block (last, inner, or e.g. a stage name)"
        )
    return maps.cpu()


def _explain_model(
    title: str,
    model: nn.Module,
    images: Sequence[tuple[str, Image.Image]],
    *,
    topk: int,
    methods: Sequence[str],
    layers: Sequence[str],
    labels: Sequence[int | str | None] | None,
    names: Sequence[str] | None,
    input_size: int | None,
    multilabel: bool,
    batch_size: int,
    said: set[tuple[str, str]],
) -> list[list[PanelRow]]:
    """Rows (methods x layers) of one model, for each image."""
    core = unwrap_model(model)
    names = list(names) if names is not None else class_names(core)
    count = int(getattr(core, "num_classes", len(names)))
    if len(names) != count:
        raise ExplainError(f"{len(names)} class names given for a model with {count} classes")
    if not 1 <= topk <= count:
        raise ExplainError(f"topk must be in [1, {count}] for {title}, got {topk}")
    modules = [(layer, _layer_module(core, layer)) for layer in layers]
    targets = [None if lab is None else _class_index(lab, names) for lab in labels or []]
    transform, config = model_transform(core, input_size)
    mode = "L" if config["input_size"][0] == 1 else "RGB"
    x = torch.stack([transform(_to_mode(img, mode, src, said)) for src, img in images])
    mean = torch.tensor(config["mean"]).view(-1, 1, 1)
    std = torch.tensor(config["std"]).view(-1, 1, 1)
    shown = (x * std + mean).clamp(0, 1).expand(-1, 3, -1, -1)  # what the model saw, in RGB
    device = next(core.parameters()).device

    rows: list[list[PanelRow]] = [[] for _ in images]
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(images), batch_size):
            batch = x[start : start + batch_size].to(device)
            with torch.no_grad():
                logits = model(batch).float()
            scores = logits.sigmoid() if multilabel else logits.softmax(dim=1)
            probs, top = scores.topk(topk, dim=1)  # B x K, the same classes as logits.topk
            for method in methods:
                for layer, module in modules:
                    maps = _maps(model, batch, top, method, module, title)  # B x K x H x W
                    for b in range(batch.shape[0]):
                        i = start + b
                        label = targets[i] if targets else None
                        rank = None
                        if label is not None:
                            rank = int((scores[b] > scores[b, label]).sum()) + 1
                        classes = tuple(int(c) for c in top[b])
                        rows[i].append(
                            PanelRow(
                                model=title,
                                method=method,
                                layer=module if layer == module else f"{layer} ({module})",
                                image=shown[i],
                                classes=classes,
                                names=tuple(names[c] for c in classes),
                                probs=tuple(float(p) for p in probs[b]),
                                maps=maps[b],
                                label=label,
                                label_name=None if label is None else names[label],
                                label_rank=rank,
                            )
                        )
    finally:
        model.train(was_training)
    return rows


def _output_paths(sources: Sequence[str], out_dir: Path) -> list[Path]:
    """``out_dir/<stem>_explain.png``, made unique when two images share a stem."""
    paths: list[Path] = []
    taken: set[str] = set()
    for i, source in enumerate(sources):
        stem = Path(source).stem if Path(source).suffix else f"image{i}"
        name, n = f"{stem}_explain.png", 1
        while name in taken:
            n += 1
            name = f"{stem}_{n}_explain.png"
        taken.add(name)
        paths.append(out_dir / name)
    return paths


def explain(
    model: nn.Module | Mapping[str, nn.Module],
    images: ImageInput | Sequence[ImageInput],
    *,
    topk: int = 5,
    method: str | Sequence[str] = "pixel",
    layer: str | Sequence[str] = "last",
    labels: Sequence[int | str | None] | None = None,
    class_names: Sequence[str] | None = None,
    input_size: int | None = None,
    multilabel: bool = False,
    batch_size: int = 8,
    out_dir: str | Path | None = None,
    tile: int = TILE,
    cmap: str = "jet",
) -> list[Panel]:
    """Top-k class attention panels, one per image; saved as PNGs when ``out_dir`` is given.

    Args:
        model: a timm CNN, or ``{title: model}`` to compare models (rows per model, in order).
        images: paths or PIL images (converted to the model's colour mode, with an
            ``ImageConversionWarning`` for grayscale -> RGB).
        topk: classes per row, by score; equal to ``logits.topk(topk)``.
        method: attention method(s), e.g. ``"pixel"``, ``["pixel", "gradcam"]`` or
            ``"pixel,gradcam"``; one row each.
        layer: ``"last"``, ``"inner"``, ``"both"`` (inner then last) or module name(s); one row
            each.
        labels: one true class per image (index, class name or None); its tile is framed.
        class_names: overrides the model's class names (``class_names(model)``).
        input_size: side of the square input; default the model's data config.
        multilabel: scores are sigmoids instead of a softmax.
        batch_size: images per forward.
        out_dir: where ``<image stem>_explain.png`` files are written.
        tile, cmap: tile side in pixels and matplotlib colour map of the saved PNGs.

    Returns:
        ``Panel`` s with ``len(models) * len(methods) * len(layers)`` rows each; every row has
        ``topk`` classes and ``topk x H x W`` maps in [0, 1] (``H x W`` the input size). Models
        are left in the train/eval mode they came in.
    """
    models = dict(model) if isinstance(model, Mapping) else {_model_title(model): model}
    if not models:
        raise ExplainError("no model given")
    methods = _split(method, "attention method")
    for name in methods:
        create_attention(name)  # unknown name: ValueError listing the choices
    layers = [
        part
        for name in _split(layer, "layer")
        for part in (["inner", "last"] if name == "both" else [name])
    ]
    layers = list(dict.fromkeys(layers))
    items = [images] if isinstance(images, str | Path | Image.Image) else list(images)
    if not items:
        raise ExplainError("no images given")
    if labels is not None and len(labels) != len(items):
        raise ExplainError(f"{len(labels)} labels given for {len(items)} images; give one each")
    if batch_size < 1:
        raise ExplainError(f"batch size must be positive, got {batch_size}")
    opened = [_open_image(item, i) for i, item in enumerate(items)]
    said: set[tuple[str, str]] = set()
    rows: list[list[PanelRow]] = [[] for _ in opened]
    for title, net in models.items():
        per_image = _explain_model(
            title,
            net,
            opened,
            topk=topk,
            methods=methods,
            layers=layers,
            labels=labels,
            names=class_names,
            input_size=input_size,
            multilabel=multilabel,
            batch_size=batch_size,
            said=said,
        )
        for target, new in zip(rows, per_image, strict=True):
            target.extend(new)
    panels = [Panel(source=src, rows=tuple(r)) for (src, _), r in zip(opened, rows, strict=True)]
    if out_dir is None:
        return panels
    paths = _output_paths([p.source for p in panels], Path(out_dir))
    return [
        Panel(p.source, p.rows, p.save(path, tile=tile, cmap=cmap))
        for p, path in zip(panels, paths, strict=True)
    ]


# ---------------------------------------------------------------------------------------------
# command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``discatt explain`` options to ``parser``."""
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    parser.add_argument(
        "--model",
        required=True,
        metavar="NAME_OR_PATH",
        help="timm name (pretrained weights unless --checkpoint), local-dir:PATH, hf-hub:REPO, "
        "or a training run directory (config.json + model.safetensors)",
    )
    parser.add_argument(
        "--checkpoint",
        metavar="FILE",
        help="weights for --model (.safetensors or a torch state_dict); nothing is downloaded",
    )
    parser.add_argument(
        "--compare", metavar="NAME_OR_PATH", help="a second model, shown in rows below the first"
    )
    parser.add_argument("--compare-checkpoint", metavar="FILE", help="weights for --compare")
    parser.add_argument("--topk", type=int, default=5, help="classes per row (default 5)")
    parser.add_argument(
        "--method",
        action="append",
        metavar="NAME",
        help="pixel (default), channel, gradcam or gradcampp; repeat or comma-separate for a "
        "row each",
    )
    parser.add_argument(
        "--layer",
        action="append",
        metavar="LAYER",
        help="last (default), inner, both, or a module name; repeat or comma-separate",
    )
    parser.add_argument(
        "--label",
        nargs="+",
        action="extend",
        metavar="CLASS",
        help="true class (index or name) of each image, in order (put after the images)",
    )
    parser.add_argument("--out", default="explain", metavar="DIR", help="default ./explain")
    parser.add_argument(
        "--input-size", type=int, metavar="PX", help="square input side (default: the model's)"
    )
    parser.add_argument("--multilabel", action="store_true", help="sigmoid scores, not softmax")
    parser.add_argument("--tile-size", type=int, default=TILE, metavar="PX", help="tile side")
    parser.add_argument("--cmap", default="jet", help="matplotlib colour map (default jet)")
    parser.add_argument("--batch-size", type=int, default=8, metavar="N")
    parser.add_argument("--device", default=None, help="default cuda if available, else cpu")
    parser.epilog = (
        f"One PNG per image: <stem>_explain.png in --out. Exit status 0, or {EXIT_ERROR} with a "
        "one-line 'discatt explain: error: ...' on bad input."
    )


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


def _title(spec: str, checkpoint: str | None) -> str:
    base = spec.removeprefix("local-dir:").removeprefix("hf-hub:").rstrip("/\\")
    base = Path(base).name if Path(base).is_dir() or "/" in base else base
    return f"{Path(checkpoint).stem} ({base})" if checkpoint else base


def _run(args: argparse.Namespace) -> list[Panel]:
    if args.compare_checkpoint and not args.compare:
        raise ExplainError("--compare-checkpoint needs --compare")
    device = resolve_device(args.device)
    specs = [(args.model, args.checkpoint)]
    if args.compare:
        specs.append((args.compare, args.compare_checkpoint))
    for image in args.images:  # fail on a bad file before loading any model
        _open_image(image, 0)
    models: dict[str, nn.Module] = {}
    for spec, checkpoint in specs:
        title = _title(spec, checkpoint)
        if title in models:
            title = f"#2 {title}"
        models[title] = load_model(spec, checkpoint).to(device)
    return explain(
        models,
        args.images,
        topk=args.topk,
        method=args.method or ["pixel"],
        layer=args.layer or ["last"],
        labels=args.label,
        input_size=args.input_size,
        multilabel=args.multilabel,
        batch_size=args.batch_size,
        out_dir=args.out,
        tile=args.tile_size,
        cmap=args.cmap,
    )


def run(args: argparse.Namespace) -> int:
    """Run ``discatt explain``: print each panel's path; 0, or ``EXIT_ERROR`` on bad input.

    Errors are one line on stderr (``discatt explain: error: ...``), never a traceback; image
    conversions are one ``discatt explain: note: ...`` line each.
    """
    error, panels = "", []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ImageConversionWarning)
        try:
            panels = _run(args)
        except (ValueError, ImportError) as err:  # ExplainError, layer/method registries
            error = " ".join(str(err).split()) or type(err).__name__
    for record in caught:
        if issubclass(record.category, ImageConversionWarning):
            print(f"discatt explain: note: {record.message}", file=sys.stderr)
        else:  # not ours: shown as Python would have shown it
            warnings.showwarning(record.message, record.category, record.filename, record.lineno)
    if error:
        print(f"discatt explain: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    for panel in panels:
        top = panel.rows[0]
        print(f"{panel.path}  ({top.model}: {top.names[0]} {top.probs[0]:.3f})")
    return 0
