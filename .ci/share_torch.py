"""Let a fresh venv see this interpreter's torch and torchvision without a second copy.

A CUDA build of torch takes about 5.5 GB; the CI machine's disk has at times held only one. Run
with the python of a venv that has torch and torchvision installed, and the fresh venv's path:
every distribution that torch and torchvision need (recursively) is symlinked into
``<venv>/shared-torch`` and a ``.pth`` file adds that folder to the fresh venv's path, so pip there
counts them as installed and installs only the rest.

    .venv/bin/python .ci/share_torch.py /tmp/x/venv
"""

from __future__ import annotations

import re
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

ROOTS = ("torch", "torchvision")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*")
_EXTRA = re.compile(r"\bextra\s*==")


def required_distributions(roots: tuple[str, ...] = ROOTS) -> list[metadata.Distribution]:
    """Return the installed distributions of ``roots`` and, recursively, of what they require.

    Requirements that ask for an extra, or that are not installed here (a marker left them
    out), are skipped.
    """
    found: dict[str, metadata.Distribution] = {}
    pending = list(roots)
    while pending:
        name = pending.pop().lower().replace("_", "-")
        if name in found:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        found[name] = dist
        for requirement in dist.requires or []:
            if _EXTRA.search(requirement):
                continue
            match = _NAME.match(requirement.strip())
            if match:
                pending.append(match.group(0))
    return list(found.values())


def top_level_entries(dist: metadata.Distribution) -> set[Path]:
    """Return the site-packages entries (packages, modules, .dist-info) a distribution owns."""
    site = Path(dist.locate_file(""))
    entries = set()
    for file in dist.files or []:
        parts = Path(file).parts
        if parts and parts[0] not in ("..", "__pycache__"):
            entries.add(site / parts[0])
    return {entry for entry in entries if entry.exists()}


def share(venv: Path) -> Path:
    """Symlink the torch stack into ``venv/shared-torch`` and add it to ``venv``'s path."""
    shared = venv / "shared-torch"
    shared.mkdir(exist_ok=True)
    for dist in required_distributions():
        for entry in top_level_entries(dist):
            link = shared / entry.name
            if not link.exists():
                link.symlink_to(entry)
    version = sysconfig.get_python_version()
    site_packages = venv / "lib" / f"python{version}" / "site-packages"
    if not site_packages.is_dir():
        raise SystemExit(f"share_torch: {site_packages} is not a python{version} venv folder")
    (site_packages / "shared-torch.pth").write_text(f"{shared.resolve()}\n")
    return shared


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python .ci/share_torch.py VENV")
    print(f"share_torch: {len(list(share(Path(sys.argv[1])).iterdir()))} entries shared")
