"""Fashion-MNIST from the Debian package's IDX files (converted once, cached), else the Hub."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import DataError
from .tables import DatasetNotFoundError, features, load_hub

if TYPE_CHECKING:
    import datasets

__all__ = [
    "FASHION_MNIST_CLASSES",
    "cache_root",
    "cached",
    "load_fashion_mnist",
    "raw_arrays",
    "raw_stamp",
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
            hub = load_hub(FASHION_MNIST_HUB)
        except DatasetNotFoundError as err:
            raise DatasetNotFoundError(
                f"Fashion-MNIST is not in {root} and the Hub dataset {FASHION_MNIST_HUB} is "
                f"unreachable ({err.__cause__ or err}); install it with: "
                "sudo apt-get install -y dataset-fashion-mnist"
            ) from err
        return hub

    def build() -> dict[str, datasets.Dataset]:
        table_features = features(FASHION_MNIST_CLASSES, multilabel=False)
        return {
            split: datasets.Dataset.from_dict(
                {"image": list(images), "label": labels.tolist()}, features=table_features
            )
            for split, (images, labels) in raw_arrays(root).items()
        }

    return cached(cache_root(cache_dir) / f"fashion_mnist-{raw_stamp(root)}", build)


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def raw_arrays(path: str | Path | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train": (images N x 28 x 28 uint8, labels N int64), "test": ...}`` from the IDX
    files in ``path`` (default: the Debian package's directory)."""
    root = Path(path or FASHION_MNIST_DIR)
    files = _idx_files(root)
    if files is None:
        raise DatasetNotFoundError(
            f"the Fashion-MNIST IDX files are not in {root}; install them with: "
            "sudo apt-get install -y dataset-fashion-mnist (or set data.path)"
        )
    out = {}
    for split in ("train", "test"):
        images = read_idx(files[f"{split}_images"])
        labels = read_idx(files[f"{split}_labels"])
        if images.ndim != 3 or labels.shape != images.shape[:1]:
            raise DataError(f"Fashion-MNIST {split} files in {root} do not match")
        out[split] = images, labels.astype(np.int64)
    return out


def raw_stamp(path: str | Path | None = None) -> str:
    """A short key of the IDX files' identity (path, size, mtime), for cache folder names."""
    files = _idx_files(Path(path or FASHION_MNIST_DIR)) or {}
    stamp = "|".join(
        f"{p.resolve()}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files.values()
    )
    return _digest(stamp)


def cached(target: Path, build: Callable[[], dict[str, datasets.Dataset]]) -> datasets.DatasetDict:
    """``target`` loaded from disk, built (``build()``) and saved atomically the first time."""
    import datasets

    if not (target / "dataset_dict.json").is_file():
        splits = build()
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
        datasets.DatasetDict(splits).save_to_disk(str(tmp))
        try:
            os.replace(tmp, target)  # atomic: a concurrent converter may have won the race
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    return datasets.load_from_disk(str(target))
