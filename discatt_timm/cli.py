"""``discatt``: the command line. This file only wires subcommands.

Each subcommand lives in its own module, which provides ``add_arguments(parser)`` and
``run(args) -> int`` (and a module docstring whose first line is the help text). To add one,
append ``(name, module)`` to ``SUBCOMMANDS``. User errors (bad recipe key, missing dataset,
corrupt checkpoint, ...) end the program with one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["SUBCOMMANDS", "build_parser", "main"]

# (subcommand, module providing add_arguments/run, prefix of those two names in the module);
# modules are imported when the parser is built.
SUBCOMMANDS: tuple[tuple[str, str, str], ...] = (
    ("train", "discatt_timm.train", ""),
    ("explain", "discatt_timm.explain", ""),
    ("metrics", "discatt_timm.measure", ""),
    ("publish", "discatt_timm.hub", ""),
    ("hub", "discatt_timm.hub", "hub_"),
)


def _user_errors() -> tuple[type[BaseException], ...]:
    from .data import DataError
    from .train import CheckpointError
    from .train_config import RecipeError

    return (RecipeError, DataError, CheckpointError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="discatt", description="Discriminative attention supervision for timm CNNs."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name, prefix in SUBCOMMANDS:
        module = importlib.import_module(module_name)
        add_arguments = getattr(module, f"{prefix}add_arguments")
        doc = add_arguments.__doc__ if prefix else module.__doc__
        summary = (doc or name).strip().splitlines()[0]
        sub = subparsers.add_parser(name, help=summary, description=summary)
        add_arguments(sub)
        sub.set_defaults(_run=getattr(module, f"{prefix}run"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``discatt`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except _user_errors() as err:
        print(f"discatt {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
