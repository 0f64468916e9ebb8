"""Every source as one normalised table: a ``datasets.Dataset`` with ``image`` and ``label``.

``label`` is a ``ClassLabel`` (``List(ClassLabel)`` of the present classes when multi-label).
The helpers here build such tables from lists of files, load Hub datasets (one clear error when
offline or unknown) and pick the configured columns of someone else's dataset.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import DataConfig
from ..errors import DataError

if TYPE_CHECKING:
    import datasets

__all__ = [
    "DatasetNotFoundError",
    "Splits",
    "features",
    "from_lists",
    "load_hub",
    "normalize_columns",
    "pick_splits",
    "subset",
    "unreadable_images",
]


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


def features(class_names: Sequence[str], multilabel: bool) -> datasets.Features:
    from datasets import ClassLabel, Features, Image, List

    label = ClassLabel(names=list(class_names))
    return Features({"image": Image(), "label": List(label) if multilabel else label})


def from_lists(images: Sequence[Any], labels: Sequence[Any], names, multilabel) -> datasets.Dataset:
    from datasets import Dataset

    return Dataset.from_dict(
        {"image": list(images), "label": list(labels)}, features=features(names, multilabel)
    )


def _label_names(feature: Any) -> list[str] | None:
    names = getattr(feature, "names", None)
    if names is None and hasattr(feature, "feature"):  # List(ClassLabel)
        names = getattr(feature.feature, "names", None)
    return list(names) if names is not None else None


def normalize_columns(
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
    if label_col is None:
        raise DataError(
            f"split {split!r} of {cfg.path!r} has no label column (columns: {', '.join(columns)}); "
            "an image folder needs at least two class folders, other data sets "
            "data.label_column"
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


def load_hub(path: str, config_name: str | None = None, **kwargs: Any) -> datasets.DatasetDict:
    import datasets

    try:
        return datasets.load_dataset(path, config_name, **kwargs)
    except Exception as err:  # offline, unknown id, gated: one clear message, cause chained
        raise DatasetNotFoundError(
            f"dataset {path!r} could not be loaded ({type(err).__name__}: {err}); give a "
            "reachable Hub id or a local directory in data.path"
        ) from err


def pick_splits(dd: Any, cfg: DataConfig) -> tuple[Any, Any]:
    for split in (cfg.train_split, cfg.eval_split):
        if split not in dd:
            raise DataError(
                f"dataset {cfg.path!r} has no split {split!r}; splits: {', '.join(dd)} "
                "(set data.train_split / data.eval_split)"
            )
    return dd[cfg.train_split], dd[cfg.eval_split]


def unreadable_images(table: datasets.Dataset) -> list[int]:
    """Rows of ``table`` whose image Pillow cannot read (``verify``: header and structure),
    checked without decoding the pixels; file-backed tables only need this."""
    import io

    from datasets import Image as ImageFeature
    from PIL import Image

    bad = []
    for index, item in enumerate(table.cast_column("image", ImageFeature(decode=False))["image"]):
        try:
            source = io.BytesIO(item["bytes"]) if item.get("bytes") else item["path"]
            with Image.open(source) as image:
                image.verify()
        except Exception:  # truncated, not an image, unreadable file: all the same to us
            bad.append(index)
    return bad


def subset(ds: datasets.Dataset, limit: int | None, seed: int) -> datasets.Dataset:
    if limit is None or limit >= len(ds):
        return ds
    keep = np.random.default_rng(seed).permutation(len(ds))[:limit]
    return ds.select(sorted(keep.tolist()))
