"""Datasets (through the ``datasets`` library), the paper's protocols, transforms and loaders.

Every source is normalised to a ``datasets.Dataset`` with two columns: ``image`` (an ``Image``
feature) and ``label`` (``ClassLabel``; ``List(ClassLabel)`` of the present classes when
multi-label). ``load_splits`` returns the train and eval splits of a ``DataConfig``:

* ``hub``: ``datasets.load_dataset(path, config_name)``: a Hub id (e.g. ``uoft-cs/cifar100``)
  or a local data directory; image and label columns are detected or named in the recipe.
* ``imagefolder``: ``datasets.load_dataset("imagefolder", data_dir=path)``.
* ``fashion_mnist``: the IDX files of the Debian package ``dataset-fashion-mnist``
  (``/usr/share/datasets/fashion-mnist``), converted once and cached; else the Hub dataset
  ``zalando-datasets/fashion_mnist``; else an error naming the apt-get step.
* ``caltech256``: ``256_ObjectCategories``; per class ``train_per_class`` images for training
  and up to ``test_per_class`` of the rest for testing (seeded), ``drop_classes`` removed.
* ``cub200``: ``CUB_200_2011`` with its official train/test split.
* ``voc2012``: ``VOC2012`` (``JPEGImages`` + ``ImageSets/Main/<class>_<split>.txt``), multi-hot
  targets; a class marked difficult-only (0) counts as present.

``ImageClassificationDataset`` applies timm transforms (``resolve_data_config`` +
``create_transform``) with augmentation seeded per ``(seed, epoch, index)``: a sample's
augmentation does not depend on the number of processes, workers, or where a resumed run
restarted.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import random
import shutil
import struct
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from .train_config import DataConfig

if TYPE_CHECKING:
    import datasets

__all__ = [
    "DataBundle",
    "DataError",
    "DatasetNotFoundError",
    "FASHION_MNIST_CLASSES",
    "ImageClassificationDataset",
    "Splits",
    "VOC_CLASSES",
    "build_data",
    "build_loaders",
    "build_transforms",
    "caltech256_split",
    "load_fashion_mnist",
    "load_splits",
    "read_idx",
]

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_HUB = "zalando-datasets/fashion_mnist"
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
VOC_CLASSES = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
DEFAULT_PATHS = {
    "fashion_mnist": FASHION_MNIST_DIR,
    "caltech256": "data/caltech256/256_ObjectCategories",
    "cub200": "data/CUB_200_2011",
    "voc2012": "data/VOCdevkit/VOC2012",
}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


class DataError(RuntimeError):
    """Data that cannot be used as configured (bad layout, too few images, bad column)."""


class DatasetNotFoundError(DataError):
    """A dataset that is neither on disk nor reachable; the message says how to get it."""


@dataclass(frozen=True)
class Splits:
    """Normalised ``image``/``label`` datasets of one recipe and the class names."""

    train: datasets.Dataset
    eval: datasets.Dataset
    class_names: tuple[str, ...]
    multilabel: bool

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


# --- sources ---------------------------------------------------------------------------------


def _features(class_names: Sequence[str], multilabel: bool) -> datasets.Features:
    from datasets import ClassLabel, Features, Image, List

    label = ClassLabel(names=list(class_names))
    return Features({"image": Image(), "label": List(label) if multilabel else label})


def _from_lists(
    images: Sequence[Any], labels: Sequence[Any], names, multilabel
) -> datasets.Dataset:
    from datasets import Dataset

    return Dataset.from_dict(
        {"image": list(images), "label": list(labels)}, features=_features(names, multilabel)
    )


def _label_names(feature: Any) -> list[str] | None:
    names = getattr(feature, "names", None)
    if names is None and hasattr(feature, "feature"):  # List(ClassLabel)
        names = getattr(feature.feature, "names", None)
    return list(names) if names is not None else None


def _normalize(
    ds: datasets.Dataset, cfg: DataConfig, split: str
) -> tuple[datasets.Dataset, list[str]]:
    """Select and rename the image and label columns; the class names of the label feature."""
    from datasets import Image

    columns = list(ds.features)
    image_col = cfg.image_column or next(
        (c for c in columns if isinstance(ds.features[c], Image)), None
    )
    if image_col not in columns:
        raise DataError(
            f"split {split!r} of {cfg.path!r} has no image column {image_col!r}; columns: "
            f"{', '.join(columns)} (set data.image_column)"
        )
    label_col = cfg.label_column
    if label_col is None:
        preferred = ["labels", "label"] if cfg.multilabel else ["label", "fine_label", "labels"]
        label_col = next((c for c in preferred if c in columns), None) or next(
            (c for c in columns if _label_names(ds.features[c]) is not None and c != image_col),
            None,
        )
    if label_col not in columns:
        raise DataError(
            f"split {split!r} of {cfg.path!r} has no label column {label_col!r}; columns: "
            f"{', '.join(columns)} (set data.label_column)"
        )
    names = _label_names(ds.features[label_col])
    if names is None:  # plain integers: classes 0..max
        values = ds[label_col]
        flat = [v for row in values for v in row] if cfg.multilabel else values
        names = [str(i) for i in range(int(max(flat)) + 1)]
    ds = ds.select_columns([image_col, label_col])
    renames = {c: n for c, n in ((image_col, "image"), (label_col, "label")) if c != n}
    if renames:
        ds = ds.rename_columns(renames)
    return ds, names


def _load_hub(path: str, config_name: str | None = None, **kwargs: Any) -> datasets.DatasetDict:
    import datasets

    try:
        return datasets.load_dataset(path, config_name, **kwargs)
    except Exception as err:  # offline, unknown id, gated: one clear message, cause chained
        raise DatasetNotFoundError(
            f"dataset {path!r} could not be loaded ({type(err).__name__}: {err}); give a "
            "reachable Hub id or a local directory in data.path"
        ) from err


def _pick_splits(dd: Any, cfg: DataConfig) -> tuple[Any, Any]:
    for split in (cfg.train_split, cfg.eval_split):
        if split not in dd:
            raise DataError(
                f"dataset {cfg.path!r} has no split {split!r}; splits: {', '.join(dd)} "
                "(set data.train_split / data.eval_split)"
            )
    return dd[cfg.train_split], dd[cfg.eval_split]


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (MNIST format, optionally gzipped) as a uint8 array of its dimensions."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(dims)):
        raise DataError(f"{path}: header says {dims} but holds {array.size} values")
    return array.reshape(dims)


def _idx_files(root: Path) -> dict[str, Path] | None:
    stems = {
        "train_images": "train-images-idx3-ubyte",
        "train_labels": "train-labels-idx1-ubyte",
        "test_images": "t10k-images-idx3-ubyte",
        "test_labels": "t10k-labels-idx1-ubyte",
    }
    found = {}
    for key, stem in stems.items():
        candidates = [root / f"{stem}.gz", root / stem]
        hit = next((p for p in candidates if p.is_file()), None)
        if hit is None:
            return None
        found[key] = hit
    return found


def cache_root(cache_dir: str | None = None) -> Path:
    """Where converted datasets are cached (``data.cache_dir`` or ``~/.cache/discatt_timm``)."""
    if cache_dir:
        return Path(cache_dir)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "discatt_timm"


def load_fashion_mnist(
    path: str | None = None, cache_dir: str | None = None
) -> datasets.DatasetDict:
    """Fashion-MNIST as a ``DatasetDict`` (``train``/``test``; ``image``: 28x28 L, ``label``).

    From the IDX files in ``path`` (default: the Debian package's directory), converted once
    and cached under ``cache_dir``; else from the Hub (``zalando-datasets/fashion_mnist``).
    """
    import datasets

    root = Path(path or FASHION_MNIST_DIR)
    files = _idx_files(root)
    if files is None:
        try:
            hub = _load_hub(FASHION_MNIST_HUB)
        except DatasetNotFoundError as err:
            raise DatasetNotFoundError(
                f"Fashion-MNIST is not in {root} and the Hub dataset {FASHION_MNIST_HUB} is "
                f"unreachable ({err.__cause__ or err}); install it with: "
                "sudo apt-get install -y dataset-fashion-mnist"
            ) from err
        return hub
    stamp = "|".join(
        f"{p.resolve()}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files.values()
    )
    target = (
        cache_root(cache_dir) / f"fashion_mnist-{hashlib.sha1(stamp.encode()).hexdigest()[:12]}"
    )
    if not (target / "dataset_dict.json").is_file():
        features = _features(FASHION_MNIST_CLASSES, multilabel=False)
        splits = {}
        for split in ("train", "test"):
            images = read_idx(files[f"{split}_images"])
            labels = read_idx(files[f"{split}_labels"])
            if images.ndim != 3 or labels.shape != images.shape[:1]:
                raise DataError(f"Fashion-MNIST {split} files in {root} do not match")
            splits[split] = datasets.Dataset.from_dict(
                {"image": list(images), "label": labels.astype(np.int64).tolist()},
                features=features,
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
        datasets.DatasetDict(splits).save_to_disk(str(tmp))
        try:
            os.replace(tmp, target)  # atomic: a concurrent converter may have won the race
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    return datasets.load_from_disk(str(target))


def _image_folder(root: Path) -> tuple[list[str], list[int], list[str]]:
    """Files of ``root/<class>/*`` (sorted) with class indices and the sorted class names."""
    if not root.is_dir():
        raise DatasetNotFoundError(f"image folder {root} does not exist")
    names = sorted(p.name for p in root.iterdir() if p.is_dir())
    paths, labels = [], []
    for index, name in enumerate(names):
        files = sorted(
            p for p in (root / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        )
        paths += [str(p) for p in files]
        labels += [index] * len(files)
    if not paths:
        raise DataError(f"image folder {root} holds no images in class subfolders")
    return paths, labels, names


def caltech256_split(
    labels: Sequence[int], *, train_per_class: int, test_per_class: int | None = 25, seed: int = 0
) -> tuple[list[int], list[int]]:
    """Per-class random split (the Caltech-256 protocol): indices of train and test samples.

    Each class gives ``train_per_class`` training samples and up to ``test_per_class`` of its
    remaining samples for testing (all of them when None). Seeded; sorted index lists.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train, test = [], []
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        if len(members) <= train_per_class:
            raise DataError(
                f"class {int(cls)} has {len(members)} images; train_per_class={train_per_class} "
                "leaves none for testing"
            )
        train += members[:train_per_class].tolist()
        rest = members[train_per_class:]
        test += (rest if test_per_class is None else rest[:test_per_class]).tolist()
    return sorted(train), sorted(test)


def _load_caltech256(cfg: DataConfig) -> tuple[Any, Any, list[str]]:
    root = Path(cfg.path or DEFAULT_PATHS["caltech256"])
    if (root / "256_ObjectCategories").is_dir():
        root = root / "256_ObjectCategories"
    if not root.is_dir():
        raise DatasetNotFoundError(
            f"Caltech-256 not found at {root}; download 256_ObjectCategories.tar from "
            "https://data.caltech.edu/records/nyy15-4j048, extract it and set data.path"
        )
    paths, labels, names = _image_folder(root)
    paths, labels, names = _drop_classes(paths, labels, names, cfg.drop_classes)
    train, test = caltech256_split(
        labels,
        train_per_class=cfg.train_per_class or 0,
        test_per_class=cfg.test_per_class,
        seed=cfg.split_seed,
    )
    pick = lambda idx: ([paths[i] for i in idx], [labels[i] for i in idx])  # noqa: E731
    return (*pick(train), names), (*pick(test), names), names


def _drop_classes(paths, labels, names, drop: Sequence[str]):
    import difflib

    for name in drop:
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise DataError(f"data.drop_classes: no class named {name!r}{hint}")
    kept = [n for n in names if n not in drop]
    remap = {names.index(n): i for i, n in enumerate(kept)}
    keep = [i for i, label in enumerate(labels) if label in remap]
    return [paths[i] for i in keep], [remap[labels[i]] for i in keep], kept


def _load_cub200(cfg: DataConfig) -> tuple[Any, Any, list[str]]:
    root = Path(cfg.path or DEFAULT_PATHS["cub200"])
    if (root / "CUB_200_2011").is_dir():
        root = root / "CUB_200_2011"
    if not (root / "images.txt").is_file():
        raise DatasetNotFoundError(
            f"CUB-200-2011 not found at {root} (no images.txt); download CUB_200_2011.tgz from "
            "https://www.vision.caltech.edu/datasets/cub_200_2011/, extract it and set data.path"
        )

    def table(name: str) -> dict[str, str]:
        rows = (line.split(maxsplit=1) for line in (root / name).read_text().splitlines())
        return {row[0]: row[1].strip() for row in rows if len(row) == 2}

    images, classes, is_train = (
        table("images.txt"),
        table("image_class_labels.txt"),
        table("train_test_split.txt"),
    )
    names = [n for _, n in sorted(table("classes.txt").items(), key=lambda kv: int(kv[0]))]
    parts: dict[bool, tuple[list[str], list[int]]] = {True: ([], []), False: ([], [])}
    for image_id in sorted(images, key=int):
        paths, labels = parts[is_train[image_id] == "1"]
        paths.append(str(root / "images" / images[image_id]))
        labels.append(int(classes[image_id]) - 1)
    return (*parts[True], names), (*parts[False], names), names


def _load_voc2012(cfg: DataConfig) -> tuple[Any, Any, list[str]]:
    root = Path(cfg.path or DEFAULT_PATHS["voc2012"])
    if (root / "VOC2012").is_dir():
        root = root / "VOC2012"
    main = root / "ImageSets" / "Main"
    if not main.is_dir():
        raise DatasetNotFoundError(
            f"PASCAL VOC 2012 not found at {root} (no ImageSets/Main); download "
            "VOCtrainval_11-May-2012.tar from http://host.robots.ox.ac.uk/pascal/VOC/voc2012/, "
            "extract it and set data.path to VOCdevkit/VOC2012"
        )

    def split(name: str) -> tuple[list[str], list[list[int]]]:
        present: dict[str, list[int]] = {}
        for index, cls in enumerate(VOC_CLASSES):
            path = main / f"{cls}_{name}.txt"
            if not path.is_file():
                raise DataError(f"VOC 2012: {path} is missing (split {name!r})")
            for line in path.read_text().splitlines():
                fields = line.split()
                if len(fields) != 2:
                    continue
                present.setdefault(fields[0], [])
                if int(fields[1]) >= 0:  # 1 present, 0 difficult-only (counted), -1 absent
                    present[fields[0]].append(index)
        ids = sorted(present)
        return [str(root / "JPEGImages" / f"{i}.jpg") for i in ids], [present[i] for i in ids]

    names = list(VOC_CLASSES)
    return (*split(cfg.train_split), names), (*split(cfg.eval_split), names), names


def _subset(ds: datasets.Dataset, limit: int | None, seed: int) -> datasets.Dataset:
    if limit is None or limit >= len(ds):
        return ds
    keep = np.random.default_rng(seed).permutation(len(ds))[:limit]
    return ds.select(sorted(keep.tolist()))


def load_splits(cfg: DataConfig) -> Splits:
    """The normalised train and eval splits of ``cfg`` (subsets applied)."""
    if cfg.source in ("caltech256", "cub200", "voc2012"):
        loader = {"caltech256": _load_caltech256, "cub200": _load_cub200, "voc2012": _load_voc2012}
        train_parts, eval_parts, names = loader[cfg.source](cfg)
        train = _from_lists(*train_parts, cfg.multilabel)
        evaluation = _from_lists(*eval_parts, cfg.multilabel)
    else:
        if cfg.source == "fashion_mnist":
            dd = load_fashion_mnist(cfg.path, cfg.cache_dir)
        elif cfg.source == "imagefolder":
            if not Path(cfg.path or "").is_dir():
                raise DatasetNotFoundError(f"image folder {cfg.path!r} does not exist")
            dd = _load_hub("imagefolder", data_dir=cfg.path)
        else:
            dd = _load_hub(cfg.path or "", cfg.config_name)
        train_raw, eval_raw = _pick_splits(dd, cfg)
        train, names = _normalize(train_raw, cfg, cfg.train_split)
        evaluation, eval_names = _normalize(eval_raw, cfg, cfg.eval_split)
        if eval_names != names:
            raise DataError(
                f"splits {cfg.train_split!r} and {cfg.eval_split!r} have different classes"
            )
    train = _subset(train, cfg.max_train_samples, cfg.split_seed)
    evaluation = _subset(evaluation, cfg.max_eval_samples, cfg.split_seed)
    return Splits(train, evaluation, tuple(names), cfg.multilabel)


# --- transforms and torch datasets -----------------------------------------------------------


def build_transforms(cfg: DataConfig, model: nn.Module) -> tuple[Any, Any, dict[str, Any]]:
    """(train transform, eval transform, timm data config) for ``model``.

    The data config is timm's ``resolve_data_config`` of the model, with the recipe's
    ``image_size``/``mean``/``std``/``crop_pct`` on top; for a 1-channel model the mean and
    std of a 3-channel pretrained config are averaged.
    """
    from timm.data import create_transform, resolve_data_config
    from torchvision import transforms as T

    in_chans = _in_chans(model)
    args: dict[str, Any] = {}
    if cfg.image_size:
        args["input_size"] = (in_chans, cfg.image_size, cfg.image_size)
    for key in ("mean", "std", "crop_pct"):
        if getattr(cfg, key) is not None:
            args[key] = getattr(cfg, key)
    data_config = resolve_data_config(args, model=model)
    for key in ("mean", "std"):
        values = tuple(float(v) for v in data_config[key])
        if len(values) != in_chans:
            values = (sum(values) / len(values),) * in_chans
        data_config[key] = values
    size = data_config["input_size"][-2:]
    data_config["input_size"] = (in_chans, *size)
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


def _in_chans(model: nn.Module) -> int:
    """Input channels of the model's first convolution (3 when it has none)."""
    from .attention import unwrap_model

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
    ``multilabel``. Random transforms run seeded by ``(seed, epoch, index)``; ``set_epoch`` is
    called by Accelerate's data loader at the start of each epoch.
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
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Any]:
        row = self.table[int(index)]
        image = row["image"].convert(self.mode)
        if self.random_transform:
            with _seeded(_sample_seed(self.seed, self.epoch, int(index))):
                x = self.transform(image)
        else:
            x = self.transform(image)
        if self.multilabel:
            target = torch.zeros(self.num_classes)
            target[list(row["label"])] = 1.0
            return x, target
        return x, int(row["label"])


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
    """Wrap ``splits`` with the transforms of ``model`` (see ``build_transforms``)."""
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
        eval=ImageClassificationDataset(splits.eval, eval_tf, random_transform=False, **common),
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
