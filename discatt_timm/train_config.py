"""``TrainConfig``: one training run (a recipe) as nested frozen dataclasses.

A recipe YAML file maps one to one onto these sections::

    name, description, seed, deterministic, output_dir   (top level)
    model:      ModelConfig        what to build and which weights to start from
    data:       DataConfig         dataset, protocol, transforms, batch size
    optim:      OptimConfig        timm ``create_optimizer_v2`` settings
    schedule:   ScheduleConfig     timm ``create_scheduler_v2`` settings, epochs
    attention:  AttentionLossConfig (``method: none`` = the plain baseline)
    accelerate: AccelerateConfig   mixed precision, accumulation, DDP, trackers
    checkpoint: CheckpointConfig   when to ``save_state`` and how many to keep
    eval:       EvalConfig         metrics on the eval split, attention metrics

Every value is checked in ``__post_init__``; errors are ``RecipeError`` and name the recipe key
(``recipe key 'optim.lr' must be > 0, got -1``). ``TrainConfig.from_dict`` rejects unknown keys
(with a close-match suggestion) and wrong types before any work starts.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Union, get_args, get_origin, get_type_hints

from .config import AttentionLossConfig

__all__ = [
    "AccelerateConfig",
    "CheckpointConfig",
    "DataConfig",
    "EvalConfig",
    "ModelConfig",
    "OptimConfig",
    "RecipeError",
    "ScheduleConfig",
    "TrainConfig",
]

DATA_SOURCES = ("hub", "imagefolder", "fashion_mnist", "caltech256", "cub200", "voc2012")
AUGMENTS = ("timm", "pad_crop", "none")
CROP_MODES = ("center", "squash", "border")
SCHEDULES = ("cosine", "step", "multistep", "poly", "tanh", "none")
MIXED_PRECISION = ("no", "fp16", "bf16")
TRACKERS = ("json", "tensorboard", "wandb", "mlflow", "comet_ml", "aim", "clearml", "dvclive")
NO_ATTENTION = "none"


class RecipeError(ValueError):
    """A recipe (or ``--set`` override) with an unknown key, a wrong type or a bad value."""


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise RecipeError(f"recipe key '{key}' {message}")


def _positive_int(value: int | None, key: str, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    _check(value is not None and value > 0, key, f"must be a positive integer, got {value}")


@dataclass(frozen=True)
class ModelConfig:
    """Which timm model to build and which weights it starts from.

    Attributes:
        name: a timm model name, optionally with a pretrained tag (``resnet18.a1_in1k``), or
            ``hf-hub:org/repo`` / ``local-dir:/path`` (timm resolves both; a supervised variant
            published by this project is an ``hf-hub:`` name).
        pretrained: load the weights that ``name`` designates (timm tag, hub repo or local dir).
        checkpoint: start from a local weights file instead (``.safetensors``, or a torch file
            read with ``weights_only=True``), or a directory holding ``model.safetensors`` (a run
            directory or one of its checkpoints). Exclusive with ``pretrained``.
        num_classes: classifier outputs; ``None`` takes the class count of the dataset. A
            classifier whose size differs from the weights' is re-made by timm (not loaded).
        in_chans: input channels (1 for grayscale data; timm adapts pretrained stems).
        drop_rate: dropout before the classifier.
        layers: ``[inner, last]`` module names of the supervised layers; ``None`` = registry.
        freeze: module names to freeze (``timm.utils.freeze``: parameters and BatchNorm
            statistics), e.g. ``[conv1, bn1, layer1]``.
        bn_eval: keep every BatchNorm layer in eval mode while training (running statistics
            fixed, affine parameters still trained). Removes BatchNorm's coupling of the samples
            in a batch; useful for small batches and exact per-sample attention gradients.
    """

    name: str
    pretrained: bool = False
    checkpoint: str | None = None
    num_classes: int | None = None
    in_chans: int = 3
    drop_rate: float = 0.0
    layers: tuple[str, str] | None = None
    freeze: tuple[str, ...] = ()
    bn_eval: bool = False

    def __post_init__(self) -> None:
        _check(bool(self.name), "model.name", "must be a non-empty timm model name")
        if not self.name.startswith(("hf-hub:", "local-dir:")):
            import timm  # the package import has registered the cifar_resnet* models

            _check(
                timm.is_model(self.name),
                "model.name",
                f"must be a timm model, got {self.name!r}"
                f"{_suggest(self.name.split('.')[0], timm.list_models())}",
            )
        _check(
            not (self.pretrained and self.checkpoint),
            "model.checkpoint",
            "and model.pretrained=true are exclusive: the checkpoint is the starting weights",
        )
        _positive_int(self.num_classes, "model.num_classes", allow_none=True)
        _positive_int(self.in_chans, "model.in_chans")
        _check(
            0.0 <= self.drop_rate < 1.0,
            "model.drop_rate",
            f"must lie in [0, 1), got {self.drop_rate}",
        )
        if self.layers is not None:
            _check(all(self.layers), "model.layers", f"must be two module names, got {self.layers}")


@dataclass(frozen=True)
class DataConfig:
    """Dataset, evaluation protocol, transforms and loading.

    Attributes:
        source: ``hub`` (``datasets.load_dataset(path)``: a Hub id or a local data directory),
            ``imagefolder`` (``path/train/<class>/*`` and ``path/<eval_split>/<class>/*``),
            ``fashion_mnist`` (Debian ``dataset-fashion-mnist`` IDX files, else the Hub),
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
        split_seed: seed of protocol splits and subsets.
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

    def __post_init__(self) -> None:
        _check(
            self.source in DATA_SOURCES,
            "data.source",
            f"must be one of {', '.join(DATA_SOURCES)}, got {self.source!r}",
        )
        _check(
            self.source != "hub" or bool(self.path),
            "data.path",
            "is required for data.source 'hub' (a Hub id such as uoft-cs/cifar100, or a directory)",
        )
        _check(
            self.source != "imagefolder" or bool(self.path),
            "data.path",
            "is required for data.source 'imagefolder' (a directory with train/ and test/)",
        )
        _check(
            self.source != "caltech256" or self.train_per_class is not None,
            "data.train_per_class",
            "is required for data.source 'caltech256' (the paper uses 30 or 60)",
        )
        _check(
            self.source != "voc2012" or self.multilabel,
            "data.multilabel",
            "must be true for data.source 'voc2012' (VOC targets are multi-hot)",
        )
        _positive_int(self.image_size, "data.image_size", allow_none=True)
        for key, values in (("data.mean", self.mean), ("data.std", self.std)):
            if values is not None:
                _check(len(values) > 0, key, "must list one value per input channel")
        if self.std is not None:
            _check(all(s > 0 for s in self.std), "data.std", f"must be > 0, got {self.std}")
        if self.crop_pct is not None:
            _check(
                0 < self.crop_pct <= 1, "data.crop_pct", f"must lie in (0, 1], got {self.crop_pct}"
            )
        _check(
            self.crop_mode in CROP_MODES,
            "data.crop_mode",
            f"must be one of {', '.join(CROP_MODES)}, got {self.crop_mode!r}",
        )
        _check(
            self.augment in AUGMENTS,
            "data.augment",
            f"must be one of {', '.join(AUGMENTS)}, got {self.augment!r}",
        )
        _check(0 <= self.hflip <= 1, "data.hflip", f"must lie in [0, 1], got {self.hflip}")
        lo, hi = self.scale
        _check(
            0 < lo <= hi <= 1,
            "data.scale",
            f"must be [min, max] with 0 < min <= max <= 1, got {self.scale}",
        )
        _check(
            self.color_jitter >= 0, "data.color_jitter", f"must be >= 0, got {self.color_jitter}"
        )
        _check(
            self.crop_padding >= 0, "data.crop_padding", f"must be >= 0, got {self.crop_padding}"
        )
        _positive_int(self.batch_size, "data.batch_size")
        _positive_int(self.eval_batch_size, "data.eval_batch_size", allow_none=True)
        _check(self.num_workers >= 0, "data.num_workers", f"must be >= 0, got {self.num_workers}")
        for key in ("max_train_samples", "max_eval_samples", "train_per_class", "test_per_class"):
            _positive_int(getattr(self, key), f"data.{key}", allow_none=True)


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer (``timm.optim.create_optimizer_v2``).

    Attributes:
        name: timm optimizer name: ``momentum`` is SGD with momentum (the paper's), ``sgd`` is
            timm's Nesterov SGD, ``adamw``, ...
        lr: base learning rate (of the classifier when ``backbone_lr_scale != 1``).
        momentum: momentum of SGD-type optimizers.
        weight_decay: L2 weight decay.
        filter_bias_and_bn: no weight decay on biases and normalisation parameters (timm).
        backbone_lr_scale: learning rate of every non-classifier parameter, relative to ``lr``
            (fine-tuning: e.g. 0.1; 1 = one group).
        clip_grad: clip the global gradient norm to this value; ``None`` = off.
    """

    name: str = "momentum"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    filter_bias_and_bn: bool = True
    backbone_lr_scale: float = 1.0
    clip_grad: float | None = None

    def __post_init__(self) -> None:
        from timm.optim import list_optimizers  # lazy: timm's registry

        names = list_optimizers()
        _check(
            self.name in names,
            "optim.name",
            f"must be a timm optimizer, got {self.name!r}{_suggest(self.name, names)}",
        )
        _check(math.isfinite(self.lr) and self.lr > 0, "optim.lr", f"must be > 0, got {self.lr}")
        _check(0 <= self.momentum < 1, "optim.momentum", f"must lie in [0, 1), got {self.momentum}")
        _check(
            self.weight_decay >= 0, "optim.weight_decay", f"must be >= 0, got {self.weight_decay}"
        )
        _check(
            0 < self.backbone_lr_scale <= 1,
            "optim.backbone_lr_scale",
            f"must lie in (0, 1], got {self.backbone_lr_scale}",
        )
        if self.clip_grad is not None:
            _check(self.clip_grad > 0, "optim.clip_grad", f"must be > 0, got {self.clip_grad}")


@dataclass(frozen=True)
class ScheduleConfig:
    """Epochs and learning-rate schedule (``timm.scheduler.create_scheduler_v2``).

    Attributes:
        epochs: training epochs.
        sched: ``cosine`` (one cycle to ``min_lr``), ``step`` (every ``decay_epochs``),
            ``multistep`` (at ``milestones``), ``poly``, ``tanh`` or ``none`` (constant).
        milestones: epochs at which ``multistep`` multiplies the rate by ``decay_rate``.
        decay_epochs: period of ``step``.
        decay_rate: factor of ``step``/``multistep``.
        min_lr: floor of ``cosine``/``poly``/``tanh``.
        warmup_epochs, warmup_lr: linear warmup.
        step_on_epochs: change the rate once per epoch (else every optimizer step).
        max_steps: stop after this many optimizer steps (smoke tests); ``None`` = all epochs.
    """

    epochs: int = 1
    sched: str = "cosine"
    milestones: tuple[int, ...] = ()
    decay_epochs: float = 30.0
    decay_rate: float = 0.1
    min_lr: float = 0.0
    warmup_epochs: int = 0
    warmup_lr: float = 1e-5
    step_on_epochs: bool = True
    max_steps: int | None = None

    def __post_init__(self) -> None:
        _positive_int(self.epochs, "schedule.epochs")
        _check(
            self.sched in SCHEDULES,
            "schedule.sched",
            f"must be one of {', '.join(SCHEDULES)}, got {self.sched!r}",
        )
        _check(
            self.sched != "multistep" or len(self.milestones) > 0,
            "schedule.milestones",
            "must list at least one epoch for sched 'multistep'",
        )
        _check(
            list(self.milestones) == sorted(set(self.milestones))
            and all(m > 0 for m in self.milestones),
            "schedule.milestones",
            f"must be increasing positive epochs, got {list(self.milestones)}",
        )
        _check(
            self.decay_epochs > 0, "schedule.decay_epochs", f"must be > 0, got {self.decay_epochs}"
        )
        _check(
            0 < self.decay_rate <= 1,
            "schedule.decay_rate",
            f"must lie in (0, 1], got {self.decay_rate}",
        )
        _check(self.min_lr >= 0, "schedule.min_lr", f"must be >= 0, got {self.min_lr}")
        _check(
            0 <= self.warmup_epochs < self.epochs,
            "schedule.warmup_epochs",
            f"must lie in [0, epochs={self.epochs}), got {self.warmup_epochs}",
        )
        _check(self.warmup_lr >= 0, "schedule.warmup_lr", f"must be >= 0, got {self.warmup_lr}")
        _positive_int(self.max_steps, "schedule.max_steps", allow_none=True)


@dataclass(frozen=True)
class AccelerateConfig:
    """Accelerate settings: the one code path for CPU, one GPU, many GPUs and many machines.

    Attributes:
        mixed_precision: ``no``, ``fp16`` (GPU only; class gradients are not loss-scaled, see
            METHOD.md) or ``bf16`` (preferred).
        gradient_accumulation_steps: micro-batches per optimizer step.
        cpu: force the CPU even where an accelerator exists.
        static_graph: DDP ``static_graph``. Refused with attention supervision: DDP then
            silently stops all-reducing gradients when the first backward of an iteration is
            the attention ``autograd.grad``.
        find_unused_parameters: DDP ``find_unused_parameters``.
        log_with: trackers: ``json`` (``logs/metrics.jsonl``, always available), ``tensorboard``
            (needs the ``tensorboard`` package) or any other Accelerate tracker name.
        log_every_n_steps: optimizer steps between two logged training records.
    """

    mixed_precision: str = "no"
    gradient_accumulation_steps: int = 1
    cpu: bool = False
    static_graph: bool = False
    find_unused_parameters: bool = False
    log_with: tuple[str, ...] = ("json",)
    log_every_n_steps: int = 50

    def __post_init__(self) -> None:
        _check(
            self.mixed_precision in MIXED_PRECISION,
            "accelerate.mixed_precision",
            f"must be one of {', '.join(MIXED_PRECISION)}, got {self.mixed_precision!r}",
        )
        _positive_int(self.gradient_accumulation_steps, "accelerate.gradient_accumulation_steps")
        for name in self.log_with:
            _check(
                name in TRACKERS,
                "accelerate.log_with",
                f"entries must be among {', '.join(TRACKERS)}, got {name!r}"
                f"{_suggest(name, TRACKERS)}",
            )
        _positive_int(self.log_every_n_steps, "accelerate.log_every_n_steps")


@dataclass(frozen=True)
class CheckpointConfig:
    """When ``accelerator.save_state`` runs (atomically, into ``<run>/checkpoints/step_N``).

    Attributes:
        every_epoch: checkpoint at the end of every epoch.
        every_n_steps: also every this many optimizer steps; ``None`` = off.
        keep_last: complete checkpoints kept (older ones are deleted).
    """

    every_epoch: bool = True
    every_n_steps: int | None = None
    keep_last: int = 2

    def __post_init__(self) -> None:
        _positive_int(self.every_n_steps, "checkpoint.every_n_steps", allow_none=True)
        _positive_int(self.keep_last, "checkpoint.keep_last")


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation on ``data.eval_split`` (written to ``<run>/metrics.json``).

    Attributes:
        every_n_epochs: evaluate every this many epochs (and always after the last one).
        topk: top-k accuracies reported for single-label data.
        attention: compute the attention metrics (mean sIoU target vs confusing class at the
            inner and last layer, mean consistency loss) with ``grad_mode='detached'``.
        attention_method: map used for the attention metrics, the same for a baseline and its
            supervised runs so that they compare.
        attention_max_samples: cap on the samples that enter the attention metrics.
        num_images: test images shown in ``attention_maps.png`` (0: no image).
    """

    every_n_epochs: int = 1
    topk: tuple[int, ...] = (1, 5)
    attention: bool = True
    attention_method: str = "pixel"
    attention_max_samples: int | None = None
    num_images: int = 8

    def __post_init__(self) -> None:
        from .attention import list_attentions  # lazy: the registry fills on package import

        _positive_int(self.every_n_epochs, "eval.every_n_epochs")
        _check(
            len(self.topk) > 0 and all(k > 0 for k in self.topk),
            "eval.topk",
            f"must list positive integers, got {list(self.topk)}",
        )
        _check(
            self.attention_method in list_attentions(),
            "eval.attention_method",
            f"must be one of {', '.join(list_attentions())}, got {self.attention_method!r}",
        )
        _positive_int(self.attention_max_samples, "eval.attention_max_samples", allow_none=True)
        _check(self.num_images >= 0, "eval.num_images", f"must be >= 0, got {self.num_images}")


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Build from a recipe with ``discatt_timm.recipes.load_recipe``.

    Attributes:
        name: run name; the run directory is ``output_dir/name``.
        model, data, optim, schedule, attention, accelerate, checkpoint, eval: the sections.
        description: free text (e.g. where the starting weights come from).
        seed: seed of ``accelerate.utils.set_seed``, the data order and the augmentations.
        deterministic: also ask torch for deterministic algorithms.
        output_dir: parent of the run directory.

    ``attention.method: none`` trains the plain baseline (cross-entropy or multi-label soft
    margin) through the same code; ``attention.multilabel`` always follows ``data.multilabel``.
    """

    name: str
    model: ModelConfig
    data: DataConfig
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    attention: AttentionLossConfig = field(default_factory=AttentionLossConfig)
    accelerate: AccelerateConfig = field(default_factory=AccelerateConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    description: str = ""
    seed: int = 0
    deterministic: bool = False
    output_dir: str = "runs"

    def __post_init__(self) -> None:
        from .attention import list_attentions

        _check(
            bool(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", self.name)),
            "name",
            f"must be a plain run name (letters, digits, '.', '_', '-'), got {self.name!r}",
        )
        methods = [NO_ATTENTION, *list_attentions()]
        _check(
            self.attention.method in methods,
            "attention.method",
            f"must be one of {', '.join(methods)}, got {self.attention.method!r}",
        )
        if self.attention.multilabel != self.data.multilabel:
            attention = dataclasses.replace(self.attention, multilabel=self.data.multilabel)
            object.__setattr__(self, "attention", attention)
        _check(
            not (self.supervised and self.accelerate.static_graph),
            "accelerate.static_graph",
            f"must be false with attention.method {self.attention.method!r}: DDP static_graph "
            "silently stops the gradient all-reduce when the first backward of an iteration is "
            "the attention autograd.grad",
        )
        for key, values in (("data.mean", self.data.mean), ("data.std", self.data.std)):
            _check(
                values is None or len(values) == self.model.in_chans,
                key,
                f"must have model.in_chans={self.model.in_chans} values, got {values}",
            )
        _check(self.seed >= 0, "seed", f"must be >= 0, got {self.seed}")

    @property
    def supervised(self) -> bool:
        """True when the attention losses are on (``attention.method`` is not ``none``)."""
        return self.attention.method != NO_ATTENTION

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Build from a parsed recipe; unknown keys, wrong types and bad values raise."""
        return _build(cls, data, "")

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (lists, not tuples) that ``from_dict`` and YAML round-trip."""
        out = _plain(dataclasses.asdict(self))
        out["attention"].pop("multilabel")  # follows data.multilabel
        return out


# --- dict -> dataclass ---------------------------------------------------------------------

_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|nan)", re.IGNORECASE)
_NOT_IN_RECIPES = {"attention.multilabel": "it follows data.multilabel"}


def _suggest(name: str, choices: Any) -> str:
    close = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _describe(tp: Any) -> str:
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        inner = [_describe(a) for a in args if a is not type(None)]
        return " or ".join(inner) + (" or null" if type(None) in args else "")
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0])}"
        return f"a list of {len(args)} {_describe(args[0])}"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _convert(value: Any, tp: Any, key: str) -> Any:
    origin, args = get_origin(tp), get_args(tp)
    wrong = RecipeError(
        f"recipe key '{key}' must be {_describe(tp)}, got {value!r} ({type(value).__name__})"
    )
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if origin in (Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            raise wrong
        options = [a for a in args if a is not type(None)]
        for option in options:
            try:
                return _convert(value, option, key)
            except RecipeError:
                continue
        raise wrong
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise wrong
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise wrong
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        # PyYAML reads 1e-4 (no dot) as a string: accept numeric strings for numbers.
        if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
            return float(value)
        raise wrong
    if tp is str:
        if isinstance(value, str):
            return value
        raise wrong
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise wrong
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise wrong
        return tuple(
            _convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True))
        )
    raise TypeError(f"unsupported recipe field type {tp!r} for '{key}'")  # a bug, not user input


def _build(cls: type, data: Any, prefix: str) -> Any:
    where = f"recipe section '{prefix}'" if prefix else "a recipe"
    if not isinstance(data, Mapping):
        raise RecipeError(f"{where} must be a mapping of keys to values, got {type(data).__name__}")
    hints = get_type_hints(cls)
    names = [f.name for f in fields(cls) if f.init]
    kwargs: dict[str, Any] = {}
    for raw_key, value in data.items():
        key = f"{prefix}.{raw_key}" if prefix else str(raw_key)
        if key in _NOT_IN_RECIPES:
            raise RecipeError(f"recipe key '{key}' cannot be set: {_NOT_IN_RECIPES[key]}")
        if raw_key not in names:
            hint = _suggest(raw_key, names) or f"; valid keys: {', '.join(names)}"
            raise RecipeError(f"unknown recipe key '{key}'{hint}")
        kwargs[raw_key] = _convert(value, hints[raw_key], key)
    required = [
        f.name
        for f in fields(cls)
        if f.init
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
        and f.name not in kwargs
    ]
    if required:
        key = f"{prefix}.{required[0]}" if prefix else required[0]
        raise RecipeError(f"recipe key '{key}' is required")
    try:
        return cls(**kwargs)
    except RecipeError:
        raise
    except (ValueError, TypeError) as err:  # AttentionLossConfig's own checks
        message = str(err)
        first = message.split(" ", 1)[0]
        if first in names and prefix:
            raise RecipeError(f"recipe key '{prefix}.{first}' {message.split(' ', 1)[1]}") from None
        raise RecipeError(f"{where}: {message}") from None
