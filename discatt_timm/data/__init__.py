"""Data: every source as a ``datasets`` table, timm transforms, seeded loaders.

The way of the data: ``load_splits(cfg)`` (``sources``: Hub, image folder, Fashion-MNIST,
the paper's protocols) gives normalised ``image``/``label`` tables; ``build_data`` wraps them
with the model's timm transforms (``pipeline``), ``build_loaders`` batches them; ``eval_data``
does all of it for scoring a trained model.
"""

from ..errors import DataError
from .fashion_mnist import FASHION_MNIST_CLASSES, cache_root, load_fashion_mnist, read_idx
from .pipeline import (
    DataBundle,
    ImageClassificationDataset,
    build_data,
    build_loaders,
    build_transforms,
    convert_image,
    eval_data,
    model_data_config,
    named_data,
)
from .protocols import VOC_CLASSES, caltech256_split
from .sources import load_splits
from .tables import DatasetNotFoundError, Splits

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
    "cache_root",
    "convert_image",
    "caltech256_split",
    "eval_data",
    "load_fashion_mnist",
    "load_splits",
    "model_data_config",
    "named_data",
    "read_idx",
]
