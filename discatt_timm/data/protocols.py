"""The paper's data protocols on their own folders: Caltech-256, CUB-200-2011, PASCAL VOC 2012.

Each ``load_*`` returns ``(train files, labels, names), (eval files, labels, names), names``
for ``tables.from_lists``; a folder that is not there is a ``DatasetNotFoundError`` saying
where to download it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..config import DataConfig
from ..errors import DataError, did_you_mean
from .tables import DatasetNotFoundError

__all__ = [
    "IMAGE_SUFFIXES",
    "VOC_CLASSES",
    "caltech256_split",
    "load_caltech256",
    "load_cub200",
    "load_voc2012",
]

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
    "caltech256": "data/caltech256/256_ObjectCategories",
    "cub200": "data/CUB_200_2011",
    "voc2012": "data/VOCdevkit/VOC2012",
}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


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


def load_caltech256(cfg: DataConfig) -> tuple[Any, Any, list[str]]:
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
    for name in drop:
        if name not in names:
            hint = did_you_mean(name, names)
            raise DataError(f"data.drop_classes: no class named {name!r}{hint}")
    kept = [n for n in names if n not in drop]
    remap = {names.index(n): i for i, n in enumerate(kept)}
    keep = [i for i, label in enumerate(labels) if label in remap]
    return [paths[i] for i in keep], [remap[labels[i]] for i in keep], kept


def load_cub200(cfg: DataConfig) -> tuple[Any, Any, list[str]]:
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


def load_voc2012(cfg: DataConfig) -> tuple[Any, Any, list[str]]:
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
