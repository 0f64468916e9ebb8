"""Publish a finished training run: a Hub-ready folder, a measured model card, the upload.

``build_folder`` turns a run directory of the trainer (``model.safetensors`` + timm's
``config.json`` from ``save_for_hf``, ``metrics.json``, ``recipe.yaml``, ``attention_maps.png``)
into the content of a Hugging Face model repository, loadable with one
``timm.create_model('hf-hub:ORG/NAME', pretrained=True)`` (or ``local-dir:FOLDER``).
``build_model_card`` renders the card with ``huggingface_hub.ModelCard``/``ModelCardData``: the
``model-index`` carries the run's measured metrics exactly as in ``metrics.json``. ``publish``
uploads (``create_repo`` + ``upload_folder``); it is the only networked call.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData, get_token

from .errors import PublishError
from .layers import resolve_layers

__all__ = [
    "METRICS",
    "PublishError",
    "RunInfo",
    "build_folder",
    "build_model_card",
    "publish",
    "read_run",
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


def _layers(info: RunInfo) -> dict[str, str]:
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


def build_model_card(
    run_dir: str | Path,
    *,
    repo_id: str | None = None,
    load_name: str | None = None,
    baseline_dir: str | Path | None = None,
    license: str | None = None,
) -> ModelCard:
    """The model card of a run: YAML metadata (measured ``model-index``) and the markdown body.

    Args:
        run_dir: the finished run.
        repo_id: the Hub repository it goes to (names the model and the usage code).
        load_name: what users pass to ``timm.create_model`` (default ``hf-hub:REPO_ID``).
        baseline_dir: a finished cross-entropy-only run to compare with in the results table.
        license: the weights' licence (Hub id, e.g. ``mit``); default ``_license``.
    """
    info = read_run(run_dir)
    baseline = read_run(baseline_dir).metrics if baseline_dir is not None else None
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
    attention = info.recipe.get("attention", {})
    if info.supervised:
        supervision = (
            f"`{attention.get('method')}` maps, `{attention.get('normalize', 'max')}` "
            "normalisation, weights (l_i, l_l, l_ac) = "
            f"{tuple(attention.get('weights', (1.0, 1.0, 1.0)))}, "
            f"`{attention.get('grad_mode', 'exact')}` gradients"
        )
    else:
        supervision = "none (cross-entropy baseline)"
    rows = []
    for key, (_, name) in METRICS.items():
        if key in info.metrics:
            rows.append(
                {
                    "name": name,
                    "value": _fmt(info.metrics[key]),
                    "baseline": _fmt(baseline.get(key)) if baseline else "",
                }
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
        supervision=supervision,
        layers=_layers(info),
        base_model=base_model,
        load_name=load_name or (f"hf-hub:{repo_id}" if repo_id else f"local-dir:{info.run_dir}"),
        needs_import=_needs_import(info.architecture),
        results=rows,
        baseline=baseline is not None,
        eval_method=info.metrics.get("attention_metrics_method") or "pixel",
        image=image,
        recipe=info.recipe_text.strip(),
    )


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


def build_folder(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    repo_id: str | None = None,
    load_name: str | None = None,
    baseline_dir: str | Path | None = None,
    license: str | None = None,
) -> Path:
    """Write the repository content of a run into ``out_dir`` and return it.

    ``model.safetensors`` and timm's ``config.json`` (with the supervised layer pair and the
    attention settings under ``discatt``: timm's ``PretrainedCfg`` accepts no extra keys),
    ``README.md`` (the card), ``metrics.json`` and ``attention_maps.png`` when present.
    """
    info = read_run(run_dir)
    out = Path(out_dir)
    if load_name is None and repo_id is None:
        load_name = f"local-dir:{out}"
    card = build_model_card(
        run_dir, repo_id=repo_id, load_name=load_name, baseline_dir=baseline_dir, license=license
    )
    out.mkdir(parents=True, exist_ok=True)
    for name in ("model.safetensors", "metrics.json", "recipe.yaml", "attention_maps.png"):
        if (info.run_dir / name).is_file():
            shutil.copy2(info.run_dir / name, out / name)
    config = dict(info.config)
    config["discatt"] = {"layers": _layers(info), "attention": info.recipe.get("attention", {})}
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    card.save(out / "README.md")
    return out


def _check_local_dir(folder: Path, run_dir: Path, overwrite: bool) -> None:
    """A folder ``build_folder`` may write: not a file, not the run, new or empty."""
    if folder.exists() and not folder.is_dir():
        raise PublishError(f"--local-dir {folder} is a file; give a new or empty folder")
    if folder.resolve() == run_dir.resolve():
        raise PublishError(f"--local-dir {folder} is the run directory itself; give another")
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise PublishError(
            f"--local-dir {folder} is not empty; give a new or empty folder (or pass "
            "--overwrite to replace the files it shares with the published folder)"
        )


def publish(
    run_dir: str | Path,
    *,
    repo_id: str | None = None,
    local_dir: str | Path | None = None,
    private: bool = False,
    revision: str | None = None,
    token: str | None = None,
    baseline_dir: str | Path | None = None,
    overwrite: bool = False,
    license: str | None = None,
) -> str:
    """Build the repository content and upload it (``repo_id``) or keep it (``local_dir``).

    Returns the repository URL or the local folder. With ``repo_id`` and no token (argument,
    ``HF_TOKEN`` or a saved login) it raises ``PublishError`` before doing any work. A
    ``local_dir`` must be new or empty (its files are never replaced unless ``overwrite``).
    """
    if (repo_id is None) == (local_dir is None):
        raise PublishError("give exactly one of repo_id (upload) or local_dir (folder only)")
    if repo_id is not None:
        token = token or get_token()
        if not token:
            raise PublishError(
                "no Hugging Face token: run `hf auth login` or set HF_TOKEN, "
                "or use --local-dir to build the folder without uploading"
            )
        if repo_id.count("/") != 1:
            raise PublishError(f"repo id must look like ORG/NAME, got {repo_id!r}")
    read_run(run_dir)  # fail on an unfinished run before any network call
    if local_dir is not None:
        _check_local_dir(Path(local_dir), Path(run_dir), overwrite)
        return str(build_folder(run_dir, local_dir, baseline_dir=baseline_dir, license=license))
    api = HfApi(token=token)
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_folder(
            run_dir, tmp, repo_id=repo_id, baseline_dir=baseline_dir, license=license
        )
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        if revision:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        api.upload_folder(
            repo_id=repo_id,
            folder_path=str(folder),
            revision=revision,
            commit_message=f"discatt-timm: publish {Path(run_dir).name}",
        )
    return str(url)
