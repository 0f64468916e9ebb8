"""Test helpers (not a test module): tiny stand-in datasets in the real layouts, a tiny recipe.

Each ``make_*`` writes a few small images in the on-disk layout its source reads, so that every
recipe's data pipeline runs offline; ``standin_overrides`` points a recipe at them.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

from discatt_timm.config import TrainConfig
from discatt_timm.data import VOC_CLASSES


def image(rng: np.random.Generator, size: int, cls: int, mode: str = "RGB") -> Image.Image:
    """Noise with a class-coloured block at a class-dependent place (learnable, not trivial)."""
    channels = 3 if mode == "RGB" else 1
    pixels = rng.integers(0, 80, (size, size, channels), dtype=np.uint8)
    color = np.array([(cls * 97) % 256, (cls * 57 + 80) % 256, (cls * 31 + 160) % 256])
    corner = (cls * size // 5) % max(1, size // 2)
    block = slice(corner, corner + size // 2)
    pixels[block, block] = color[:channels]
    return Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode=mode)


def make_imagefolder(
    root: Path, *, classes: int = 3, per_class: tuple[int, int] = (8, 4), size: int = 24
) -> Path:
    rng = np.random.default_rng(0)
    for split, count in zip(("train", "test"), per_class, strict=True):
        for c in range(classes):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                image(rng, size, c).save(folder / f"{i}.png")
    return root


def make_caltech(root: Path, *, classes: int = 3, per_class: int = 5, size: int = 40) -> Path:
    rng = np.random.default_rng(1)
    top = root / "256_ObjectCategories"
    names = [f"{i + 1:03d}.thing{i}" for i in range(classes)] + ["257.clutter"]
    for c, name in enumerate(names):
        (top / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image(rng, size, c).save(top / name / f"{c + 1:03d}_{i:04d}.jpg")
    return top


def make_cub(root: Path, *, classes: int = 3, per_class: int = 4, size: int = 40) -> Path:
    rng = np.random.default_rng(2)
    top = root / "CUB_200_2011"
    images, labels, split, names = [], [], [], []
    image_id = 0
    for c in range(classes):
        name = f"{c + 1:03d}.Bird_{c}"
        names.append(f"{c + 1} {name}")
        (top / "images" / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image_id += 1
            rel = f"{name}/{name}_{i}.jpg"
            image(rng, size, c).save(top / "images" / rel)
            images.append(f"{image_id} {rel}")
            labels.append(f"{image_id} {c + 1}")
            split.append(f"{image_id} {int(i % 2 == 0)}")
    for file, lines in (
        ("images.txt", images),
        ("image_class_labels.txt", labels),
        ("train_test_split.txt", split),
        ("classes.txt", names),
    ):
        (top / file).write_text("\n".join(lines) + "\n")
    return top


def make_voc(root: Path, *, per_split: int = 8, size: int = 40) -> Path:
    """VOC2012 layout; image k of a split holds classes k % 20 and (k + 3) % 20 (the second
    marked difficult-only, 0) and no other."""
    rng = np.random.default_rng(3)
    top = root / "VOCdevkit" / "VOC2012"
    (top / "JPEGImages").mkdir(parents=True, exist_ok=True)
    (top / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    for offset, split in enumerate(("train", "val")):
        ids = [f"2012_{offset}{k:05d}" for k in range(per_split)]
        for k, image_id in enumerate(ids):
            image(rng, size, k % 20).save(top / "JPEGImages" / f"{image_id}.jpg")
        for c, name in enumerate(VOC_CLASSES):
            rows = []
            for k, image_id in enumerate(ids):
                flag = 1 if c == k % 20 else 0 if c == (k + 3) % 20 else -1
                rows.append(f"{image_id} {flag:2d}")
            (top / "ImageSets" / "Main" / f"{name}_{split}.txt").write_text("\n".join(rows) + "\n")
        (top / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return top


def make_parquet(
    root: Path,
    *,
    image_column: str = "image",
    label_column: str = "label",
    splits: tuple[str, ...] = ("train", "test"),
    classes: int = 3,
    per_split: int = 8,
    size: int = 32,
) -> Path:
    """A local ``datasets`` directory (``<split>.parquet``), as a Hub dataset looks."""
    from datasets import ClassLabel, Dataset, Features
    from datasets import Image as ImageFeature

    rng = np.random.default_rng(4)
    root.mkdir(parents=True, exist_ok=True)
    features = Features(
        {
            image_column: ImageFeature(),
            label_column: ClassLabel(names=[f"c{i}" for i in range(classes)]),
        }
    )
    for split in splits:
        labels = [i % classes for i in range(per_split)]
        images = [image(rng, size, c) for c in labels]
        Dataset.from_dict(
            {image_column: images, label_column: labels}, features=features
        ).to_parquet(str(root / f"{split}.parquet"))
    return root


def write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    data = header + array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as handle:
            handle.write(data)
    else:
        path.write_bytes(data)


def make_fashion_idx(root: Path, *, train: int = 24, test: int = 12) -> Path:
    rng = np.random.default_rng(5)
    root.mkdir(parents=True, exist_ok=True)
    for prefix, count in (("train", train), ("t10k", test)):
        labels = np.arange(count) % 10
        images = np.stack([np.asarray(image(rng, 28, int(c), mode="L")) for c in labels])
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return root


def standin(cfg: TrainConfig, root: Path) -> Path:
    """Build (once per root) the stand-in for ``cfg.data`` and return its ``data.path``."""
    data = cfg.data
    key = root / f"{data.source}-{data.image_column}-{data.label_column}-{data.eval_split}"
    if data.source == "caltech256":
        return make_caltech(key) if not key.exists() else key / "256_ObjectCategories"
    if data.source == "cub200":
        return make_cub(key) if not key.exists() else key / "CUB_200_2011"
    if data.source == "voc2012":
        return make_voc(key) if not key.exists() else key / "VOCdevkit" / "VOC2012"
    if data.source in ("fashion_mnist", "fashion_mnist_clutter", "fashion_mnist_multi"):
        return make_fashion_idx(key) if not key.exists() else key
    if data.source == "imagefolder":
        return make_imagefolder(key) if not key.exists() else key
    if key.exists():
        return key
    return make_parquet(
        key,
        image_column=data.image_column or "image",
        label_column=data.label_column or "label",
        splits=(data.train_split, data.eval_split),
    )


def standin_overrides(cfg: TrainConfig, root: Path) -> list[str]:
    """Overrides that run ``cfg`` on its stand-in data, offline (no pretrained download)."""
    out = [
        f"data.path={standin(cfg, root)}",
        "model.pretrained=false",
        f"data.cache_dir={root / 'cache'}",
    ]
    if cfg.data.source == "caltech256":
        out += ["data.train_per_class=3", "data.test_per_class=2"]
    if cfg.model.checkpoint:  # local starting weights (converted by a benchmark script)
        out.append("model.checkpoint=null")
    return out


def tiny_recipe(data_dir: Path, output_dir: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """A recipe dict that trains a BatchNorm-in-eval-mode CIFAR ResNet-20 at 16 px in seconds."""
    recipe: dict[str, Any] = {
        "name": "tiny",
        "output_dir": str(output_dir),
        "seed": 0,
        "model": {"name": "cifar_resnet20", "bn_eval": True},
        "data": {
            "source": "imagefolder",
            "path": str(data_dir),
            "image_size": 16,
            "augment": "pad_crop",
            "crop_padding": 2,
            "batch_size": 8,
            "num_workers": 0,
        },
        "optim": {"name": "momentum", "lr": 0.002, "weight_decay": 5.0e-4},
        "schedule": {"epochs": 2, "sched": "cosine"},
        "attention": {"method": "pixel"},
        "accelerate": {"log_with": ["json"], "log_every_n_steps": 1},
        "checkpoint": {"every_epoch": True, "keep_last": 3},
        "eval": {"num_images": 0, "attention_max_samples": 8, "topk": [1, 2]},
    }
    for section, values in sections.items():
        if isinstance(values, dict):
            recipe.setdefault(section, {}).update(values)
        else:
            recipe[section] = values
    return recipe


def write_recipe(path: Path, recipe: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path
