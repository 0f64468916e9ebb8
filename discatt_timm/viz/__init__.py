"""Pictures of attention: one colour map (``colors``), explain panels (``panels``) and the
trainer's attention grid (``grid``). Rendering stays in torch until the final PIL image."""

from .colors import colorize, jet_table, overlay
from .grid import save_attention_grid
from .panels import PAD, TILE, TITLE, Panel, PanelRow, panel_size

__all__ = [
    "PAD",
    "TILE",
    "TITLE",
    "Panel",
    "PanelRow",
    "colorize",
    "jet_table",
    "overlay",
    "panel_size",
    "save_attention_grid",
]
