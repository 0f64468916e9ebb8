"""Publish a finished training run: a Hub-ready folder, a measured model card, the upload."""

from __future__ import annotations

import argparse

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
        "--overwrite",
        action="store_true",
        help="let --local-dir replace files of a non-empty folder",
    )


def run(args: argparse.Namespace) -> int:
    """Print where the run went (URL or folder); a ``PublishError`` is the CLI's one line."""
    where = publish(
        args.run_dir,
        repo_id=args.repo_id,
        local_dir=args.local_dir,
        private=args.private,
        revision=args.revision,
        baseline_dir=args.baseline,
        overwrite=args.overwrite,
        license=args.license,
    )
    print(where)
    return 0
