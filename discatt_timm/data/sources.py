"""``load_splits``: the train and eval tables of a recipe's ``data`` section, by source.

* ``hub``: ``datasets.load_dataset(path, config_name)``: a Hub id (e.g. ``uoft-cs/cifar100``)
  or a local data directory; image and label columns are detected or named in the recipe.
* ``imagefolder``: ``datasets.load_dataset("imagefolder", data_dir=path)``.
* ``fashion_mnist``: the IDX files of the Debian package ``dataset-fashion-mnist``
  (``/usr/share/datasets/fashion-mnist``), converted once and cached; else the Hub dataset
  ``zalando-datasets/fashion_mnist``; else an error naming the apt-get step.
* ``fashion_mnist_clutter`` / ``fashion_mnist_multi``: garments on larger canvases with boxes,
  built from those files (``derived``).
* ``caltech256``: ``256_ObjectCategories``; per class ``train_per_class`` images for training
  and up to ``test_per_class`` of the rest for testing (seeded), ``drop_classes`` removed.
* ``cub200``: ``CUB_200_2011`` with its official train/test split.
* ``voc2012``: ``VOC2012`` (``JPEGImages`` + ``ImageSets/Main/<class>_<split>.txt``), multi-hot
  targets; a class marked difficult-only (0) counts as present.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..config import DataConfig
from ..errors import DataError
from .derived import DERIVED, load_derived
from .fashion_mnist import FASHION_MNIST_CLASSES, load_fashion_mnist
from .protocols import load_caltech256, load_cub200, load_voc2012
from .tables import (
    DatasetNotFoundError,
    Splits,
    from_lists,
    load_hub,
    normalize_columns,
    pick_splits,
    subset,
    unreadable_images,
)

if TYPE_CHECKING:
    import datasets

__all__ = ["load_splits"]


def _readable(table: datasets.Dataset, cfg: DataConfig) -> datasets.Dataset:
    """``table`` without unreadable images (``data.skip_unreadable``), else an error naming
    them, before any training starts."""
    bad = unreadable_images(table)
    if not bad:
        return table
    from datasets import Image as ImageFeature

    sources = table.cast_column("image", ImageFeature(decode=False))["image"]
    named = [sources[i].get("path") or f"row {i}" for i in bad[:3]]
    if not cfg.skip_unreadable:
        raise DataError(
            f"{len(bad)} unreadable image(s) in {cfg.path or cfg.source}, e.g. "
            f"{', '.join(named)}; remove them or set data.skip_unreadable: true"
        )
    print(f"data: skipping {len(bad)} unreadable image(s), e.g. {', '.join(named)}")
    keep = sorted(set(range(len(table))) - set(bad))
    return table.select(keep)


def load_splits(cfg: DataConfig) -> Splits:
    """The normalised train and eval splits of ``cfg`` (subsets applied)."""
    if cfg.source in ("caltech256", "cub200", "voc2012"):
        loader = {"caltech256": load_caltech256, "cub200": load_cub200, "voc2012": load_voc2012}
        train_parts, eval_parts, names = loader[cfg.source](cfg)
        train = from_lists(*train_parts, cfg.multilabel)
        evaluation = from_lists(*eval_parts, cfg.multilabel)
    elif cfg.source in DERIVED:  # already normalised, with a boxes column
        dd = load_derived(cfg.source, cfg.path, cfg.cache_dir, seed=cfg.split_seed)
        train, evaluation = pick_splits(dd, cfg)
        names = list(FASHION_MNIST_CLASSES)
    else:
        if cfg.source == "fashion_mnist":
            dd = load_fashion_mnist(cfg.path, cfg.cache_dir)
        elif cfg.source == "imagefolder":
            if not Path(cfg.path or "").is_dir():
                raise DatasetNotFoundError(f"image folder {cfg.path!r} does not exist")
            dd = load_hub("imagefolder", data_dir=cfg.path)
        else:
            dd = load_hub(cfg.path or "", cfg.config_name)
        train_raw, eval_raw = pick_splits(dd, cfg)
        train, names = normalize_columns(train_raw, cfg, cfg.train_split)
        evaluation, eval_names = normalize_columns(eval_raw, cfg, cfg.eval_split)
        if eval_names != names:
            raise DataError(
                f"splits {cfg.train_split!r} and {cfg.eval_split!r} have different classes"
            )
    train = subset(train, cfg.max_train_samples, cfg.split_seed)
    evaluation = subset(evaluation, cfg.max_eval_samples, cfg.split_seed)
    if cfg.source not in ("fashion_mnist", *DERIVED):  # files on disk: find bad ones now
        train, evaluation = (_readable(t, cfg) for t in (train, evaluation))
    return Splits(train, evaluation, tuple(names), cfg.multilabel)
