"""Panels: one PNG per image, the image and a heat-map overlay per top-k class, a row per view.

A ``Panel`` holds ``PanelRow`` s (one per model x method x layer); each row is the model's
input image and its ``K`` top classes with their maps. Rendering stays in torch (resize,
colour lookup, blending, frames) and becomes a Pillow image only at the end, to draw the
titles. The layout has a fixed tile size, so a panel's pixel size is exact
(``panel_size(rows, cols, tile)``)::

    +-----+-----+-----+      cols = 1 + K (the image, then one overlay per class)
    |title|title|title|      each title band is TITLE px high, each tile ``tile`` px square,
    |image|map 1|map 2|      PAD px between tiles and around the border
    +-----+-----+-----+      rows = models x methods x layers

The true class's tile (when a label is given) is framed in green.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from .colors import overlay

__all__ = ["PAD", "TILE", "TITLE", "Panel", "PanelRow", "panel_size"]

TILE = 160  # default tile side in pixels
PAD = 6  # gap between tiles and around the border (the true-class frame is drawn in it)
TITLE = 40  # title band above each tile: three lines of text
_FONT_SIZE = 11
_LINE = 13
_FRAME = 3
_FRAME_RGB = (0.1, 0.75, 0.2)
_TEXT_RGB = (0, 0, 0)


@dataclass(frozen=True)
class PanelRow:
    """One model's view of one image: its input and the maps of its top-k classes.

    ``classes``, ``names`` and ``probs`` have ``K`` entries, best first; ``maps`` is
    ``K x H x W`` in [0, 1] at the input's size (min-max scaled per map). ``label`` is the true
    class index (or None) and ``label_rank`` its 1-based rank among all classes.
    """

    model: str
    method: str
    layer: str
    image: Tensor  # 3 x H x W in [0, 1], the model's input before normalisation
    classes: tuple[int, ...]
    names: tuple[str, ...]
    probs: tuple[float, ...]
    maps: Tensor  # K x H x W in [0, 1]
    label: int | None = None
    label_name: str | None = None
    label_rank: int | None = None

    def __post_init__(self) -> None:
        k = len(self.classes)
        if not (len(self.names) == len(self.probs) == k == self.maps.shape[0]):
            raise ValueError(
                f"row has {k} classes, {len(self.names)} names, {len(self.probs)} probs and "
                f"{self.maps.shape[0]} maps; they must agree"
            )
        if self.image.ndim != 3 or self.image.shape[0] != 3:
            raise ValueError(f"image must be 3 x H x W, got {tuple(self.image.shape)}")


@dataclass(frozen=True)
class Panel:
    """All rows of one image; ``path`` is where ``explain`` saved it (None if not saved)."""

    source: str
    rows: tuple[PanelRow, ...]
    path: Path | None = None

    @property
    def columns(self) -> int:
        """``1 + K``: the image column and one column per class (the widest row)."""
        return 1 + max(len(row.classes) for row in self.rows)

    def render(self, *, tile: int = TILE, cmap: str = "jet", alpha: float = 0.5) -> Image.Image:
        """The panel as an RGB image of size ``panel_size(len(rows), columns, tile)``."""
        return _render(self, tile=tile, cmap=cmap, alpha=alpha)

    def save(
        self, path: str | Path, *, tile: int = TILE, cmap: str = "jet", alpha: float = 0.5
    ) -> Path:
        """Render and write a PNG to ``path`` (parent folders are created); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.render(tile=tile, cmap=cmap, alpha=alpha).save(path, format="PNG")
        return path


def panel_size(rows: int, cols: int, tile: int = TILE) -> tuple[int, int]:
    """``(width, height)`` in pixels of a panel with ``rows`` x ``cols`` tiles."""
    return cols * tile + (cols + 1) * PAD, rows * (TITLE + tile) + (rows + 1) * PAD


def _resize(x: Tensor, tile: int) -> Tensor:
    """``N x C x H x W`` -> ``N x C x tile x tile`` (bilinear, antialiased), clamped to [0, 1]."""
    return F.interpolate(x, size=(tile, tile), mode="bilinear", antialias=True).clamp(0, 1)


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=_FONT_SIZE)
    except (OSError, TypeError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _fit(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont, width: int) -> str:
    """``text`` cut (with '..') to fit ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "..", font=font) > width:
        text = text[:-1]
    return text + ".."


def _image_title(row: PanelRow) -> list[str]:
    lines = [row.model, f"{row.method} @ {row.layer}"]
    if row.label is not None:
        rank = "" if row.label in row.classes else f" (rank {row.label_rank})"
        lines.append(f"true: {row.label_name}{rank}")
    return lines


def _class_title(row: PanelRow, k: int) -> list[str]:
    truth = " (true)" if row.label == row.classes[k] else ""
    return [row.names[k], f"p = {row.probs[k]:.3f}{truth}"]


def _render(panel: Panel, *, tile: int, cmap: str, alpha: float) -> Image.Image:
    if tile < 8:
        raise ValueError(f"tile must be at least 8 pixels, got {tile}")
    cols = panel.columns
    width, height = panel_size(len(panel.rows), cols, tile)
    canvas = torch.ones(3, height, width)
    frame = torch.tensor(_FRAME_RGB)[:, None, None]
    titles: list[tuple[int, int, list[str]]] = []  # x, y, lines
    for r, row in enumerate(panel.rows):
        image = _resize(row.image[None].float().cpu(), tile)
        maps = _resize(row.maps[:, None].float().cpu(), tile)[:, 0]
        tiles = torch.cat([image, overlay(image[0], maps, cmap=cmap, alpha=alpha)])
        top = PAD + r * (TITLE + tile + PAD) + TITLE
        for c, content in enumerate(tiles):
            left = PAD + c * (tile + PAD)
            if c > 0 and row.label == row.classes[c - 1]:
                canvas[
                    :, top - _FRAME : top + tile + _FRAME, left - _FRAME : left + tile + _FRAME
                ] = frame
            canvas[:, top : top + tile, left : left + tile] = content
            lines = _image_title(row) if c == 0 else _class_title(row, c - 1)
            titles.append((left, top - TITLE, lines))

    pixels = (canvas * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous()
    picture = Image.fromarray(pixels.numpy())  # H x W x 3 uint8 -> RGB
    draw, font = ImageDraw.Draw(picture), _font()
    for left, y, lines in titles:
        for i, line in enumerate(lines):
            draw.text(
                (left, y + i * _LINE), _fit(draw, line, font, tile), fill=_TEXT_RGB, font=font
            )
    return picture
