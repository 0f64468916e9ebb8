"""Publish a finished training run: a Hub-ready folder, a measured model card, the upload."""

from __future__ import annotations

import argparse

from ..errors import PublishError
from ..hub import publish

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Publish a finished run: Hub folder, model card, upload (`--repo-id`) or `--local-dir`."""
    parser.add_argument("run_dir", help="a finished run directory of `discatt train`")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--repo-id", help="upload to this Hugging Face model repository")
    target.add_argument("--local-dir", help="only build the repository folder here")
    parser.add_argument("--private", action="store_true", help="create the repository private")
    parser.add_argument("--revision", help="branch to upload to (created if missing)")
    parser.add_argument("--baseline", help="a finished baseline run to compare with in the card")
    parser.add_argument(
        "--license",
        help="the weights' licence on the card (default: the base weights' licence when "
        "fine-tuned, else apache-2.0)",
    )
    parser.add_argument(
        "--load-name",
        help="what the card's usage passes to timm.create_model (default hf-hub:REPO_ID or "
        "local-dir:LOCAL_DIR), e.g. a zoo entry's tag cifar_resnet20.discatt_fashion_mnist_clutter",
    )
    study = parser.add_argument_group(
        "spread over a study's seeds",
        "a study's JSON-lines results (one record per run with regime, arm, seed, metrics): "
        "the card gets each metric's mean ± sd of --arm and --baseline-arm over the seeds",
    )
    study.add_argument("--seeds", metavar="FILE.jsonl", help="the study's results file")
    study.add_argument("--regime", help="the study regime of this model (needed with --seeds)")
    study.add_argument("--arm", help="the study arm of this model (needed with --seeds)")
    study.add_argument(
        "--baseline-arm", help="the study arm of its cross-entropy baseline (default: baseline)"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="let --local-dir replace files of a non-empty folder",
    )


def run(args: argparse.Namespace) -> int:
    """Print where the run went (URL or folder); a ``PublishError`` is the CLI's one line."""
    _check_study_flags(args)
    where = publish(
        args.run_dir,
        repo_id=args.repo_id,
        local_dir=args.local_dir,
        private=args.private,
        revision=args.revision,
        baseline_dir=args.baseline,
        overwrite=args.overwrite,
        license=args.license,
        seeds=args.seeds,
        regime=args.regime,
        arm=args.arm,
        baseline_arm=args.baseline_arm or "baseline",
        load_name=args.load_name,
    )
    print(where)
    return 0


def _check_study_flags(args: argparse.Namespace) -> None:
    """``--regime`` and ``--arm`` come with ``--seeds``, and only with it (before any work)."""
    given = [flag for flag in ("regime", "arm", "baseline_arm") if getattr(args, flag)]
    if args.seeds is None and given:
        flags = ", ".join(f"--{flag.replace('_', '-')}" for flag in given)
        raise PublishError(f"{flags} without --seeds: give the study's file, --seeds FILE.jsonl")
    missing = [f"--{flag}" for flag in ("regime", "arm") if args.seeds and not getattr(args, flag)]
    if missing:
        raise PublishError(
            f"--seeds {args.seeds} needs {' and '.join(missing)} (the study regime and arm of "
            "this model, e.g. --regime clutter --arm paper_px)"
        )
