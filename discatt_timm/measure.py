"""Measure where a classifier looks: attention separability and consistency over a dataset.

``discatt metrics --model M --data D`` loads a model as ``discatt explain`` does (a timm name, a
``local-dir:``/``hf-hub:`` name, a run directory, or an architecture plus ``--checkpoint``), one
split of a dataset as the trainer does (``fashion_mnist``, an image folder, or a Hub dataset id)
with the model's own eval transform, and prints ``metrics.attention_report``: per class and
overall mean soft IoU of the target and confusing class maps at the inner and last layer, the
consistency loss, top-1, the share of all-zero maps, and the most-confused class pairs; ``--json``
saves the same numbers. The trainer's evaluation and the model cards use the same code.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .data import DataError, ImageClassificationDataset, build_data, load_splits
from .explain import ExplainError, load_model, resolve_device
from .metrics import attention_report
from .train_config import DataConfig

__all__ = ["add_arguments", "format_report", "load_eval_dataset", "measure", "run"]

EXIT_ERROR = 2


def _data_config(data: str, split: str, max_samples: int | None, seed: int) -> DataConfig:
    """The trainer's ``DataConfig`` for one split of ``data`` (source name, folder or Hub id)."""
    common = dict(max_eval_samples=max_samples, split_seed=seed, augment="none", num_workers=0)
    if data == "fashion_mnist":
        return DataConfig(source="fashion_mnist", train_split=split, eval_split=split, **common)
    folder = Path(data)
    if folder.is_dir():
        # An image folder with split subfolders (train/, test/, ...) or only class folders.
        split_name = split if (folder / split).is_dir() else "train"
        return DataConfig(
            source="imagefolder",
            path=str(folder),
            train_split=split_name,
            eval_split=split_name,
            **common,
        )
    return DataConfig(source="hub", path=data, train_split=split, eval_split=split, **common)


def load_eval_dataset(
    model: nn.Module,
    data: str,
    *,
    split: str = "test",
    max_samples: int | None = None,
    seed: int = 0,
) -> tuple[ImageClassificationDataset, list[str]]:
    """One split of ``data`` with ``model``'s eval transform, and the dataset's class names.

    ``data``: ``fashion_mnist``, an image folder (``DIR/<split>/<class>/*`` or ``DIR/<class>/*``)
    or a Hub dataset id (``uoft-cs/cifar100``). ``max_samples`` takes a seeded random subset.
    """
    cfg = _data_config(data, split, max_samples, seed)
    splits = load_splits(cfg)
    num_classes = int(getattr(model, "num_classes", 0) or 0)
    if num_classes != splits.num_classes:
        raise DataError(
            f"the model has {num_classes} classes, the data {data!r} has {splits.num_classes} "
            f"({', '.join(splits.class_names[:5])}{', ...' if splits.num_classes > 5 else ''})"
        )
    return build_data(cfg, model, splits).eval, list(splits.class_names)


def measure(
    model: nn.Module,
    data: str,
    *,
    split: str = "test",
    method: str = "pixel",
    layers: tuple[str, str] | None = None,
    max_samples: int | None = None,
    batch_size: int = 64,
    top_pairs: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """``attention_report`` of ``model`` on one split of ``data`` (see ``load_eval_dataset``)."""
    dataset, names = load_eval_dataset(model, data, split=split, max_samples=max_samples, seed=seed)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    report = attention_report(
        model, loader, method=method, class_names=names, layers=layers, top_pairs=top_pairs
    )
    return {"data": data, "split": split, **report}


def format_report(report: dict[str, Any]) -> str:
    """A short plain-text table of ``measure``'s (``attention_report``'s) result."""
    head = (
        f"{'class':<16} {'n':>6} {'top1':>6} {'sIoU in':>8} {'sIoU last':>9} {'L_ac':>6} "
        f"{'zero C last':>11}"
    )
    lines = [f"attention report ({report['method']} maps, {report['num_samples']} samples)", head]

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
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``discatt metrics`` options to ``parser``."""
    parser.add_argument(
        "--model",
        required=True,
        metavar="NAME_OR_PATH",
        help="timm name (pretrained weights unless --checkpoint), local-dir:PATH, hf-hub:REPO, "
        "or a training run directory",
    )
    parser.add_argument("--checkpoint", metavar="FILE", help="weights for --model; no download")
    parser.add_argument(
        "--data",
        required=True,
        metavar="DATA",
        help="fashion_mnist, an image folder (DIR/<split>/<class>/* or DIR/<class>/*), or a Hub "
        "dataset id such as uoft-cs/cifar100",
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
    """Run ``discatt metrics``: print the table (and write ``--json``); 0 or ``EXIT_ERROR``."""
    try:
        if args.max_samples is not None and args.max_samples < 1:
            raise ExplainError(f"--max-samples must be >= 1, got {args.max_samples}")
        if args.top_pairs < 0:
            raise ExplainError(f"--top-pairs must be >= 0, got {args.top_pairs}")
        model = load_model(args.model, args.checkpoint).to(resolve_device(args.device))
        report = measure(
            model,
            args.data,
            split=args.split,
            method=args.method,
            layers=_layers(args.layers),
            max_samples=args.max_samples,
            batch_size=args.batch_size,
            top_pairs=args.top_pairs,
        )
    except (ValueError, DataError, ImportError) as err:  # ExplainError, registries, data
        print(f"discatt metrics: error: {' '.join(str(err).split())}", file=sys.stderr)
        return EXIT_ERROR
    report["model"] = args.model
    if args.checkpoint:
        report["checkpoint"] = args.checkpoint
    print(format_report(report))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0
