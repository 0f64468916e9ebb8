"""Measure where a classifier looks: attention separability and consistency over a dataset.

``discatt metrics --model M --data D`` loads a model as ``discatt explain`` does
(``loading.load_model``), one split of a dataset with the model's eval transform
(``data.named_data`` + ``data.eval_data``) and prints ``evaluation.measure``: per class and
overall mean soft IoU of the target and confusing class maps at the inner and last layer, the
consistency loss, top-1, the share of all-zero maps, and the most-confused class pairs;
``--json`` saves the same numbers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..data import named_data
from ..errors import ExplainError
from ..evaluation import measure
from ..loading import load_model
from . import EXIT_ERROR
from .common import add_model_arguments, resolve_device

__all__ = ["add_arguments", "format_report", "run"]


def _localisation_lines(report: dict[str, Any]) -> list[str]:
    """The localisation table (data with boxes): pointing game, energy in the box and the
    confusing class's energy in it, inner / last layer."""
    if "pointing_last" not in report["overall"]:
        return []
    lines = [
        "localisation, inner / last (pointing game, energy in box, confusing energy in box):",
        f"{'class':<16} {'pointing':>13} {'energy':>13} {'conf. energy':>13}",
    ]
    rows = [(r["name"], r) for r in report["per_class"]] + [("overall", report["overall"])]
    for name, r in rows:
        cells = [
            f"{r[f'{key}_inner']:.3f} / {r[f'{key}_last']:.3f}"
            for key in ("pointing", "energy", "confusing_energy")
        ]
        lines.append(f"{name[:16]:<16} {cells[0]:>13} {cells[1]:>13} {cells[2]:>13}")
    return lines


def format_report(report: dict[str, Any]) -> str:
    """A short plain-text table of ``measure``'s (``attention_report``'s) result."""
    title = f"attention report ({report['method']} maps, {report['num_samples']} samples)"
    if report.get("multilabel"):
        r = report["overall"]
        summary = (
            f"overall: mAP {r['mAP']:.3f}, ROC-AUC {r['roc_auc']:.3f}, sIoU in "
            f"{r['siou_inner']:.3f}, sIoU last {r['siou_last']:.3f}, L_ac {r['consistency']:.3f}"
        )
        return "\n".join([title + ", multi-label", summary, *_localisation_lines(report)])
    head = (
        f"{'class':<16} {'n':>6} {'top1':>6} {'sIoU in':>8} {'sIoU last':>9} {'L_ac':>6} "
        f"{'zero C last':>11}"
    )
    lines = [title, head]

    def line(name: str, n: int, r: dict[str, float]) -> str:
        return (
            f"{name[:16]:<16} {n:>6} {r['top1']:>6.3f} {r['siou_inner']:>8.3f} "
            f"{r['siou_last']:>9.3f} {r['consistency']:>6.3f} {r['zero_confusing_last']:>11.3f}"
        )

    lines += [line(r["name"], r["samples"], r) for r in report["per_class"]]
    lines.append(line("overall", report["num_samples"], report["overall"]))
    if report["confused_pairs"]:
        lines.append("most-confused pairs (true -> predicted: errors, rate, sIoU last):")
        lines += [
            f"  {p['names'][0]} -> {p['names'][1]}: {p['errors']}, {p['error_rate']:.3f}, "
            f"{p['siou_last']:.3f}"
            for p in report["confused_pairs"]
        ]
    return "\n".join(lines + _localisation_lines(report))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``discatt metrics`` options to ``parser``."""
    add_model_arguments(parser, checkpoint_help="weights for --model; no download")
    parser.add_argument(
        "--data",
        required=True,
        metavar="DATA",
        help="fashion_mnist, fashion_mnist_clutter, fashion_mnist_multi (with boxes: "
        "localisation metrics), an image folder (DIR/<split>/<class>/* or DIR/<class>/*), or a "
        "Hub dataset id such as uoft-cs/cifar100",
    )
    parser.add_argument("--split", default="test", help="split to measure (default test)")
    parser.add_argument(
        "--method", default="pixel", help="pixel (default), channel, gradcam or gradcampp"
    )
    parser.add_argument(
        "--layers", metavar="INNER,LAST", help="module names (default: the layer registry)"
    )
    parser.add_argument("--max-samples", type=int, metavar="N", help="seeded random subset")
    parser.add_argument("--batch-size", type=int, default=64, metavar="N")
    parser.add_argument("--top-pairs", type=int, default=5, metavar="N", help="default 5")
    parser.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    parser.add_argument("--device", default=None, help="default cuda if available, else cpu")
    parser.epilog = (
        "sIoU: soft IoU of the true and the most confusing class maps (lower = better "
        "separated); L_ac: consistency loss; zero C last: share of confusing-class maps that "
        f"are all zero. Exit status 0, or {EXIT_ERROR} with one 'discatt metrics: error' line."
    )


def _layers(value: str | None) -> tuple[str, str] | None:
    if value is None:
        return None
    parts = [p.strip() for p in value.split(",")]
    if len(parts) != 2 or not all(parts):
        raise ExplainError(f"--layers takes INNER,LAST (two module names), got {value!r}")
    return parts[0], parts[1]


def run(args: argparse.Namespace) -> int:
    """Run ``discatt metrics``: print the table (and write ``--json``)."""
    if args.max_samples is not None and args.max_samples < 1:
        raise ExplainError(f"--max-samples must be >= 1, got {args.max_samples}")
    if args.top_pairs < 0:
        raise ExplainError(f"--top-pairs must be >= 0, got {args.top_pairs}")
    if args.batch_size < 1:
        raise ExplainError(f"--batch-size must be >= 1, got {args.batch_size}")
    layers = _layers(args.layers)
    named_data(args.data, split=args.split)  # a data name or path that cannot be: said first
    model = load_model(args.model, args.checkpoint).to(resolve_device(args.device))
    report = measure(
        model,
        args.data,
        split=args.split,
        method=args.method,
        layers=layers,
        max_samples=args.max_samples,
        batch_size=args.batch_size,
        top_pairs=args.top_pairs,
    )
    report["model"] = args.model
    if args.checkpoint:
        report["checkpoint"] = args.checkpoint
    print(format_report(report))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0
