"""Layer registry: which two feature maps of a backbone carry the attention supervision.

Every supervised model needs two module names (as in ``model.named_modules()``):

* ``inner``: the output of the last block of the penultimate stage (stride 16 for an ImageNet CNN);
* ``last``: the output of the final stage, i.e. the map that global pooling sees (stride 32).

:func:`resolve_layers` finds them, in this order of precedence:

1. explicit ``inner=`` / ``last=`` arguments (each one independently);
2. user registrations made with :func:`register_layers`, most recent first;
3. the built-in entries below;
4. a generic fallback for any other timm model with ``feature_info``: ``last`` is the module of
   the last ``feature_info`` entry, ``inner`` the module of the last entry whose reduction is
   smaller than that one.

The built-in entries and their layouts are in ``families.py`` (a table per family).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from .errors import UserError, close_matches
from .layouts import LAYOUTS, infer_layout

__all__ = [
    "LayerError",
    "LayerPair",
    "get_submodule",
    "list_layer_families",
    "register_layers",
    "resolve_layer",
    "resolve_layers",
    "resolve_layout",
    "unwrap_model",
]

NameSpec = str | Callable[[nn.Module], str]
Key = str | type[nn.Module]


class LayerError(UserError):
    """A layer name that is not a submodule of the model, or a model with no known layers."""


@dataclass(frozen=True)
class LayerPair:
    """Module names (as in ``model.named_modules()``) of the two supervised layers."""

    inner: str
    last: str


@dataclass(frozen=True)
class _Entry:
    key: Key
    inner: NameSpec
    last: NameSpec
    builtin: bool
    layout: str | None = None  # None: inferred from the model (layouts.infer_layout)

    def matches(self, model: nn.Module, arch: str) -> bool:
        if isinstance(self.key, str):
            return fnmatch.fnmatchcase(arch, self.key)
        return isinstance(model, self.key)


# Lookup order: user entries (most recent first), then built-ins.
_REGISTRY: list[_Entry] = []


def _key_str(key: Key) -> str:
    if isinstance(key, str):
        return key
    return f"{key.__module__}.{key.__qualname__}"


def _check_spec(spec: Any, role: str) -> None:
    if isinstance(spec, str):
        if not spec:
            raise ValueError(f"{role} must be a non-empty module name")
    elif not callable(spec):
        raise TypeError(f"{role} must be a module name or a callable(model) -> str, got {spec!r}")


def register_layers(
    pattern_or_class: str | type[nn.Module],
    *,
    inner: str | Callable[[nn.Module], str],
    last: str | Callable[[nn.Module], str],
    layout: str | None = None,
    override: bool = False,
) -> None:
    """Register the (inner, last) layer names for a model family.

    ``pattern_or_class`` is an fnmatch pattern on the timm architecture name (e.g.
    ``"resnet1*"``) or an ``nn.Module`` subclass (matched with ``isinstance``). ``inner`` and
    ``last`` are module names or callables ``model -> name``. ``layout`` says what the layers
    give (``layouts.py``): ``NCHW`` maps, ``NHWC`` channels-last maps, or ``tokens`` (``B x N x
    D``, prefix tokens dropped, folded onto the patch grid); ``None`` infers it from the model
    (``output_fmt``, ``num_prefix_tokens``). User entries take precedence over built-ins, the
    most recent first. Registering an already registered pattern/class raises ``ValueError``
    unless ``override=True``, which replaces the existing entry.
    """
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)} or None, got {layout!r}")
    if isinstance(pattern_or_class, str):
        if not pattern_or_class:
            raise ValueError("pattern must be a non-empty string")
    elif not (isinstance(pattern_or_class, type) and issubclass(pattern_or_class, nn.Module)):
        raise TypeError(
            f"expected an fnmatch pattern or an nn.Module subclass, got {pattern_or_class!r}"
        )
    _check_spec(inner, "inner")
    _check_spec(last, "last")
    existing = [e for e in _REGISTRY if e.key == pattern_or_class]
    if existing and not override:
        raise ValueError(
            f"layers for {_key_str(pattern_or_class)!r} are already registered; "
            "pass override=True to replace them"
        )
    for entry in existing:
        _REGISTRY.remove(entry)
    _REGISTRY.insert(0, _Entry(pattern_or_class, inner, last, builtin=False, layout=layout))


def register_builtin(key: Key, inner: NameSpec, last: NameSpec, layout: str | None = None) -> None:
    """Append a built-in family (``families.py``): after every user entry."""
    _REGISTRY.append(_Entry(key, inner, last, builtin=True, layout=layout))


def list_layer_families() -> list[str]:
    """Registered patterns and classes (``module.QualName``), in lookup order."""
    return [_key_str(e.key) for e in _REGISTRY]


# ---------------------------------------------------------------------------------------------
# helpers


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module behind DDP / DataParallel / ``torch.compile`` wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def _arch_name(model: nn.Module) -> str:
    for attr in ("pretrained_cfg", "default_cfg"):
        try:
            cfg = getattr(model, attr, None)
        except Exception:  # a broken cfg property must not break resolution
            cfg = None
        if isinstance(cfg, dict) and cfg.get("architecture"):
            return str(cfg["architecture"])
    return type(model).__name__


def feature_info_dicts(model: nn.Module) -> list[dict[str, Any]]:
    info = getattr(model, "feature_info", None)
    if info is None:
        return []
    if hasattr(info, "get_dicts"):  # timm FeatureInfo (features_only wrappers)
        info = info.get_dicts()
    try:
        return [dict(d) for d in info if isinstance(d, dict) and "module" in d]
    except TypeError:
        return []


def fallback_pair(info: list[dict[str, Any]]) -> tuple[str, str] | None:
    if not info:
        return None
    last = info[-1]
    smaller = [d for d in info if d.get("reduction", 0) < last.get("reduction", 0)]
    if not smaller:
        return None
    return str(smaller[-1]["module"]), str(last["module"])


def _candidates(model: nn.Module) -> list[str]:
    names = [str(d["module"]) for d in feature_info_dicts(model)]
    names += [n for n, _ in model.named_children()]
    return list(dict.fromkeys(names))


def _describe(model: nn.Module) -> str:
    arch, cls = _arch_name(model), type(model).__name__
    return arch if arch == cls else f"{arch} ({cls})"


def _check_name(model: nn.Module, modules: dict[str, nn.Module], name: Any, role: str) -> str:
    if isinstance(name, str) and name and name in modules:
        return name
    close = close_matches(name, [n for n in modules if n]) if isinstance(name, str) else []
    msg = (
        f"{role} layer {name!r} is not a submodule of {_describe(model)}; "
        f"close matches: {close}; candidates: {_candidates(model)}"
    )
    raise LayerError(" ".join(msg.split()))


def get_submodule(model: nn.Module, name: str) -> nn.Module:
    """Return ``model``'s submodule called ``name``; ``ValueError`` with candidates if absent."""
    modules = dict(model.named_modules())
    return modules[_check_name(model, modules, name, "requested")]


