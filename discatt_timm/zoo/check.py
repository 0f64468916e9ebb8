"""``discatt hub check``: every zoo entry is publishable and its metrics reproduce.

For each manifest entry: a well-formed name of a registered architecture, its recipe, a real
weight source, a card whose ``model-index`` equals ``metrics.json`` and, where the recipe's
data is present, the shipped weights re-measured to the recorded top-1.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import timm
from huggingface_hub import ModelCard

from ..data import build_loaders, eval_data
from ..errors import DataError
from ..evaluation import evaluate
from ..hub import METRICS
from ..loading import load_model
from ..recipes import load_recipe
from .manifest import MANIFEST, NAME_PATTERN, Variant, load_manifest

__all__ = ["Finding", "check_zoo"]


@dataclass(frozen=True)
class Finding:
    """One result of ``check_zoo``: ``ok`` False means the manifest entry is not publishable."""

    variant: str
    check: str
    ok: bool
    detail: str = ""


def _remeasure_top1(variant: Variant, recipe_file: Path) -> tuple[float | None, str]:
    """Top-1 of the shipped weights on the recipe's evaluation data, or None if it is absent."""
    cfg = load_recipe(recipe_file)
    model = load_model(variant.name)  # through its timm tag, as a user loads it
    try:
        bundle = eval_data(cfg.data, model, seed=cfg.seed)
    except DataError as error:
        return None, f"data not present here ({error}); top-1 not re-measured"
    _, eval_loader = build_loaders(bundle, cfg.data)
    metrics = evaluate(model, eval_loader, attention=False, topk=(1,))
    return metrics["top1"], ""


def check_zoo(
    manifest: str | Path | None = None, *, repo_root: str | Path = ".", remeasure: bool = True
) -> list[Finding]:
    """Check every manifest entry: name, recipe, card, measured metrics, a real weight source.

    Shipped weights must load through their timm tag and, where the recipe's data is present,
    reproduce the recorded top-1; the card's ``model-index`` must equal ``metrics.json``.
    """
    root = Path(repo_root)
    findings: list[Finding] = []
    for variant in load_manifest(manifest or MANIFEST):

        def add(check: str, ok: bool, detail: str = "", name: str = variant.name) -> None:
            """``detail`` says what is wrong; it is kept for failures and measurements only."""
            keep = not ok or check == "top-1 reproduced"
            findings.append(Finding(name, check, ok, detail if keep else ""))

        add(
            "name",
            bool(NAME_PATTERN.match(variant.name)) and timm.is_model(variant.architecture),
            "must be ARCH.discatt_DATASET with a registered timm architecture",
        )
        recipe = root / variant.recipe
        add("recipe", recipe.is_file(), f"{recipe} missing")
        folder = variant.path
        shipped = folder is not None and (folder / "model.safetensors").is_file()
        add(
            "weights",
            shipped or bool(variant.hf_hub_id),
            "needs a shipped model.safetensors or the Hub id it was uploaded to",
        )
        if folder is None:
            continue  # a Hub-only entry: its card and metrics live on the Hub
        card_file, metrics_file = folder / "README.md", folder / "metrics.json"
        add("card", card_file.is_file(), f"{card_file} missing")
        add("metrics", metrics_file.is_file(), f"{metrics_file} missing")
        if not (card_file.is_file() and metrics_file.is_file()):
            continue
        metrics = json.loads(metrics_file.read_text())
        recorded = {
            r.metric_type: r.metric_value for r in ModelCard.load(card_file).data.eval_results
        }
        expected = {METRICS[k][0]: v for k, v in metrics.items() if k in METRICS}
        same = all(recorded.get(k) == v for k, v in expected.items() if v == v)
        add("card metrics", same and bool(expected), "card model-index differs from metrics.json")
        if shipped and remeasure and recipe.is_file() and "top1" in metrics:
            top1, note = _remeasure_top1(variant, recipe)
            if top1 is None:
                add("top-1 reproduced", True, note)
            else:
                add(
                    "top-1 reproduced",
                    abs(top1 - metrics["top1"]) <= 1e-6,
                    f"measured {top1:.6f}, recorded {metrics['top1']:.6f}",
                )
    return findings
