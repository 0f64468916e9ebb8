"""Recipes: YAML files that fill a ``TrainConfig``, plus ``--set key=value`` overrides.

A recipe is one run (``recipes/<data>_<model>_<variant>.yaml``); a baseline and its
attention-supervised runs differ only in their ``attention`` section. Values given on the
command line are read with ``yaml.safe_load``, so ``--set optim.lr=0.05``,
``--set model.layers=[layer3,layer4]`` and ``--set data.max_train_samples=null`` all work.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from .train_config import RecipeError, TrainConfig

__all__ = [
    "apply_overrides",
    "dump_recipe",
    "find_recipe",
    "list_recipes",
    "load_recipe",
    "parse_override",
    "read_recipe",
    "recipe_diff",
]

RECIPE_DIR = Path("recipes")


def parse_override(text: str) -> tuple[str, Any]:
    """``'optim.lr=0.05'`` -> ``('optim.lr', 0.05)``; the value is read as YAML."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise RecipeError(
            f"override {text!r} must look like section.key=value (e.g. optim.lr=0.05)"
        )
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise RecipeError(f"override {text!r}: the value is not valid YAML ({err})") from None
    return key, value


def apply_overrides(
    data: Mapping[str, Any], overrides: Iterable[str | tuple[str, Any]]
) -> dict[str, Any]:
    """A copy of the recipe dict with dotted-key overrides set (sections created as needed)."""
    out = copy.deepcopy(dict(data))
    for item in overrides:
        key, value = parse_override(item) if isinstance(item, str) else item
        node = out
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(parts[: depth + 1])
                raise RecipeError(f"override '{key}': recipe key '{where}' is not a section")
            node = child
        node[parts[-1]] = value
    return out


def find_recipe(name_or_path: str | Path) -> Path:
    """A recipe file: an existing path, or a name looked up as ``recipes/<name>.yaml``."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    candidate = RECIPE_DIR / f"{path.name}.yaml" if path.suffix == "" else RECIPE_DIR / path.name
    if candidate.is_file():
        return candidate
    known = ", ".join(p.stem for p in list_recipes()) or f"none found in {RECIPE_DIR}/"
    raise RecipeError(f"recipe {str(name_or_path)!r} not found; available recipes: {known}")


def list_recipes(directory: str | Path = RECIPE_DIR) -> list[Path]:
    """The ``*.yaml`` recipes of ``directory``, sorted by name."""
    return sorted(Path(directory).glob("*.yaml"))


def read_recipe(path: str | Path) -> dict[str, Any]:
    """The raw mapping of a recipe file (no validation)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise RecipeError(f"recipe {path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise RecipeError(f"recipe {path} must be a mapping of sections, got {type(data).__name__}")
    return data


def load_recipe(
    name_or_path: str | Path, overrides: Iterable[str | tuple[str, Any]] = ()
) -> TrainConfig:
    """Read, override and validate a recipe. Raises ``RecipeError`` naming the bad key."""
    path = find_recipe(name_or_path)
    return TrainConfig.from_dict(apply_overrides(read_recipe(path), overrides))


def dump_recipe(cfg: TrainConfig, path: str | Path | None = None) -> str:
    """The YAML text of a (resolved) config; written to ``path`` when given."""
    text = yaml.safe_dump(cfg.to_dict(), sort_keys=False)
    if path is not None:
        Path(path).write_text(text)
    return text


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def recipe_diff(a: TrainConfig, b: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """Dotted keys whose resolved values differ: ``{key: (value in a, value in b)}``."""
    flat_a, flat_b = _flatten(a.to_dict()), _flatten(b.to_dict())
    return {
        key: (flat_a.get(key), flat_b.get(key))
        for key in sorted(flat_a.keys() | flat_b.keys())
        if flat_a.get(key) != flat_b.get(key)
    }
