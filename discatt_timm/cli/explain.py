"""``explain``: what a timm model looks at for its top-k classes, as PNG panels."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

from torch import nn

from ..errors import ExplainError
from ..explain import ImageConversionWarning, explain, open_image
from ..loading import load_model
from ..viz import TILE, Panel
from . import EXIT_ERROR
from .common import add_model_arguments, resolve_device

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``discatt explain`` options to ``parser``."""
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    add_model_arguments(
        parser,
        checkpoint_help="weights for --model (.safetensors or a torch state_dict); nothing is "
        "downloaded",
    )
    parser.add_argument(
        "--compare", metavar="NAME_OR_PATH", help="a second model, shown in rows below the first"
    )
    parser.add_argument("--compare-checkpoint", metavar="FILE", help="weights for --compare")
    parser.add_argument("--topk", type=int, default=5, help="classes per row (default 5)")
    parser.add_argument(
        "--method",
        action="append",
        metavar="NAME",
        help="pixel (default), channel, gradcam or gradcampp; repeat or comma-separate for a "
        "row each",
    )
    parser.add_argument(
        "--layer",
        action="append",
        metavar="LAYER",
        help="last (default), inner, both, or a module name; repeat or comma-separate",
    )
    parser.add_argument(
        "--label",
        nargs="+",
        action="extend",
        metavar="CLASS",
        help="true class (index or name) of each image, in order (put after the images)",
    )
    parser.add_argument("--out", default="explain", metavar="DIR", help="default ./explain")
    parser.add_argument(
        "--input-size", type=int, metavar="PX", help="square input side (default: the model's)"
    )
    parser.add_argument("--multilabel", action="store_true", help="sigmoid scores, not softmax")
    parser.add_argument("--tile-size", type=int, default=TILE, metavar="PX", help="tile side")
    parser.add_argument("--cmap", default="jet", help="matplotlib colour map (default jet)")
    parser.add_argument("--batch-size", type=int, default=8, metavar="N")
    parser.add_argument("--device", default=None, help="default cuda if available, else cpu")
    parser.epilog = (
        f"One PNG per image: <stem>_explain.png in --out. Exit status 0, or {EXIT_ERROR} with a "
        "one-line 'discatt explain: error: ...' on bad input."
    )


def _title(spec: str, checkpoint: str | None) -> str:
    base = spec.removeprefix("local-dir:").removeprefix("hf-hub:").rstrip("/\\")
    base = Path(base).name if Path(base).is_dir() or "/" in base else base
    return f"{Path(checkpoint).stem} ({base})" if checkpoint else base


def _run(args: argparse.Namespace) -> list[Panel]:
    if args.compare_checkpoint and not args.compare:
        raise ExplainError("--compare-checkpoint needs --compare")
    device = resolve_device(args.device)
    specs = [(args.model, args.checkpoint)]
    if args.compare:
        specs.append((args.compare, args.compare_checkpoint))
    for image in args.images:  # fail on a bad file before loading any model
        open_image(image, 0)
    models: dict[str, nn.Module] = {}
    for spec, checkpoint in specs:
        title = _title(spec, checkpoint)
        if title in models:
            title = f"#2 {title}"
        models[title] = load_model(spec, checkpoint).to(device)
    return explain(
        models,
        args.images,
        topk=args.topk,
        method=args.method or ["pixel"],
        layer=args.layer or ["last"],
        labels=args.label,
        input_size=args.input_size,
        multilabel=args.multilabel,
        batch_size=args.batch_size,
        out_dir=args.out,
        tile=args.tile_size,
        cmap=args.cmap,
    )


def _show_notes(shown: Callable[..., None]) -> Callable[..., None]:
    """A ``warnings.showwarning`` that prints image conversions as ``discatt explain: note:``
    lines and hands every other warning to ``shown`` (Python's): nothing is kept in memory."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if issubclass(category, ImageConversionWarning):
            print(f"discatt explain: note: {message}", file=sys.stderr)
        else:
            shown(message, category, filename, lineno, file, line)

    return show


def run(args: argparse.Namespace) -> int:
    """Run ``discatt explain``: print each panel's path.

    Image conversions are one ``discatt explain: note: ...`` line each, printed as they happen
    (before any error, which ``discatt_timm.cli.main`` prints as one line, exit status 2).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("always", ImageConversionWarning)
        warnings.showwarning = _show_notes(warnings.showwarning)
        panels = _run(args)
    for panel in panels:
        top = panel.rows[0]
        print(f"{panel.path}  ({top.model}: {top.names[0]} {top.probs[0]:.3f})")
    return 0
