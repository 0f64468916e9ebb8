"""The zoo manifest: the variants this project trained, registered as timm tags.

``manifest.yaml`` (also reachable as ``hub/manifest.yaml`` in the repository) lists each
attention-supervised variant ``ARCH.discatt_DATASET`` and its cross-entropy baseline
``ARCH.ce_DATASET`` (the same recipe but for the attention section), each with at least one
real weight source: a folder shipped here (timm's ``save_for_hf`` layout: ``model.safetensors``
+ ``config.json``, plus the model card and the run's ``metrics.json``) and/or a Hugging Face Hub
repository it was uploaded to. Importing ``discatt_timm`` registers every entry, so
``timm.create_model('cifar_resnet20.discatt_fashion_mnist_demo', pretrained=True)`` loads the
shipped weights offline (or downloads them from the Hub where only a Hub id is known), and
``discatt hub list`` shows them with their metrics.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from .._timm_compat import add_pretrained_tag

__all__ = ["MANIFEST", "Variant", "load_manifest", "register_variants"]

MANIFEST = Path(__file__).with_name("manifest.yaml")
# ARCH.discatt_DATASET: attention-supervised; ARCH.ce_DATASET: its cross-entropy baseline.
NAME_PATTERN = re.compile(r"^(?P<arch>[a-z0-9_]+)\.(?P<kind>discatt|ce)_(?P<dataset>[a-z0-9_]+)$")


@dataclass(frozen=True)
class Variant:
    """One manifest entry."""

    name: str  # ARCH.discatt_DATASET
    recipe: str  # repository-relative recipe that trained it
    dataset: str  # Hub dataset id (or a local name) it was trained and evaluated on
    folder: str | None = None  # shipped folder name inside discatt_timm/zoo/
    hf_hub_id: str | None = None  # ORG/NAME once really uploaded
    baseline_recipe: str | None = None  # the cross-entropy-only run it is compared to
    baseline: str | None = None  # the baseline's own entry (ARCH.ce_DATASET), when shipped
    # timm pretrained_cfg fields (num_classes, input_size, mean, std, label_names, ...) for a
    # Hub-only entry; a shipped folder's config.json provides them otherwise.
    pretrained_cfg: dict | None = None

    @property
    def architecture(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def tag(self) -> str:
        return self.name.split(".", 1)[1]

    @property
    def path(self) -> Path | None:
        return MANIFEST.parent / self.folder if self.folder else None


def load_manifest(path: str | Path = MANIFEST) -> list[Variant]:
    """Read the manifest; unknown keys and malformed names are one-line errors."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict) or not isinstance(data.get("variants") or [], list):
        raise ValueError(
            f"{path}: a manifest is a mapping with a 'variants' list, got {type(data).__name__}"
        )
    fields = set(Variant.__dataclass_fields__)
    variants = []
    for entry in data.get("variants") or []:
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: each variant is a mapping of keys, got {entry!r}")
        unknown = set(entry) - fields
        if unknown:
            raise ValueError(
                f"{path}: variant {entry.get('name')!r} has unknown keys {sorted(unknown)}; "
                f"accepted: {sorted(fields)}"
            )
        variants.append(Variant(**entry))
    return variants


def _pretrained_cfg(variant: Variant) -> dict:
    cfg: dict = {}
    if variant.path is not None and (variant.path / "config.json").is_file():
        config = json.loads((variant.path / "config.json").read_text())
        cfg.update(config.get("pretrained_cfg", {}))
        for key in ("num_classes", "label_names", "label_descriptions"):
            if key in config:
                cfg[key] = config[key]
        weights = variant.path / "model.safetensors"
        if weights.is_file():
            cfg["file"] = str(weights)
    cfg.update(variant.pretrained_cfg or {})
    if variant.hf_hub_id:
        cfg["hf_hub_id"] = variant.hf_hub_id
    for key in ("input_size", "test_input_size", "mean", "std", "pool_size", "label_names"):
        if isinstance(cfg.get(key), list):
            cfg[key] = tuple(cfg[key])
    return cfg


def register_variants(variants: list[Variant] | None = None) -> list[str]:
    """Add every manifest variant as a timm pretrained tag; returns the registered names."""
    names = []
    for variant in load_manifest() if variants is None else variants:
        cfg = _pretrained_cfg(variant)
        names.append(add_pretrained_tag(variant.architecture, variant.tag, cfg))
    return names
