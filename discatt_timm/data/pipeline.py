"""From tables to batches: timm transforms, the seeded torch dataset, the loaders, and
``eval_data``, the one way to score a model on a data set (trainer, metrics, zoo check, study).

``ImageClassificationDataset`` applies timm transforms (``resolve_data_config`` +
``create_transform``) with augmentation seeded per ``(seed, epoch, index)``: a sample's
augmentation does not depend on the number of processes, workers, or where a resumed run
restarted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..config import DataConfig
from ..errors import DataError
from ..layers import unwrap_model
from .derived import DERIVED
from .sources import load_splits
from .tables import Splits

if TYPE_CHECKING:
    import datasets

WIDE_GRAY = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})

__all__ = [
    "WIDE_GRAY",
    "convert_image",
    "DataBundle",
    "ImageClassificationDataset",
    "build_data",
    "build_loaders",
    "build_transforms",
    "eval_data",
    "model_data_config",
    "named_data",
]


def build_transforms(cfg: DataConfig, model: nn.Module) -> tuple[Any, Any, dict[str, Any]]:
    """(train transform, eval transform, timm data config) for ``model``.

    The data config is timm's ``resolve_data_config`` of the model, with the recipe's
    ``image_size``/``mean``/``std``/``crop_pct`` on top; for a 1-channel model the mean and
    std of a 3-channel pretrained config are averaged.
    """
    from timm.data import create_transform
    from torchvision import transforms as T

    args: dict[str, Any] = {}
    if cfg.image_size:
        args["input_size"] = (_in_chans(model), cfg.image_size, cfg.image_size)
    for key in ("mean", "std", "crop_pct"):
        if getattr(cfg, key) is not None:
            args[key] = getattr(cfg, key)
    data_config = model_data_config(model, args)
    size = data_config["input_size"][-2:]
    common = dict(
        input_size=data_config["input_size"],
        interpolation=data_config["interpolation"],
        mean=data_config["mean"],
        std=data_config["std"],
    )
    eval_tf = create_transform(
        **common, is_training=False, crop_pct=data_config["crop_pct"], crop_mode=cfg.crop_mode
    )
    if cfg.augment == "timm":
        train_tf = create_transform(
            **common,
            is_training=True,
            scale=cfg.scale,
            hflip=cfg.hflip,
            color_jitter=cfg.color_jitter or None,
        )
    elif cfg.augment == "pad_crop":
        train_tf = T.Compose(
            [
                T.Resize(size),
                T.RandomCrop(size, padding=cfg.crop_padding),
                T.RandomHorizontalFlip(cfg.hflip),
                T.ToTensor(),
                T.Normalize(data_config["mean"], data_config["std"]),
            ]
        )
    else:
        train_tf = eval_tf
    return train_tf, eval_tf, data_config


def model_data_config(model: nn.Module, args: dict[str, Any] | None = None) -> dict[str, Any]:
    """timm's ``resolve_data_config`` of ``model`` (``args`` on top) with the input channels
    of the model's first convolution: a model built with ``in_chans=1`` keeps a 3-channel
    pretrained config, whose mean and std are then averaged (as timm averages the stem's
    weights for it)."""
    from timm.data import resolve_data_config

    in_chans = _in_chans(model)
    data_config = resolve_data_config(dict(args or {}), model=unwrap_model(model))
    for key in ("mean", "std"):
        values = tuple(float(v) for v in data_config[key])
        if len(values) != in_chans:
            values = (sum(values) / len(values),) * in_chans
        data_config[key] = values
    data_config["input_size"] = (in_chans, *data_config["input_size"][-2:])
    return data_config


def _in_chans(model: nn.Module) -> int:
    """Input channels of the model's first convolution (3 when it has none)."""
    conv = next((m for m in unwrap_model(model).modules() if isinstance(m, nn.Conv2d)), None)
    return conv.in_channels if conv is not None else 3


