"""``explain``: what a timm model looks at for its top-k classes, as PNG panels.

Python::

    model = load_model("resnet18")                   # discatt_timm.loading (or checkpoint=FILE)
    panels = explain(model, ["cat.jpg"], topk=5, layer="both", out_dir="explain")

Command (``discatt_timm.cli.explain``)::

    discatt explain --model resnet18 cat.jpg dog.png --layer both --out explain

Per image, one forward gives the top-k classes and, per (method, layer) row, one more forward
and one batched backward give all K maps (``attention_maps`` with ``(B, K)`` targets). Images
are prepared with the model's own eval transform (timm's ``resolve_data_config`` +
``create_transform``). Bad input (missing or non-image file, unknown layer or class) raises
``ExplainError``, a one-line ``UserError``; the command prints it and exits with status 2.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from timm.data import ImageNetInfo, create_transform, infer_imagenet_subset
from torch import Tensor, nn

from .attention import attention_maps, create_attention
from .data import convert_image, model_data_config
from .errors import ExplainError, close_matches
from .layers import resolve_layer, unwrap_model
from .viz import TILE, Panel, PanelRow

__all__ = [
    "ExplainError",
    "ImageConversionWarning",
    "class_names",
    "explain",
    "model_transform",
    "open_image",
]

_GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})

ImageInput = str | Path | Image.Image


class ImageConversionWarning(UserWarning):
    """An image was converted to the model's colour mode (e.g. grayscale -> RGB)."""


# ---------------------------------------------------------------------------------------------
# classes and transforms


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
    config = model_data_config(model)  # the input channels of the model's first convolution
    if input_size is not None:
        if input_size < 8:
            raise ExplainError(f"input size must be at least 8 pixels, got {input_size}")
        config["input_size"] = (config["input_size"][0], input_size, input_size)
    return create_transform(**config, is_training=False), config


# ---------------------------------------------------------------------------------------------
# images, classes, layers


def open_image(item: ImageInput, index: int) -> tuple[str, Image.Image]:
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
    return convert_image(image, mode)


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
    close = close_matches(label, names)
    hint = f"close matches: {', '.join(close)}" if close else "give a class index"
    raise ExplainError(f"unknown class {label!r} ({hint})")


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
    modules = [(layer, resolve_layer(core, layer)) for layer in layers]
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


def _check_request(
    items: list, labels: Sequence | None, batch_size: int, out_dir: str | Path | None
) -> None:
    """Images, one label each (if any), a positive batch, an output folder that is a folder."""
    if not items:
        raise ExplainError("no images given")
    if labels is not None and len(labels) != len(items):
        raise ExplainError(f"{len(labels)} labels given for {len(items)} images; give one each")
    if batch_size < 1:
        raise ExplainError(f"batch size must be positive, got {batch_size}")
    if out_dir is not None and Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise ExplainError(f"output folder {out_dir} is a file; give a folder")


def _views(method: str | Sequence[str], layer: str | Sequence[str]) -> tuple[list[str], list[str]]:
    """The methods (checked against the registry) and layers (``both`` = inner, last) asked."""
    methods = _split(method, "attention method")
    for name in methods:
        create_attention(name)  # unknown name: a UserError listing the choices
    layers = [
        part
        for name in _split(layer, "layer")
        for part in (["inner", "last"] if name == "both" else [name])
    ]
    return methods, list(dict.fromkeys(layers))


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
        model: a timm model, or ``{title: model}`` to compare models (rows per model, in order).
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
    methods, layers = _views(method, layer)
    items = [images] if isinstance(images, str | Path | Image.Image) else list(images)
    _check_request(items, labels, batch_size, out_dir)
    opened = [open_image(item, i) for i, item in enumerate(items)]
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
