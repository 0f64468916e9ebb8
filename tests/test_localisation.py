"""Localisation metrics on hand-made maps and boxes whose answers are known."""

from __future__ import annotations

import pytest
import torch

from discatt_timm.localisation import box_energy, box_masks, pointing_game


def test_box_masks_take_the_pixels_whose_centres_lie_inside():
    mask = box_masks(torch.tensor([[0.25, 0.5, 0.75, 1.0]]), (4, 4))[0]
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[2:4, 1:3] = True  # rows y in [0.5, 1), columns x in [0.25, 0.75)
    assert torch.equal(mask, expected)
    # the same fractional box on a grid twice as fine covers the same area
    assert int(box_masks(torch.tensor([[0.25, 0.5, 0.75, 1.0]]), (8, 8)).sum()) == 16
    assert int(box_masks(torch.tensor([[0.0, 0.0, 1.0, 1.0]]), (3, 5)).sum()) == 15


def test_pointing_game_hits_misses_and_zero_maps():
    maps = torch.zeros(3, 4, 4)
    maps[0, 2, 1] = 1.0  # inside the box below
    maps[1, 0, 0] = 1.0  # outside
    boxes = torch.tensor([[0.25, 0.5, 0.75, 1.0]] * 3)  # map 2 is all zero
    assert pointing_game(maps, boxes).tolist() == [True, False, False]


def test_box_energy_is_the_share_of_mass_inside():
    maps = torch.zeros(3, 4, 4)
    maps[0, 2:4, 1:3] = 1.0  # all of it inside
    maps[1] = 1.0  # uniform: 4 of 16 pixels inside
    maps[1, 0, 0] = 5.0  # plus 4 more units outside: 4 / 20
    boxes = torch.tensor([[0.25, 0.5, 0.75, 1.0]] * 3)
    energy = box_energy(maps, boxes)
    assert energy.tolist() == pytest.approx([1.0, 4 / 20, 0.0])
    assert box_energy(maps.double(), boxes).dtype == torch.float64


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="maps must be N x H x W and boxes N x 4"):
        pointing_game(torch.zeros(2, 4, 4), torch.zeros(3, 4))


def _box_loader(multilabel: bool, n: int = 6, size: int = 32, classes: int = 4):
    """Random images with fractional boxes per present class (NaN rows for the others)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 3, size, size, generator=g)
    corners = torch.rand(n, classes, 2, generator=g) * 0.5
    boxes = torch.cat([corners, corners + 0.3 + 0.2 * torch.rand(n, classes, 2, generator=g)], -1)
    if multilabel:
        y = torch.zeros(n, classes)
        y[torch.arange(n), torch.arange(n) % classes] = 1
        y[torch.arange(n), (torch.arange(n) + 1) % classes] = 1
        boxes[y == 0] = float("nan")
    else:
        y = torch.arange(n) % classes
        absent = torch.ones(n, classes, dtype=torch.bool)
        absent[torch.arange(n), y] = False
        boxes[absent] = float("nan")
    data = list(zip(x, y, boxes, strict=True))
    return torch.utils.data.DataLoader(data, batch_size=4)


@pytest.mark.parametrize("multilabel", [False, True])
def test_evaluate_localisation_equals_a_per_image_loop(multilabel):
    import timm

    from discatt_timm import DiscriminativeAttentionLoss, attention_maps
    from discatt_timm.attention import resize_maps
    from discatt_timm.evaluation import evaluate

    torch.manual_seed(0)
    model = timm.create_model("cifar_resnet20", num_classes=4).eval()
    loader = _box_loader(multilabel)
    metrics = evaluate(model, loader, multilabel=multilabel, topk=(1,))
    criterion = DiscriminativeAttentionLoss(model, multilabel=multilabel, grad_mode="detached")
    expected: dict[str, list[float]] = {}
    for x, y, boxes in loader:
        confusing = criterion.terms(x, y).confusing
        for i in range(len(x)):
            present = y[i].nonzero().flatten() if multilabel else y[i : i + 1]
            for c in present.tolist():
                for layer in ("inner", "last"):
                    pair = torch.tensor([[c, int(confusing[i])]])
                    maps = attention_maps(model, x[i : i + 1], pair, layer=layer)
                    own, other = resize_maps(maps, (32, 32))[0]
                    box = boxes[i, c][None]
                    values = {
                        "pointing": float(pointing_game(own[None], box)[0]),
                        "energy": float(box_energy(own[None], box)[0]),
                        "confusing_energy": float(box_energy(other[None], box)[0]),
                    }
                    for key, value in values.items():
                        expected.setdefault(f"{key}_{layer}", []).append(value)
    pairs = 12 if multilabel else 6
    assert metrics["localisation_samples"] == pairs
    for key, values in expected.items():
        assert len(values) == pairs
        assert metrics[key] == pytest.approx(sum(values) / pairs, abs=1e-5), key
    assert 0 <= metrics["energy_last"] <= 1 and 0 <= metrics["pointing_last"] <= 1
