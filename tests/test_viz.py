"""``viz.colors``: one colour map for panels and the trainer's grid, with or without matplotlib."""

from __future__ import annotations

import sys

import matplotlib
import pytest
import torch

from discatt_timm.errors import UserError
from discatt_timm.viz import colorize, colors, jet_table, overlay


@pytest.fixture
def fresh_tables():
    colors._lut.cache_clear()
    yield
    colors._lut.cache_clear()


def test_the_builtin_jet_is_matplotlibs():
    cmap = matplotlib.colormaps["jet"]
    expected = torch.tensor(cmap(list(range(cmap.N))), dtype=torch.float32)[:, :3]
    assert jet_table().shape == (256, 3)
    torch.testing.assert_close(jet_table(), expected, rtol=0, atol=1e-6)


def test_without_matplotlib_jet_still_works_and_others_say_what_to_install(
    fresh_tables, monkeypatch
):
    maps = torch.rand(2, 5, 7, generator=torch.Generator().manual_seed(0))
    with_matplotlib = colorize(maps)
    colors._lut.cache_clear()
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now fails
    without = colorize(maps)
    assert without.shape == (2, 3, 5, 7)
    torch.testing.assert_close(without, with_matplotlib, rtol=0, atol=1e-6)
    with pytest.raises(UserError, match="colour map 'viridis' needs matplotlib: pip install"):
        colorize(maps, "viridis")


def test_overlay_blends_and_unknown_maps_are_one_line(fresh_tables):
    image = torch.full((3, 4, 4), 0.5)
    maps = torch.zeros(2, 4, 4)
    out = overlay(image, maps, alpha=0.25)
    assert out.shape == (2, 3, 4, 4)
    torch.testing.assert_close(out, 0.75 * 0.5 + 0.25 * colorize(maps))
    with pytest.raises(UserError, match="unknown colour map 'nope'"):
        colorize(maps, "nope")
