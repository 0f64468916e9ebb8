"""``discatt``: the command line. All argparse lives in this package, one module per command.

Each command module provides ``add_arguments(parser)``, ``run(args) -> int`` and a module
docstring whose first line is its help text. To add one, append ``(name, module)`` to
``SUBCOMMANDS``. Every user error is a ``discatt_timm.errors.UserError``; ``main`` prints it
as one line, ``discatt <command>: error: <message>``, and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ..errors import UserError

__all__ = ["EXIT_ERROR", "SUBCOMMANDS", "build_parser", "main", "one_line"]

EXIT_ERROR = 2  # any bad input

# (subcommand, module providing add_arguments/run); modules are imported when the parser is built.
SUBCOMMANDS: tuple[tuple[str, str], ...] = (
    ("train", "discatt_timm.cli.train"),
    ("explain", "discatt_timm.cli.explain"),
    ("metrics", "discatt_timm.cli.metrics"),
    ("compare", "discatt_timm.cli.compare"),
    ("publish", "discatt_timm.cli.publish"),
    ("hub", "discatt_timm.cli.hub"),
)


def one_line(err: BaseException) -> str:
    """The message of ``err`` on one line (its type name when it has none)."""
    return " ".join(str(err).split()) or type(err).__name__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="discatt", description="Discriminative attention supervision for timm models."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in SUBCOMMANDS:
        module = importlib.import_module(module_name)
        summary = (module.__doc__ or name).strip().splitlines()[0]
        sub = subparsers.add_parser(name, help=summary, description=summary)
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``discatt`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except UserError as err:
        print(f"discatt {args.command}: error: {one_line(err)}", file=sys.stderr)
        return EXIT_ERROR
