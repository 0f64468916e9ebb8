"""Zoo maintenance: `discatt hub list` shows the entries, `discatt hub check` verifies them."""

from __future__ import annotations

import argparse

from ..zoo.check import check_zoo
from ..zoo.listing import markdown_table, plain_table, zoo_rows

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``discatt hub COMMAND``: ``list`` and ``check``."""
    commands = parser.add_subparsers(dest="hub_command", required=True, metavar="COMMAND")
    listing = commands.add_parser(
        "list",
        help="the zoo's entries and their measured metrics",
        description="One row per zoo entry: supervision, data, top-1 or mAP on the test images, "
        "sIoU and pointing game at the last layer, and the baseline entry it is compared with.",
    )
    listing.add_argument(
        "--markdown", action="store_true", help="print the README's markdown table instead"
    )
    check = commands.add_parser(
        "check", help="verify the zoo manifest", description=check_zoo.__doc__.splitlines()[0]
    )
    check.add_argument("--manifest", help="manifest to check (default: the package's)")
    check.add_argument("--repo-root", default=".", help="where recipes/ lives (default: .)")
    check.add_argument(
        "--no-remeasure", action="store_true", help="skip re-measuring the metric on the data"
    )


def _check(args: argparse.Namespace) -> int:
    """Print one line per check and a count; 1 when any check failed."""
    findings = check_zoo(args.manifest, repo_root=args.repo_root, remeasure=not args.no_remeasure)
    for f in findings:
        status = "ok  " if f.ok else "FAIL"
        print(f"{status} {f.variant}: {f.check}{f' ({f.detail})' if f.detail else ''}")
    failed = sum(not f.ok for f in findings)
    print(f"{len(findings) - failed} passed, {failed} failed")
    return 1 if failed else 0


def run(args: argparse.Namespace) -> int:
    """``list``: the table; ``check``: the findings (exit 1 when any failed)."""
    if args.hub_command == "list":
        rows = zoo_rows()
        print(markdown_table(rows) if args.markdown else plain_table(rows))
        return 0
    return _check(args)
