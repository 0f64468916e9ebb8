"""Fashion-MNIST garments on larger canvases, with boxes: the clutter and multi data sets.

Built by ``canvas`` from the Debian package's IDX files (train canvases only from training
images, test canvases only from test images), deterministic for ``data.split_seed``, converted
once and cached as ``datasets`` tables with a ``boxes`` column: per row, one fractional box
``(x0, y0, x1, y1)`` (fractions of the canvas side) per class of its ``label``, in the label's
order. The localisation metrics (``localisation``) read them.

* ``fashion_mnist_clutter``: one garment at a random place on a 64 x 64 canvas plus four
  fragments (8-12 px crops) of garments of other classes, the cluttered-MNIST construction;
  single label (one canvas per source image: 60,000 / 10,000).
* ``fashion_mnist_multi``: 2-3 garments of distinct classes with little overlap; multi-hot
  labels, a VOC-like multi-label task (60,000 / 10,000 canvases).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .canvas import clutter_canvases, multi_canvases
from .fashion_mnist import FASHION_MNIST_CLASSES, cache_root, cached, raw_arrays, raw_stamp
from .tables import features

if TYPE_CHECKING:
    import datasets

__all__ = ["CANVAS_SIZE", "DERIVED", "load_derived"]

CANVAS_SIZE = 64
DERIVED = ("fashion_mnist_clutter", "fashion_mnist_multi")
_VERSION = 1  # bump when the construction changes: a new cache folder


def _table(
    canvases: np.ndarray, labels: list, boxes: list[np.ndarray], multilabel: bool
) -> datasets.Dataset:
    import datasets

    table_features = features(FASHION_MNIST_CLASSES, multilabel)
    table_features["boxes"] = datasets.List(datasets.List(datasets.Value("float32"), length=4))
    fractions = [(np.asarray(b, dtype=np.float32) / CANVAS_SIZE).tolist() for b in boxes]
    return datasets.Dataset.from_dict(
        {"image": list(canvases), "label": labels, "boxes": fractions}, features=table_features
    )


def _build(name: str, root: str | Path | None, seed: int) -> dict[str, datasets.Dataset]:
    splits = {}
    for offset, (split, (images, labels)) in enumerate(raw_arrays(root).items()):
        split_seed = seed * 2 + offset  # train and test canvases from different streams
        if name == "fashion_mnist_clutter":
            canvases, classes, boxes = clutter_canvases(
                images, labels, count=len(images), seed=split_seed, size=CANVAS_SIZE
            )
            table = _table(canvases, classes.tolist(), [b[None] for b in boxes], False)
        else:
            canvases, classes, boxes = multi_canvases(
                images, labels, count=len(images), seed=split_seed, size=CANVAS_SIZE
            )
            table = _table(canvases, classes, boxes, True)
        splits[split] = table
    return splits


def load_derived(
    name: str, path: str | None = None, cache_dir: str | None = None, *, seed: int = 0
) -> datasets.DatasetDict:
    """``train``/``test`` tables of ``name`` (one of ``DERIVED``), built once and cached."""
    if name not in DERIVED:
        raise ValueError(f"derived data set must be one of {', '.join(DERIVED)}, got {name!r}")
    key = f"{name}-v{_VERSION}-seed{seed}-{raw_stamp(path)}"
    return cached(cache_root(cache_dir) / key, lambda: _build(name, path, seed))
