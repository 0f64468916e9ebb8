"""The two checks every recipe section uses; failures are ``RecipeError`` naming the key."""

from __future__ import annotations

from ..errors import RecipeError

__all__ = ["check", "positive_int"]


def check(ok: bool, key: str, message: str) -> None:
    """Raise ``RecipeError("recipe key '<key>' <message>")`` unless ``ok``."""
    if not ok:
        raise RecipeError(f"recipe key '{key}' {message}")


def positive_int(value: int | None, key: str, *, allow_none: bool = False) -> None:
    """``value`` is a positive integer (or ``None`` when ``allow_none``)."""
    if value is None and allow_none:
        return
    check(value is not None and value > 0, key, f"must be a positive integer, got {value}")
