"""Models side by side on one data set: metrics in columns, panels where they disagree.

``discatt compare --model A --model B --data D`` loads each model as ``discatt metrics`` does,
measures them on the same split (``compare.compare``: ``evaluation.measure`` per model), prints
one row per metric with a column per model, and draws the first ``--panels`` images that
exactly one of the first two models gets right (``--pick pointing``: points into the box), with
both models' maps at the inner and the last layer.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..compare import PICKS, compare, format_comparison
from ..data import named_data
from ..errors import ExplainError
from ..loading import load_model
from . import EXIT_ERROR
from .common import resolve_device

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``discatt compare`` options to ``parser``."""
    parser.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="NAME_OR_PATH",
        help="a model, as for discatt metrics (timm name, local-dir:, hf-hub:, run directory); "
        "repeat for each, at least two",
    )
    parser.add_argument(
        "--name",
        action="append",
        metavar="TITLE",
        help="column title of each --model, in order (default: the run directory's name)",
    )
    parser.add_argument(
        "--data", required=True, metavar="DATA", help="data name, image folder or Hub id"
    )
    parser.add_argument("--split", default="test", help="split to measure (default test)")
    parser.add_argument(
        "--method", default="pixel", help="pixel (default), channel, gradcam or gradcampp"
    )
    parser.add_argument("--max-samples", type=int, metavar="N", help="seeded random subset")
    parser.add_argument("--batch-size", type=int, default=64, metavar="N")
    parser.add_argument(
        "--panels", type=int, default=3, metavar="N", help="images to draw (default 3; 0: none)"
    )
    parser.add_argument("--topk", type=int, default=3, help="classes per panel row (default 3)")
    parser.add_argument(
        "--pick",
        choices=PICKS,
        default="right",
        help="draw images where exactly one of the first two models is right (default) or, "
        "for data with boxes, points into the box (its last map's peak)",
    )
    parser.add_argument("--out", default="compare", metavar="DIR", help="default ./compare")
    parser.add_argument("--json", metavar="FILE", help="also write every report as JSON")
    parser.add_argument("--device", default=None, help="default cuda if available, else cpu")
    parser.epilog = (
        "Rows: top-1 (or mAP), sIoU, L_ac, all-zero confusing maps and, for data with boxes, "
        f"the localisation metrics. Exit status 0, or {EXIT_ERROR} with one "
        "'discatt compare: error' line."
    )


def _titles(args: argparse.Namespace) -> list[str]:
    if args.name is None:
        titles = [Path(m.split(":", 1)[-1]).name or m for m in args.model]
    elif len(args.name) != len(args.model):
        raise ExplainError(f"{len(args.name)} --name for {len(args.model)} --model; give one each")
    else:
        titles = list(args.name)
    if len(set(titles)) != len(titles):
        raise ExplainError(f"column titles must differ, got {titles}; give --name for each")
    return titles


def run(args: argparse.Namespace) -> int:
    """Run ``discatt compare``: print the table, write the panels (and ``--json``)."""
    if len(args.model) < 2:
        raise ExplainError(f"compare needs two or more --model, got {len(args.model)}")
    for flag, value, low in (
        ("--max-samples", args.max_samples, 1),
        ("--batch-size", args.batch_size, 1),
        ("--panels", args.panels, 0),
        ("--topk", args.topk, 1),
    ):
        if value is not None and value < low:
            raise ExplainError(f"{flag} must be >= {low}, got {value}")
    titles = _titles(args)
    named_data(args.data, split=args.split)  # a data name or path that cannot be: said first
    device = resolve_device(args.device)
    models = {
        title: load_model(spec).to(device) for title, spec in zip(titles, args.model, strict=True)
    }
    result = compare(
        models,
        args.data,
        split=args.split,
        method=args.method,
        max_samples=args.max_samples,
        batch_size=args.batch_size,
        panels=args.panels,
        topk=args.topk,
        out_dir=args.out,
        pick=args.pick,
    )
    print(format_comparison(result))
    for panel in result.panels:
        print(f"wrote {panel.path}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result.reports, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0
