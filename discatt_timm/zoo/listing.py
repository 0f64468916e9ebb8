"""``discatt hub list``: the zoo's entries and what was measured, one row each.

A row is read from the manifest entry, its recipe and, for a shipped folder, the run's
``metrics.json``: what it supervises, the data, the headline metric (top-1, or mAP for
multi-label data) on how many test images, the last layer's sIoU and pointing game where they
were measured, and the baseline entry it is compared with. The README's zoo table is
``markdown_table()`` between ``<!-- zoo-table -->`` and ``<!-- /zoo-table -->``; a test checks
it is current (``discatt hub list --markdown`` prints it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .manifest import MANIFEST, Variant, load_manifest

__all__ = ["ZooRow", "markdown_table", "plain_table", "zoo_rows"]

HEADERS = (
    "entry",
    "supervision",
    "data",
    "metric",
    "test images",
    "sIoU last",
    "pointing",
    "baseline",
)


@dataclass(frozen=True)
class ZooRow:
    """One entry as shown: every field already formatted (``-`` where nothing was measured)."""

    entry: str
    supervision: str
    data: str
    metric: str
    test_images: str
    siou_last: str
    pointing: str
    baseline: str

    def cells(self) -> tuple[str, ...]:
        return (
            self.entry,
            self.supervision,
            self.data,
            self.metric,
            self.test_images,
            self.siou_last,
            self.pointing,
            self.baseline,
        )


def _supervision(variant: Variant) -> str:
    """``cross-entropy`` or e.g. ``A_px, softmax`` (method, normalisation) from the shipped
    ``config.json`` (``-`` for a Hub-only entry)."""
    config = variant.path / "config.json" if variant.path else None
    if config is None or not config.is_file():
        return "-"
    attention = json.loads(config.read_text()).get("discatt", {}).get("attention", {})
    method = attention.get("method", "none")
    if method == "none":
        return "cross-entropy"
    short = {"pixel": "A_px", "channel": "A_ch"}.get(method, method)
    return f"{short}, {attention.get('normalize', 'max')}"


def _metrics(variant: Variant) -> dict:
    path = variant.path / "metrics.json" if variant.path else None
    return json.loads(path.read_text()) if path and path.is_file() else {}


def _value(metrics: dict, key: str, digits: int = 3) -> str:
    value = metrics.get(key)
    return f"{value:.{digits}f}" if isinstance(value, int | float) and value == value else "-"


def zoo_rows(variants: list[Variant] | None = None) -> list[ZooRow]:
    """One ``ZooRow`` per manifest entry, in manifest order."""
    rows = []
    for variant in load_manifest(MANIFEST) if variants is None else variants:
        metrics = _metrics(variant)
        key = "mAP" if "mAP" in metrics else "top1"
        headline = _value(metrics, key, 4)
        rows.append(
            ZooRow(
                entry=variant.name,
                supervision=_supervision(variant),
                data=variant.dataset,
                metric=f"{'mAP' if key == 'mAP' else 'top-1'} {headline}"
                if headline != "-"
                else "-",
                test_images=str(metrics.get("num_samples", "-")),
                siou_last=_value(metrics, "siou_last"),
                pointing=_value(metrics, "pointing_last"),
                baseline=variant.baseline or "-",
            )
        )
    return rows


def markdown_table(rows: list[ZooRow]) -> str:
    """The README's zoo table (entry names as code)."""
    lines = ["| " + " | ".join(HEADERS) + " |", "| " + " | ".join("---" for _ in HEADERS) + " |"]
    for row in rows:
        cells = list(row.cells())
        cells[0] = f"`{cells[0]}`"
        cells[-1] = f"`{cells[-1]}`" if cells[-1] != "-" else "-"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plain_table(rows: list[ZooRow]) -> str:
    """The terminal table of ``discatt hub list``: columns padded to their widest cell."""
    table = [HEADERS, *(row.cells() for row in rows)]
    widths = [max(len(r[i]) for r in table) for i in range(len(HEADERS))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table
    )
