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
(``recipe key 'optim.lr' must be > 0, got -1``). Reading a recipe (unknown keys, wrong types,
YAML) is ``discatt_timm.recipes``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field

from ..errors import did_you_mean
from ._checks import check, positive_int
from .attention import LOW_PRECISION_REASON, AttentionLossConfig, pixel_maps_unsafe_in_low_precision
from .data import DataConfig

__all__ = [
    "AccelerateConfig",
    "CheckpointConfig",
    "EvalConfig",
    "ModelConfig",
    "OptimConfig",
    "ScheduleConfig",
    "TrainConfig",
]

SCHEDULES = ("cosine", "step", "multistep", "poly", "tanh", "none")
MIXED_PRECISION = ("no", "fp16", "bf16")
TRACKERS = ("json", "tensorboard", "wandb", "mlflow", "comet_ml", "aim", "clearml", "dvclive")
NO_ATTENTION = "none"


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
        check(bool(self.name), "model.name", "must be a non-empty timm model name")
        if not self.name.startswith(("hf-hub:", "local-dir:")):
            import timm  # the package import has registered the cifar_resnet* models

            check(
                timm.is_model(self.name),
                "model.name",
                f"must be a timm model, got {self.name!r}"
                f"{did_you_mean(self.name.split('.')[0], timm.list_models())}",
            )
        check(
            not (self.pretrained and self.checkpoint),
            "model.checkpoint",
            "and model.pretrained=true are exclusive: the checkpoint is the starting weights",
        )
        positive_int(self.num_classes, "model.num_classes", allow_none=True)
        positive_int(self.in_chans, "model.in_chans")
        check(
            0.0 <= self.drop_rate < 1.0,
            "model.drop_rate",
            f"must lie in [0, 1), got {self.drop_rate}",
        )
        if self.layers is not None:
            check(all(self.layers), "model.layers", f"must be two module names, got {self.layers}")


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
        check(
            self.name in names,
            "optim.name",
            f"must be a timm optimizer, got {self.name!r}{did_you_mean(self.name, names)}",
        )
        check(math.isfinite(self.lr) and self.lr > 0, "optim.lr", f"must be > 0, got {self.lr}")
        check(0 <= self.momentum < 1, "optim.momentum", f"must lie in [0, 1), got {self.momentum}")
        check(
            self.weight_decay >= 0, "optim.weight_decay", f"must be >= 0, got {self.weight_decay}"
        )
        check(
            0 < self.backbone_lr_scale <= 1,
            "optim.backbone_lr_scale",
            f"must lie in (0, 1], got {self.backbone_lr_scale}",
        )
        if self.clip_grad is not None:
            check(self.clip_grad > 0, "optim.clip_grad", f"must be > 0, got {self.clip_grad}")


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
        positive_int(self.epochs, "schedule.epochs")
        check(
            self.sched in SCHEDULES,
            "schedule.sched",
            f"must be one of {', '.join(SCHEDULES)}, got {self.sched!r}",
        )
        check(
            self.sched != "multistep" or len(self.milestones) > 0,
            "schedule.milestones",
            "must list at least one epoch for sched 'multistep'",
        )
        check(
            list(self.milestones) == sorted(set(self.milestones))
            and all(m > 0 for m in self.milestones),
            "schedule.milestones",
            f"must be increasing positive epochs, got {list(self.milestones)}",
        )
        check(
            self.decay_epochs > 0, "schedule.decay_epochs", f"must be > 0, got {self.decay_epochs}"
        )
        check(
            0 < self.decay_rate <= 1,
            "schedule.decay_rate",
            f"must lie in (0, 1], got {self.decay_rate}",
        )
        check(self.min_lr >= 0, "schedule.min_lr", f"must be >= 0, got {self.min_lr}")
        check(
            0 <= self.warmup_epochs < self.epochs,
            "schedule.warmup_epochs",
            f"must lie in [0, epochs={self.epochs}), got {self.warmup_epochs}",
        )
        check(self.warmup_lr >= 0, "schedule.warmup_lr", f"must be >= 0, got {self.warmup_lr}")
        positive_int(self.max_steps, "schedule.max_steps", allow_none=True)