def _sample_seed(seed: int, epoch: int, index: int) -> int:
    digest = hashlib.blake2b(f"{seed}/{epoch}/{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch's CPU generator and ``random`` (timm/torchvision transforms), then restore."""
    generator = torch.default_generator
    torch_state, py_state = generator.get_state(), random.getstate()
    generator.manual_seed(seed)
    random.seed(seed)
    try:
        yield
    finally:
        generator.set_state(torch_state)
        random.setstate(py_state)


class ImageClassificationDataset(torch.utils.data.Dataset):
    """``(image C x H x W float tensor, target)`` samples of a normalised ``datasets.Dataset``.

    Targets are class indices, or float multi-hot vectors of length ``num_classes`` when
    ``multilabel``. With ``boxes`` (a table with a ``boxes`` column, read through a transform
    that only resizes) a third item: ``num_classes x 4`` fractional boxes, NaN rows for the
    classes without one. Random transforms run seeded by ``(seed, epoch, index)``;
    ``set_epoch`` is called by Accelerate's data loader at the start of each epoch.
    """

    def __init__(
        self,
        table: datasets.Dataset,
        transform: Any,
        *,
        num_classes: int,
        multilabel: bool = False,
        in_chans: int = 3,
        seed: int = 0,
        random_transform: bool = True,
        boxes: bool = False,
    ) -> None:
        if in_chans not in (1, 3):
            raise DataError(f"images can be read with 1 or 3 channels, model wants {in_chans}")
        self.table = table
        self.transform = transform
        self.num_classes = num_classes
        self.multilabel = multilabel
        self.mode = "L" if in_chans == 1 else "RGB"
        self.seed = seed
        self.random_transform = random_transform
        self.boxes = boxes
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        row = self.table[int(index)]
        image = convert_image(row["image"], self.mode)
        if self.random_transform:
            with _seeded(_sample_seed(self.seed, self.epoch, int(index))):
                x = self.transform(image)
        else:
            x = self.transform(image)
        classes = list(row["label"]) if self.multilabel else [int(row["label"])]
        if self.multilabel:
            target: Any = torch.zeros(self.num_classes)
            target[classes] = 1.0
        else:
            target = classes[0]
        if not self.boxes:
            return x, target
        boxes = torch.full((self.num_classes, 4), float("nan"))
        boxes[classes] = torch.tensor(row["boxes"], dtype=torch.float32).view(-1, 4)
        return x, target, boxes


def convert_image(image: Image.Image, mode: str) -> Image.Image:
    """``image`` in ``mode`` (``L`` or ``RGB``); 16- and 32-bit grey levels are rescaled to
    8 bits first (PIL's own conversion clips them at 255)."""
    if image.mode in WIDE_GRAY:
        pixels = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") else max(float(pixels.max()), 1.0)
        image = Image.fromarray(np.clip(pixels / top * 255, 0, 255).round().astype(np.uint8))
    return image.convert(mode)


@dataclass
class DataBundle:
    """Torch datasets ready for loaders, with what the model and the report need to know."""

    train: ImageClassificationDataset
    eval: ImageClassificationDataset
    class_names: tuple[str, ...]
    multilabel: bool
    data_config: dict[str, Any]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def build_data(cfg: DataConfig, model: nn.Module, splits: Splits, *, seed: int = 0) -> DataBundle:
    """Wrap ``splits`` with the transforms of ``model`` (see ``build_transforms``).

    Data with boxes (``boxes`` column) is evaluated through a plain resize of the whole
    (square) image, so that a fractional box stays where its object is: ``crop_pct`` defaults
    to 1 there, and a centre crop that would cut the image is refused.
    """
    boxes = "boxes" in splits.eval.column_names
    if boxes and cfg.crop_mode != "squash":
        if cfg.crop_pct is not None and cfg.crop_pct < 1:
            raise DataError(
                f"data.crop_pct={cfg.crop_pct} would crop images whose boxes are scored; use "
                "data.crop_pct: 1.0 or data.crop_mode: squash"
            )
        cfg = dataclasses.replace(cfg, crop_pct=1.0)
    train_tf, eval_tf, data_config = build_transforms(cfg, model)
    common = dict(
        num_classes=splits.num_classes,
        multilabel=splits.multilabel,
        in_chans=data_config["input_size"][0],
        seed=seed,
    )
    return DataBundle(
        train=ImageClassificationDataset(
            splits.train, train_tf, random_transform=cfg.augment != "none", **common
        ),
        eval=ImageClassificationDataset(
            splits.eval, eval_tf, random_transform=False, boxes=boxes, **common
        ),
        class_names=splits.class_names,
        multilabel=splits.multilabel,
        data_config=data_config,
    )


def build_loaders(
    bundle: DataBundle, cfg: DataConfig
) -> tuple[torch.utils.data.DataLoader, torch.utils.data.DataLoader]:
    """Train (shuffled, last partial batch dropped) and eval loaders of GLOBAL batch size.

    Accelerate's ``prepare`` (``split_batches=True``) gives each process its slice, so the
    recipe's batch is the same on one process or many.
    """
    if len(bundle.train) < cfg.batch_size:
        raise DataError(
            f"data.batch_size={cfg.batch_size} exceeds the {len(bundle.train)} training samples"
        )
    common = dict(num_workers=cfg.num_workers, persistent_workers=False)
    train = torch.utils.data.DataLoader(
        bundle.train, batch_size=cfg.batch_size, shuffle=True, drop_last=True, **common
    )
    evaluation = torch.utils.data.DataLoader(
        bundle.eval, batch_size=cfg.eval_batch_size or cfg.batch_size, shuffle=False, **common
    )
    return train, evaluation


def named_data(
    data: str, *, split: str = "test", max_samples: int | None = None, seed: int = 0
) -> DataConfig:
    """The ``DataConfig`` of one split of ``data``, read with the eval transform.

    ``data``: ``fashion_mnist``, ``fashion_mnist_clutter``, ``fashion_mnist_multi``, an image
    folder (``DIR/<split>/<class>/*``, or only class folders ``DIR/<class>/*``, read as its one
    split) or a Hub dataset id (``uoft-cs/cifar100``).
    ``max_samples`` takes a seeded random subset.
    """
    common = dict(max_eval_samples=max_samples, split_seed=seed, augment="none", num_workers=0)
    if data in ("fashion_mnist", *DERIVED):
        multilabel = data == "fashion_mnist_multi"
        return DataConfig(
            source=data, train_split=split, eval_split=split, multilabel=multilabel, **common
        )
    folder = Path(data)
    if folder.is_dir():
        split_name = split if (folder / split).is_dir() else _only_split(folder, split)
        return DataConfig(
            source="imagefolder",
            path=str(folder),
            train_split=split_name,
            eval_split=split_name,
            **common,
        )
    if data.startswith((".", "/", "~")) or data.count("/") > 1 or "\\" in data:
        raise DataError(f"{data!r}: no such folder (a Hub dataset id looks like ORG/NAME)")
    return DataConfig(source="hub", path=data, train_split=split, eval_split=split, **common)


def _only_split(folder: Path, split: str) -> str:
    """A folder of class folders is one split (read as ``train``); a folder of split folders
    without ``split`` is an error, never silently another split."""
    splits = sorted(
        p.name for p in folder.iterdir() if p.is_dir() and any(c.is_dir() for c in p.iterdir())
    )
    if splits:
        raise DataError(
            f"image folder {folder} has no split {split!r}; splits: {', '.join(splits)}"
        )
    return "train"


def eval_data(cfg: DataConfig, model: nn.Module, *, seed: int = 0) -> DataBundle:
    """Both splits of ``cfg`` with ``model``'s eval transform (no augmentation), to score it.

    Raises ``DataError`` when the model's class count is not the data's.
    """
    cfg = dataclasses.replace(cfg, augment="none")
    splits = load_splits(cfg)
    num_classes = int(getattr(unwrap_model(model), "num_classes", 0) or 0)
    if num_classes != splits.num_classes:
        names = ", ".join(splits.class_names[:5]) + (", ..." if splits.num_classes > 5 else "")
        where = cfg.path or cfg.source
        raise DataError(
            f"the model has {num_classes} classes, the data {where!r} has {splits.num_classes} "
            f"({names})"
        )
    return build_data(cfg, model, splits, seed=seed)
