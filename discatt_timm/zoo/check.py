"""``discatt hub check``: every zoo entry is publishable and its metrics reproduce.

For each manifest entry: a well-formed name of a registered architecture, its recipe, a real
weight source, a card whose ``model-index`` equals ``metrics.json`` and, where the recipe's
data is present, the shipped weights re-measured to the recorded top-1 (or mAP): bitwise on
the CPU kind that recorded it, within ``REPRODUCE_TOL`` on another (see ``compare_metric``).
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
from ..recipes import load_recipe, recipe_diff
from .manifest import MANIFEST, NAME_PATTERN, Variant, load_manifest

__all__ = ["REPRODUCE_TOL", "Finding", "attention_only_diff", "check_zoo", "compare_metric"]

# Keys that say where and under which name a run was made, not what it trained.
PLACE_KEYS = frozenset({"name", "description", "output_dir", "accelerate.cpu"})

# How far a re-measured metric may be from the recorded one. On the CPU kind that recorded it
# the two are bitwise equal. Another CPU kind's fp32 kernels move logits in the 7th digit: top-1
# stays put (one test image is 1e-4 of 10,000), while near-tied scores swap ranks and move mAP
# (7e-8 measured on an AMD EPYC for an entry recorded on another machine). 1e-6 admits those
# swaps and refuses any changed prediction.
REPRODUCE_TOL = 1e-6


def compare_metric(measured: float, recorded: float) -> tuple[bool, str]:
    """Whether a re-measured metric reproduces the recorded one, and the line that says how:
    bitwise, or within ``REPRODUCE_TOL`` (then not bitwise, with the difference)."""
    detail = f"measured {measured:.6f}, recorded {recorded:.6f}"
    if measured == recorded:
        return True, f"{detail}: bitwise equal"
    diff = measured - recorded
    ok = abs(diff) <= REPRODUCE_TOL
    why = ", within 1e-6, not bitwise: this CPU's fp32 kernels differ from the recording one's"
    return ok, f"{detail}; difference {diff:+.1e}{why if ok else ''}"


@dataclass(frozen=True)
class Finding:
    """One result of ``check_zoo``: ``ok`` False means the manifest entry is not publishable."""

    variant: str
    check: str
    ok: bool
    detail: str = ""


def _remeasure(variant: Variant, recipe_file: Path, key: str) -> tuple[float | None, str]:
    """``key`` (``top1``, or ``mAP`` for multi-label data) of the shipped weights on the
    recipe's evaluation data, or None if that data is absent here."""
    cfg = load_recipe(recipe_file)
    model = load_model(variant.name)  # through its timm tag, as a user loads it
    try:
        bundle = eval_data(cfg.data, model, seed=cfg.seed)
    except DataError as error:
        return None, f"data not present here ({error}); {key} not re-measured"
    _, eval_loader = build_loaders(bundle, cfg.data)
    metrics = evaluate(model, eval_loader, attention=False, topk=(1,), multilabel=bundle.multilabel)
    return metrics[key], ""


def attention_only_diff(recipe: Path, baseline: Path) -> list[str]:
    """The keys outside ``attention`` (and ``PLACE_KEYS``) whose values differ between an
    entry's recipe and its baseline's: empty when they are the same run but for the attention
    section."""
    differ = recipe_diff(load_recipe(recipe), load_recipe(baseline))
    return sorted(k for k in differ if not k.startswith("attention.") and k not in PLACE_KEYS)


def _baseline_recipe(variant: Variant, variants: dict[str, Variant], root: Path) -> Path | None:
    if variant.baseline in variants:
        return root / variants[variant.baseline].recipe
    return root / variant.baseline_recipe if variant.baseline_recipe else None


def check_zoo(
    manifest: str | Path | None = None, *, repo_root: str | Path = ".", remeasure: bool = True
) -> list[Finding]:
    """Check every manifest entry: name, recipe, card, measured metrics, a real weight source.

    Shipped weights must load through their timm tag and, where the recipe's data is present,
    reproduce the recorded top-1 (``compare_metric``); the card's ``model-index`` must equal
    ``metrics.json``.
    """
    root = Path(repo_root)
    findings: list[Finding] = []
    entries = load_manifest(manifest or MANIFEST)
    by_name = {v.name: v for v in entries}
    for variant in entries:

        def add(check: str, ok: bool, detail: str = "", name: str = variant.name) -> None:
            """``detail`` says what is wrong; it is kept for failures and measurements only."""
            keep = not ok or check.endswith(" reproduced")
            findings.append(Finding(name, check, ok, detail if keep else ""))

        add(
            "name",
            bool(NAME_PATTERN.match(variant.name)) and timm.is_model(variant.architecture),
            "must be ARCH.discatt_DATASET or ARCH.ce_DATASET with a registered timm architecture",
        )
        recipe = root / variant.recipe
        add("recipe", recipe.is_file(), f"{recipe} missing")
        if variant.baseline is not None:
            add("baseline entry", variant.baseline in by_name, f"{variant.baseline} not listed")
        baseline = _baseline_recipe(variant, by_name, root)
        if baseline is not None and recipe.is_file() and baseline.is_file():
            extra = attention_only_diff(recipe, baseline)
            add("differs only in attention", not extra, f"also differs in {', '.join(extra)}")
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
        key = "mAP" if "mAP" in metrics else "top1"
        if shipped and remeasure and recipe.is_file() and key in metrics:
            value, note = _remeasure(variant, recipe, key)
            check = f"{'mAP' if key == 'mAP' else 'top-1'} reproduced"
            if value is None:
                add(check, True, note)
            else:
                add(check, *compare_metric(value, metrics[key]))
    return findings
