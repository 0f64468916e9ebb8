"""Publish a finished training run: a Hub-ready folder, a measured model card, the upload.

``build_folder`` turns a run directory of the trainer (``model.safetensors`` + timm's
``config.json`` from ``save_for_hf``, ``metrics.json``, ``recipe.yaml``, ``attention_maps.png``)
into the content of a Hugging Face model repository, loadable with one
``timm.create_model('hf-hub:ORG/NAME', pretrained=True)`` (or ``local-dir:FOLDER``). Its
``README.md`` is the run's model card (``card.build_model_card``: the ``model-index`` carries
the measured metrics exactly as in ``metrics.json``). ``publish`` uploads (``create_repo`` +
``upload_folder``); it is the only networked call.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from huggingface_hub import HfApi, get_token

from .card import (
    BASELINE_PANEL,
    METRICS,
    TAGS,
    CardOptions,
    RunInfo,
    baseline_panel,
    build_model_card,
    read_run,
    supervised_layers,
)
from .errors import PublishError

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "BASELINE_PANEL",
    "METRICS",
    "TAGS",
    "CardOptions",
    "PublishError",
    "RunInfo",
    "build_folder",
    "build_model_card",
    "publish",
    "read_run",
]


def build_folder(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    repo_id: str | None = None,
    **card: Unpack[CardOptions],
) -> Path:
    """Write the repository content of a run into ``out_dir`` and return it.

    ``model.safetensors`` and timm's ``config.json`` (with the supervised layer pair and the
    attention settings under ``discatt``: timm's ``PretrainedCfg`` accepts no extra keys),
    ``README.md`` (the card: ``repo_id`` and ``card`` go to ``build_model_card``; without
    either a ``load_name`` or a ``repo_id`` the card loads from ``local-dir:OUT_DIR``),
    ``metrics.json`` and ``attention_maps.png`` when present, and the baseline run's
    ``attention_maps.png`` as ``BASELINE_PANEL`` when it has one. Nothing is written when the
    card cannot be built.
    """
    info = read_run(run_dir)
    out = Path(out_dir)
    if card.get("load_name") is None and repo_id is None:
        card["load_name"] = f"local-dir:{out}"
    model_card = build_model_card(run_dir, repo_id=repo_id, **card)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("model.safetensors", "metrics.json", "recipe.yaml", "attention_maps.png"):
        if (info.run_dir / name).is_file():
            shutil.copy2(info.run_dir / name, out / name)
    if panel := baseline_panel(card.get("baseline_dir")):
        shutil.copy2(panel, out / BASELINE_PANEL)
    config = dict(info.config)
    config["discatt"] = {
        "layers": supervised_layers(info),
        "attention": info.recipe.get("attention", {}),
    }
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    model_card.save(out / "README.md")
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
    overwrite: bool = False,
    **card: Unpack[CardOptions],
) -> str:
    """Build the repository content and upload it (``repo_id``) or keep it (``local_dir``).

    Returns the repository URL or the local folder. With ``repo_id`` and no token (argument,
    ``HF_TOKEN`` or a saved login) it raises ``PublishError`` before doing any work. A
    ``local_dir`` must be new or empty (its files are never replaced unless ``overwrite``).
    ``baseline_dir``, ``license`` and the study's ``seeds`` (with ``regime``, ``arm`` and
    ``baseline_arm``) go to the card (``build_model_card``), as does ``load_name``: what the
    card's usage passes to ``timm.create_model`` (default ``hf-hub:REPO_ID`` or
    ``local-dir:LOCAL_DIR``; a zoo entry's timm tag, e.g. ``cifar_resnet20.discatt_X``).
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
        return str(build_folder(run_dir, local_dir, **card))
    api = HfApi(token=token)
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_folder(run_dir, tmp, repo_id=repo_id, **card)
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
