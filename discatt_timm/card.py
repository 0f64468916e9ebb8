"""The model card of a finished training run: measured metadata and a markdown body.

``read_run`` reads a run directory of the trainer (``model.safetensors`` + timm's
``config.json`` from ``save_for_hf``, ``metrics.json``, ``recipe.yaml``, ``attention_maps.png``).
``build_model_card`` renders its card with ``huggingface_hub.ModelCard``/``ModelCardData`` from
``templates/model_card.md``: the ``model-index`` carries the run's measured metrics exactly as in
``metrics.json``; the body names the split and its size, puts a baseline run's metrics and
attention panel beside the model's and, given a study's results file, the spread over the
study's seeds (``spread``). ``hub`` builds the repository folder around it and uploads it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .errors import PublishError
from .layers import resolve_layers
from .spread import seed_spread

__all__ = [
    "BASELINE_PANEL",
    "METRICS",
    "TAGS",
    "CardOptions",
    "RunInfo",
    "baseline_panel",
    "build_model_card",
    "read_run",
    "supervised_layers",
]

TEMPLATE = Path(__file__).with_name("templates") / "model_card.md"
RUN_FILES = ("model.safetensors", "config.json", "metrics.json", "recipe.yaml")
TAGS = ["image-classification", "timm", "discriminative-attention"]
# metrics.json key -> (model-index metric type, readable name)
METRICS = {
    "top1": ("accuracy", "top-1 accuracy"),
    "top5": ("top_5_accuracy", "top-5 accuracy"),
    "mAP": ("map", "mAP"),
    "roc_auc": ("roc_auc", "ROC AUC"),
    "siou_inner": ("siou_inner", "attention sIoU, inner layer"),
    "siou_last": ("siou_last", "attention sIoU, last layer"),
    "consistency": ("attention_consistency", "attention consistency loss"),
    # data with boxes (discatt_timm.localisation): does the target's map find the object?
    "pointing_inner": ("pointing_game_inner", "pointing game, inner layer"),
    "pointing_last": ("pointing_game_last", "pointing game, last layer"),
    "energy_inner": ("box_energy_inner", "energy in the box, inner layer"),
    "energy_last": ("box_energy_last", "energy in the box, last layer"),
    "confusing_energy_last": (
        "confusing_box_energy_last",
        "confusing class's energy in the box, last layer",
    ),
}
METRIC_NAMES = {key: name for key, (_, name) in METRICS.items()}
BASELINE_PANEL = "baseline_attention_maps.png"  # the baseline run's panel in the folder
# recipe data.source -> Hub dataset id, for sources that are not Hub ids themselves
DATASET_IDS = {"fashion_mnist": "zalando-datasets/fashion_mnist"}


@dataclass(frozen=True)
class RunInfo:
    """What a finished run directory holds."""

    run_dir: Path
    metrics: dict[str, Any]
    recipe: dict[str, Any]
    recipe_text: str
    config: dict[str, Any]

    @property
    def architecture(self) -> str:
        return self.config["architecture"]

    @property
    def dataset(self) -> str | None:
        data = self.recipe.get("data", {})
        source = data.get("source", "hub")
        if source == "hub":
            return data.get("path")
        return DATASET_IDS.get(source)

    @property
    def supervised(self) -> bool:
        return self.recipe.get("attention", {}).get("method", "none") != "none"


def read_run(run_dir: str | Path) -> RunInfo:
    """Read a finished, evaluated run; anything missing is a ``PublishError`` naming the file."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise PublishError(f"run directory {run_dir} does not exist")
    missing = [name for name in RUN_FILES if not (run_dir / name).is_file()]
    if "metrics.json" in missing:
        raise PublishError(
            f"{run_dir} has no metrics.json: a run is published only after its evaluation "
            "(let `discatt train` finish)"
        )
    if missing:
        raise PublishError(f"{run_dir} is not a finished run: missing {', '.join(missing)}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    if not any(key in metrics for key in ("top1", "mAP")):
        raise PublishError(f"{run_dir}/metrics.json holds no evaluation metric (top1 or mAP)")
    recipe_text = (run_dir / "recipe.yaml").read_text()
    return RunInfo(
        run_dir=run_dir,
        metrics=metrics,
        recipe=yaml.safe_load(recipe_text) or {},
        recipe_text=recipe_text,
        config=json.loads((run_dir / "config.json").read_text()),
    )


def _eval_results(info: RunInfo, dataset_name: str) -> list[EvalResult]:
    split = info.metrics.get("split", "test")
    results = []
    for key, (metric_type, metric_name) in METRICS.items():
        value = info.metrics.get(key)
        if isinstance(value, int | float) and value == value:  # measured and not NaN
            results.append(
                EvalResult(
                    task_type="image-classification",
                    dataset_type=info.dataset or dataset_name,
                    dataset_name=dataset_name,
                    dataset_split=split,
                    metric_type=metric_type,
                    metric_name=metric_name,
                    metric_value=value,
                )
            )
    return results


def supervised_layers(info: RunInfo) -> dict[str, str]:
    """The run's supervised layer pair, ``{"inner": ..., "last": ...}`` (recipe or default)."""
    layers = info.recipe.get("model", {}).get("layers")
    if layers:
        return {"inner": layers[0], "last": layers[1]}
    import timm

    model = timm.create_model(
        info.architecture, pretrained=False, num_classes=info.config.get("num_classes", 10)
    )
    pair = resolve_layers(model)
    return {"inner": pair.inner, "last": pair.last}


def _base_model(info: RunInfo) -> str | None:
    model = info.recipe.get("model", {})
    if model.get("checkpoint"):
        return None  # a local file: nothing on the Hub to point at
    if model.get("pretrained"):
        tag = info.config.get("pretrained_cfg", {}).get("tag")
        return f"timm/{info.architecture}.{tag}" if tag else f"timm/{info.architecture}"
    return None


class CardOptions(TypedDict, total=False):
    """What a card says beyond its run: ``build_model_card``'s keyword arguments (documented
    there) that ``hub.build_folder`` and ``hub.publish`` pass on unchanged."""

    load_name: str | None
    baseline_dir: str | Path | None
    license: str | None
    seeds: str | Path | None
    regime: str | None
    arm: str | None
    baseline_arm: str


def build_model_card(
    run_dir: str | Path,
    *,
    repo_id: str | None = None,
    load_name: str | None = None,
    baseline_dir: str | Path | None = None,
    license: str | None = None,
    seeds: str | Path | None = None,
    regime: str | None = None,
    arm: str | None = None,
    baseline_arm: str = "baseline",
) -> ModelCard:
    """The model card of a run: YAML metadata (measured ``model-index``) and the markdown body.

    Args:
        run_dir: the finished run.
        repo_id: the Hub repository it goes to (names the model and the usage code).
        load_name: what users pass to ``timm.create_model`` (default ``hf-hub:REPO_ID``).
        baseline_dir: a finished cross-entropy-only run to compare with in the results table
            (and its ``attention_maps.png`` beside the model's, as ``BASELINE_PANEL``).
        license: the weights' licence (Hub id, e.g. ``mit``); default ``_license``.
        seeds: a study's JSON-lines results file (``spread.seed_spread``): the card gets a
            section with the spread over its seeds of ``arm`` against ``baseline_arm``.
        regime: the study regime of this model; ``arm``: its arm (both required with ``seeds``,
            refused without); ``baseline_arm``: the arm of its cross-entropy baseline.
    """
    info = read_run(run_dir)
    baseline = read_run(baseline_dir).metrics if baseline_dir is not None else None
    spread = seed_spread(seeds, regime=regime, arm=arm, baseline_arm=baseline_arm)
    model_name = repo_id.split("/")[-1] if repo_id else info.run_dir.name
    dataset_name = info.dataset or info.recipe.get("data", {}).get("source", "local data")
    base_model = _base_model(info)
    card_data = ModelCardData(
        library_name="timm",
        license=_license(info, license),
        tags=list(TAGS),
        datasets=[info.dataset] if info.dataset else None,
        base_model=base_model,
        model_name=model_name,
        pipeline_tag="image-classification",
        eval_results=_eval_results(info, dataset_name),
    )
    pretrained_cfg = info.config.get("pretrained_cfg", {})
    image = "attention_maps.png" if (info.run_dir / "attention_maps.png").is_file() else None
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        model_name=model_name,
        description=info.recipe.get("description")
        or f"{info.architecture} trained with discatt-timm.",
        architecture=info.architecture,
        num_classes=info.config.get("num_classes"),
        input_size="x".join(str(v) for v in pretrained_cfg.get("input_size", ())),
        dataset=dataset_name,
        split=info.metrics.get("split", "test"),
        num_samples=info.metrics.get("num_samples"),
        supervision=_supervision(info),
        layers=supervised_layers(info),
        base_model=base_model,
        load_name=load_name or (f"hf-hub:{repo_id}" if repo_id else f"local-dir:{info.run_dir}"),
        needs_import=_needs_import(info.architecture),
        results=_result_rows(info, baseline),
        baseline=baseline is not None,
        eval_method=info.metrics.get("attention_metrics_method") or "pixel",
        image=image,
        baseline_image=BASELINE_PANEL if baseline_panel(baseline_dir) else None,
        spread=spread,
        spread_rows=spread.card_rows(METRIC_NAMES) if spread else [],
        recipe=info.recipe_text.strip(),
    )


