"""User errors: one line that names the bad value and what would be accepted.

Every error a user can cause (a recipe key, a data set, a model name, a weights file, an image,
a run to publish) is a ``UserError``: a ``ValueError`` whose message is one line. The command
line prints it as ``discatt <command>: error: <message>`` and exits with status 2
(``discatt_timm.cli``); Python callers catch ``UserError`` or the specific subclass.
``did_you_mean`` and ``close_matches`` are the one place that suggests a name.

Imports nothing from this package, so every module may raise these.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "CheckpointError",
    "DataError",
    "ExplainError",
    "LoadError",
    "PublishError",
    "RecipeError",
    "TrainingError",
    "UserError",
    "close_matches",
    "did_you_mean",
]


class UserError(ValueError):
    """Bad user input, said in one line (the CLI prints it and exits with status 2)."""


class RecipeError(UserError):
    """A recipe (or ``--set`` override) with an unknown key, a wrong type or a bad value."""


class DataError(UserError):
    """A data set that cannot be found, read or used with the model (the message says which)."""


class LoadError(UserError):
    """A model or weights that cannot be found, read or loaded (name, run dir, hub id, file)."""


class CheckpointError(UserError):
    """A run checkpoint that cannot be written, found or resumed from."""


class ExplainError(UserError):
    """An image, class, layer or option of ``explain``/``metrics`` that cannot be used."""


class TrainingError(UserError):
    """A run that cannot go on (its loss is no longer a number): the message says what to try."""


class PublishError(UserError):
    """A run that cannot be published, or a missing token: one line saying what to do."""


def close_matches(word: object, choices: Iterable[object], n: int = 5) -> list[str]:
    """Up to ``n`` of ``choices`` that look like ``word`` (difflib ratio >= 0.6), best first."""
    return difflib.get_close_matches(str(word), [str(c) for c in choices], n=n, cutoff=0.6)


def did_you_mean(word: object, choices: Iterable[object]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``choices``, or ``""`` when none is close."""
    close = close_matches(word, choices, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""