def _call_spec(spec: NameSpec, model: nn.Module, entry: _Entry, role: str) -> Any:
    if isinstance(spec, str):
        return spec
    try:
        return spec(model)
    except (AttributeError, IndexError, KeyError, TypeError, ValueError) as err:
        msg = (
            f"the {role} layer rule registered for {_key_str(entry.key)!r} failed on "
            f"{_describe(model)}: {err}; pass {role}= explicitly"
        )
        raise LayerError(" ".join(msg.split())) from err


def _entry(model: nn.Module) -> _Entry | None:
    arch = _arch_name(model)
    return next((e for e in _REGISTRY if e.matches(model, arch)), None)


def resolve_layout(model: nn.Module) -> str:
    """The layout of ``model``'s feature layers: its registry entry's, else inferred."""
    core = unwrap_model(model)
    entry = _entry(core)
    if entry is not None and entry.layout is not None:
        return entry.layout
    return infer_layout(core)


def resolve_layers(
    model: nn.Module, inner: str | None = None, last: str | None = None
) -> LayerPair:
    """Return the ``LayerPair`` to supervise for ``model``.

    Explicit ``inner`` / ``last`` win over the registry; the rest comes from the first matching
    registry entry or from the ``feature_info`` fallback. Every name is checked against
    ``model.named_modules()``; a bad one raises a one-line ``ValueError`` listing candidates.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected an nn.Module, got {type(model).__name__}")
    modules = dict(model.named_modules())
    if inner is None or last is None:
        entry = _entry(model)
        if entry is not None:
            found = (
                _call_spec(entry.inner, model, entry, "inner") if inner is None else inner,
                _call_spec(entry.last, model, entry, "last") if last is None else last,
            )
        else:
            found = fallback_pair(feature_info_dicts(model))
            if found is None:
                msg = (
                    f"no attention layers known for {_describe(model)}: it matches no "
                    f"registered family and has no usable feature_info; pass inner= and last= "
                    f"or call register_layers(); candidates: {_candidates(model)}"
                )
                raise LayerError(" ".join(msg.split()))
        inner = found[0] if inner is None else inner
        last = found[1] if last is None else last
    return LayerPair(
        inner=_check_name(model, modules, inner, "inner"),
        last=_check_name(model, modules, last, "last"),
    )


def resolve_layer(model: nn.Module, layer: str) -> str:
    """The module name of ``layer``: ``'last'``/``'inner'`` through the registry, else ``layer``
    itself, checked against the (unwrapped) model's modules (``LayerError`` if absent)."""
    core = unwrap_model(model)
    if layer in ("last", "inner"):
        return getattr(resolve_layers(core), layer)
    get_submodule(core, layer)
    return layer
