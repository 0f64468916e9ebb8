"""Zoo maintenance: `discatt hub check` verifies every manifest entry."""

from __future__ import annotations

import argparse

from ..zoo.check import check_zoo

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``discatt hub COMMAND``: today one command, ``check``."""
    commands = parser.add_subparsers(dest="hub_command", required=True, metavar="COMMAND")
    check = commands.add_parser(
        "check", help="verify the zoo manifest", description=check_zoo.__doc__.splitlines()[0]
    )
    check.add_argument("--manifest", help="manifest to check (default: the package's)")
    check.add_argument("--repo-root", default=".", help="where recipes/ lives (default: .)")
    check.add_argument(
        "--no-remeasure", action="store_true", help="skip re-measuring top-1 on the data"
    )


def run(args: argparse.Namespace) -> int:
    """Print one line per check and a count; 1 when any check failed."""
    findings = check_zoo(args.manifest, repo_root=args.repo_root, remeasure=not args.no_remeasure)
    for f in findings:
        status = "ok  " if f.ok else "FAIL"
        shown = f.detail and (not f.ok or "not re-measured" in f.detail)
        print(f"{status} {f.variant}: {f.check}{f' ({f.detail})' if shown else ''}")
    failed = sum(not f.ok for f in findings)
    print(f"{len(findings) - failed} passed, {failed} failed")
    return 1 if failed else 0