@dataclass(frozen=True)
class AccelerateConfig:
    """Accelerate settings: the one code path for CPU, one GPU, many GPUs and many machines.

    Attributes:
        mixed_precision: ``no``, ``fp16`` (GPU only; class gradients scaled into fp16's
            range) or ``bf16``. Maps and losses run in fp32 either way; pixel maps with
            ``normalize: max``/``sum`` are refused under both (``attention/precision.py``).
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
        check(
            self.mixed_precision in MIXED_PRECISION,
            "accelerate.mixed_precision",
            f"must be one of {', '.join(MIXED_PRECISION)}, got {self.mixed_precision!r}",
        )
        positive_int(self.gradient_accumulation_steps, "accelerate.gradient_accumulation_steps")
        for name in self.log_with:
            check(
                name in TRACKERS,
                "accelerate.log_with",
                f"entries must be among {', '.join(TRACKERS)}, got {name!r}"
                f"{did_you_mean(name, TRACKERS)}",
            )
        positive_int(self.log_every_n_steps, "accelerate.log_every_n_steps")


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
        positive_int(self.every_n_steps, "checkpoint.every_n_steps", allow_none=True)
        positive_int(self.keep_last, "checkpoint.keep_last")


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
        from ..attention import list_attentions  # lazy: the registry fills on package import

        positive_int(self.every_n_epochs, "eval.every_n_epochs")
        check(
            len(self.topk) > 0 and all(k > 0 for k in self.topk),
            "eval.topk",
            f"must list positive integers, got {list(self.topk)}",
        )
        check(
            self.attention_method in list_attentions(),
            "eval.attention_method",
            f"must be one of {', '.join(list_attentions())}, got {self.attention_method!r}",
        )
        positive_int(self.attention_max_samples, "eval.attention_max_samples", allow_none=True)
        check(self.num_images >= 0, "eval.num_images", f"must be >= 0, got {self.num_images}")


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Build from a recipe with ``discatt_timm.recipes.load_recipe``.

    Attributes:
        name: run name; the run directory is ``output_dir/name``.
        model, data, optim, schedule, attention, accelerate, checkpoint, eval: the sections.
        description: free text (e.g. where the starting weights come from).
        seed: seed of ``accelerate.utils.set_seed``, the data order and the augmentations.
        deterministic: also ask torch for deterministic algorithms (a warning, not an error,
            for ops that have none, e.g. adaptive average pooling's backward on CUDA).
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
        from ..attention import list_attentions

        check(
            bool(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", self.name)),
            "name",
            f"must be a plain run name (letters, digits, '.', '_', '-'), got {self.name!r}",
        )
        methods = [NO_ATTENTION, *list_attentions()]
        check(
            self.attention.method in methods,
            "attention.method",
            f"must be one of {', '.join(methods)}, got {self.attention.method!r}",
        )
        if self.attention.multilabel != self.data.multilabel:
            attention = dataclasses.replace(self.attention, multilabel=self.data.multilabel)
            object.__setattr__(self, "attention", attention)
        check(
            not (self.supervised and self.accelerate.static_graph),
            "accelerate.static_graph",
            f"must be false with attention.method {self.attention.method!r}: DDP static_graph "
            "silently stops the gradient all-reduce when the first backward of an iteration is "
            "the attention autograd.grad",
        )
        check(
            self.accelerate.mixed_precision == "no"
            or not pixel_maps_unsafe_in_low_precision(
                self.attention.method, self.attention.normalize
            ),
            "attention.normalize",
            f"must be softmax with method pixel under mixed_precision "
            f"{self.accelerate.mixed_precision!r}, got {self.attention.normalize!r}: "
            f'{LOW_PRECISION_REASON} (or use method channel, or mixed_precision "no")',
        )
        for key, values in (("data.mean", self.data.mean), ("data.std", self.data.std)):
            check(
                values is None or len(values) == self.model.in_chans,
                key,
                f"must have model.in_chans={self.model.in_chans} values, got {values}",
            )
        check(self.seed >= 0, "seed", f"must be >= 0, got {self.seed}")

    @property
    def supervised(self) -> bool:
        """True when the attention losses are on (``attention.method`` is not ``none``)."""
        return self.attention.method != NO_ATTENTION