def _supervision(info: RunInfo) -> str:
    """The card's one line on the attention supervision of the run."""
    attention = info.recipe.get("attention", {})
    if not info.supervised:
        return "none (cross-entropy baseline)"
    return (
        f"`{attention.get('method')}` maps, `{attention.get('normalize', 'max')}` "
        "normalisation, weights (l_i, l_l, l_ac) = "
        f"{tuple(attention.get('weights', (1.0, 1.0, 1.0)))}, "
        f"`{attention.get('grad_mode', 'exact')}` gradients"
    )


def _result_rows(info: RunInfo, baseline: dict[str, Any] | None) -> list[dict[str, str]]:
    """A results-table row per measured metric: name, value, the baseline's value."""
    return [
        {
            "name": name,
            "value": _fmt(info.metrics[key]),
            "baseline": _fmt(baseline.get(key)) if baseline else "",
        }
        for key, (_, name) in METRICS.items()
        if key in info.metrics
    ]


def baseline_panel(baseline_dir: str | Path | None) -> Path | None:
    """The baseline run's ``attention_maps.png``, when there is a baseline and it has one."""
    if baseline_dir is None:
        return None
    panel = Path(baseline_dir) / "attention_maps.png"
    return panel if panel.is_file() else None


def _needs_import(architecture: str) -> bool:
    """True when the architecture is one this package registers (not timm-native)."""
    import timm

    return timm.models.model_entrypoint(architecture).__module__.startswith("discatt_timm")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


def _license(info: RunInfo, given: str | None) -> str:
    """The licence on the card: the one given; for weights fine-tuned from others, theirs
    (timm's ``pretrained_cfg['license']``) or ``other`` when unknown, never this package's;
    for weights trained from scratch by its recipes, the package's ``apache-2.0``."""
    if given:
        return given
    model = info.recipe.get("model", {})
    if model.get("pretrained") or model.get("checkpoint"):
        return info.config.get("pretrained_cfg", {}).get("license") or "other"
    return "apache-2.0"
