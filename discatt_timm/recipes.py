"""Recipes: YAML files that fill a ``TrainConfig``, plus ``--set key=value`` overrides.

A recipe is one run (``recipes/<data>_<model>_<variant>.yaml``); a baseline and its
attention-supervised runs differ only in their ``attention`` section. Values given on the
command line are read with ``yaml.safe_load``, so ``--set optim.lr=0.05``,
``--set model.layers=[layer3,layer4]`` and ``--set data.max_train_samples=null`` all work.
``config_from_dict`` turns a parsed recipe into the dataclasses (unknown keys get a
close-match suggestion, wrong types name the expected one) and ``config_to_dict`` back.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import types
from collections.abc import Iterable, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml

from .config import TrainConfig
from .errors import RecipeError, did_you_mean

__all__ = [
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
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
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise RecipeError(
            f"recipe {path} is not UTF-8 text (byte {err.start}); save it as UTF-8"
        ) from None
    except yaml.YAMLError as err:
        raise RecipeError(
            f"recipe {path} is not valid YAML: {' '.join(str(err).split())}"
        ) from None
    if not isinstance(data, dict):
        raise RecipeError(f"recipe {path} must be a mapping of sections, got {type(data).__name__}")
    return data


def load_recipe(
    name_or_path: str | Path, overrides: Iterable[str | tuple[str, Any]] = ()
) -> TrainConfig:
    """Read, override and validate a recipe. Raises ``RecipeError`` naming the bad key."""
    path = find_recipe(name_or_path)
    return config_from_dict(apply_overrides(read_recipe(path), overrides))


def dump_recipe(cfg: TrainConfig, path: str | Path | None = None) -> str:
    """The YAML text of a (resolved) config; written to ``path`` when given."""
    text = yaml.safe_dump(config_to_dict(cfg), sort_keys=False)
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
    flat_a, flat_b = _flatten(config_to_dict(a)), _flatten(config_to_dict(b))
    return {
        key: (flat_a.get(key), flat_b.get(key))
        for key in sorted(flat_a.keys() | flat_b.keys())
        if flat_a.get(key) != flat_b.get(key)
    }


def config_from_dict(data: Mapping[str, Any]) -> TrainConfig:
    """A ``TrainConfig`` from a parsed recipe; unknown keys, wrong types and bad values raise
    ``RecipeError`` naming the key."""
    return _build(TrainConfig, data, "")


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """Plain nested dict (lists, not tuples) that ``config_from_dict`` and YAML round-trip."""
    out = _plain(dataclasses.asdict(cfg))
    out["attention"].pop("multilabel")  # follows data.multilabel
    return out


# --- dict <-> dataclass --------------------------------------------------------------------

_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|nan)", re.IGNORECASE)
_NOT_IN_RECIPES = {"attention.multilabel": "it follows data.multilabel"}


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
    if tp in (bool, str):
        if isinstance(value, tp):
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
            hint = did_you_mean(raw_key, names) or f"; valid keys: {', '.join(names)}"
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
