"""The Accelerate trainer: run a recipe with (or without) discriminative attention supervision."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..errors import UserError
from ..recipes import dump_recipe, load_recipe
from ..training import train
from . import one_line

__all__ = ["add_arguments", "main", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``discatt train`` / ``python -m discatt_timm.train``."""
    parser.add_argument(
        "--recipe",
        required=True,
        help="recipe file, or the name of one in recipes/ (e.g. fashion_mnist_quickstart)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="override recipe keys; values are read as YAML "
        "(e.g. --set optim.lr=0.05 data.batch_size=64)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from the run directory's latest checkpoint (from scratch if it has none)",
    )
    parser.add_argument(
        "--print-recipe", action="store_true", help="print the resolved recipe and exit"
    )


def run(args: argparse.Namespace) -> int:
    """Run ``discatt train`` from parsed arguments; user errors raise (the CLI prints them)."""
    cfg = load_recipe(args.recipe, args.overrides)
    if args.print_recipe:
        print(dump_recipe(cfg), end="")
        return 0
    train(cfg, resume=args.resume)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m discatt_timm.train`` (what ``accelerate launch -m`` runs)."""
    parser = argparse.ArgumentParser(prog="python -m discatt_timm.train", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except UserError as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2
