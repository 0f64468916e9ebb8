"""``DataConfig``: the recipe's ``data`` section (dataset, protocol, transforms, batch size)."""

from __future__ import annotations

from dataclasses import dataclass

from ._checks import check, positive_int

__all__ = ["AUGMENTS", "CROP_MODES", "DATA_SOURCES", "DataConfig"]

DATA_SOURCES = (
    "hub",
    "imagefolder",
    "fashion_mnist",
    "fashion_mnist_clutter",
    "fashion_mnist_multi",
    "caltech256",
    "cub200",
    "voc2012",
)
AUGMENTS = ("timm", "pad_crop", "none")
CROP_MODES = ("center", "squash", "border")


@dataclass(frozen=True)
class DataConfig:
    """Dataset, evaluation protocol, transforms and loading.

    Attributes:
        source: ``hub`` (``datasets.load_dataset(path)``: a Hub id or a local data directory),
            ``imagefolder`` (``path/train/<class>/*`` and ``path/<eval_split>/<class>/*``),
            ``fashion_mnist`` (Debian ``dataset-fashion-mnist`` IDX files, else the Hub),
            ``fashion_mnist_clutter`` / ``fashion_mnist_multi`` (garments on 64 x 64 canvases
            with distractors / 2-3 garments, multi-label; with boxes, ``data.derived``),
            ``caltech256`` (``256_ObjectCategories`` folder, split per class by the protocol),
            ``cub200`` (``CUB_200_2011`` folder, official split), ``voc2012`` (``VOC2012``
            folder, multi-hot labels from ``ImageSets/Main``).
        path: Hub id or local directory; ``None`` = the source's default location.
        config_name: Hub dataset configuration (``load_dataset(path, config_name)``).
        train_split, eval_split: split names.
        image_column, label_column: column names for ``hub`` data; ``None`` = detect.
        multilabel: targets are multi-hot; loss is multi-label soft margin; metrics mAP/AUC.
        image_size: model input side; ``None`` = the model's pretrained config.
        mean, std: normalisation; ``None`` = the model's pretrained config.
        crop_pct: eval center-crop fraction; ``None`` = the model's pretrained config.
        crop_mode: eval crop (timm): ``center`` (resize the short side, center crop),
            ``squash`` (resize to exactly ``image_size`` x ``image_size``) or ``border``.
        augment: ``timm`` (random resized crop, flip, color jitter), ``pad_crop`` (resize to
            ``image_size``, pad by ``crop_padding``, random crop, flip: the CIFAR recipe) or
            ``none``.
        hflip: horizontal flip probability (``timm`` and ``pad_crop``).
        scale: random resized crop area range (``timm``).
        color_jitter: color jitter strength (``timm``; 0 disables).
        crop_padding: padding of ``pad_crop``.
        batch_size: GLOBAL batch per forward (split over processes; times
            ``accelerate.gradient_accumulation_steps`` per optimizer step).
        eval_batch_size: global eval batch; ``None`` = ``batch_size``.
        num_workers: DataLoader workers per process.
        max_train_samples, max_eval_samples: seeded random subsets (quick runs, demos).
        train_per_class, test_per_class: per-class split sizes (``caltech256``; the test part
            takes at most ``test_per_class`` of the images left after the training part).
        drop_classes: class names removed from both splits (``257.clutter`` for Caltech-256).
        split_seed: seed of protocol splits, subsets and the derived canvases.
        skip_unreadable: leave out images Pillow cannot read (said with a count); by default
            they stop the run before training, named.
        cache_dir: where converted datasets (Fashion-MNIST) are cached; ``None`` =
            ``$XDG_CACHE_HOME/discatt_timm`` (``~/.cache/discatt_timm``).
    """

    source: str = "hub"
    path: str | None = None
    config_name: str | None = None
    train_split: str = "train"
    eval_split: str = "test"
    image_column: str | None = None
    label_column: str | None = None
    multilabel: bool = False
    image_size: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    crop_pct: float | None = None
    crop_mode: str = "center"
    augment: str = "timm"
    hflip: float = 0.5
    scale: tuple[float, float] = (0.08, 1.0)
    color_jitter: float = 0.4
    crop_padding: int = 4
    batch_size: int = 128
    eval_batch_size: int | None = None
    num_workers: int = 4
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    train_per_class: int | None = None
    test_per_class: int | None = None
    drop_classes: tuple[str, ...] = ()
    split_seed: int = 0
    cache_dir: str | None = None
    skip_unreadable: bool = False

    def __post_init__(self) -> None:
        check(
            self.source in DATA_SOURCES,
            "data.source",
            f"must be one of {', '.join(DATA_SOURCES)}, got {self.source!r}",
        )
        check(
            self.source != "hub" or bool(self.path),
            "data.path",
            "is required for data.source 'hub' (a Hub id such as uoft-cs/cifar100, or a directory)",
        )
        check(
            self.source != "imagefolder" or bool(self.path),
            "data.path",
            "is required for data.source 'imagefolder' (a directory with train/ and test/)",
        )
        check(
            self.source != "caltech256" or self.train_per_class is not None,
            "data.train_per_class",
            "is required for data.source 'caltech256' (the paper uses 30 or 60)",
        )
        for source in ("voc2012", "fashion_mnist_multi"):
            check(
                self.source != source or self.multilabel,
                "data.multilabel",
                f"must be true for data.source {source!r} (its targets are multi-hot)",
            )
        check(
            self.source != "fashion_mnist_clutter" or not self.multilabel,
            "data.multilabel",
            "must be false for data.source 'fashion_mnist_clutter' (one garment per canvas)",
        )
        positive_int(self.image_size, "data.image_size", allow_none=True)
        for key, values in (("data.mean", self.mean), ("data.std", self.std)):
            if values is not None:
                check(len(values) > 0, key, "must list one value per input channel")
        if self.std is not None:
            check(all(s > 0 for s in self.std), "data.std", f"must be > 0, got {self.std}")
        if self.crop_pct is not None:
            check(
                0 < self.crop_pct <= 1, "data.crop_pct", f"must lie in (0, 1], got {self.crop_pct}"
            )
        check(
            self.crop_mode in CROP_MODES,
            "data.crop_mode",
            f"must be one of {', '.join(CROP_MODES)}, got {self.crop_mode!r}",
        )
        check(
            self.augment in AUGMENTS,
            "data.augment",
            f"must be one of {', '.join(AUGMENTS)}, got {self.augment!r}",
        )
        check(0 <= self.hflip <= 1, "data.hflip", f"must lie in [0, 1], got {self.hflip}")
        lo, hi = self.scale
        check(
            0 < lo <= hi <= 1,
            "data.scale",
            f"must be [min, max] with 0 < min <= max <= 1, got {self.scale}",
        )
        check(self.color_jitter >= 0, "data.color_jitter", f"must be >= 0, got {self.color_jitter}")
        check(self.crop_padding >= 0, "data.crop_padding", f"must be >= 0, got {self.crop_padding}")
        positive_int(self.batch_size, "data.batch_size")
        positive_int(self.eval_batch_size, "data.eval_batch_size", allow_none=True)
        check(self.num_workers >= 0, "data.num_workers", f"must be >= 0, got {self.num_workers}")
        for key in ("max_train_samples", "max_eval_samples", "train_per_class", "test_per_class"):
            positive_int(getattr(self, key), f"data.{key}", allow_none=True)
