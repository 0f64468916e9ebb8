"""Cluttered and multi-garment canvases: determinism, boxes, balance, overlap, no leakage.

The synthetic garments make every pixel traceable: an image of class c holds only values of
class c's band ``[1 + 25c, 25 + 25c]``, odd in the train split and even in the test split. So a
canvas pixel's value tells which class (and split) it came from.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from discatt_timm.data.canvas import clutter_canvases, multi_canvases

CLASSES = 10
BAND = 25


def band_class(values: np.ndarray) -> np.ndarray:
    """The class whose band holds each (non-zero) value."""
    return (values.astype(np.int64) - 1) // BAND


def garments(split: str, per_class: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` images per class: rectangular blobs (one full image, one all-zero image)."""
    rng = np.random.default_rng(seed)
    parity = 1 if split == "train" else 0
    images = np.zeros((CLASSES * per_class, 28, 28), np.uint8)
    labels = np.repeat(np.arange(CLASSES), per_class)
    for i, cls in enumerate(labels):
        values = [v for v in range(1 + BAND * cls, 1 + BAND * (cls + 1)) if v % 2 == parity]
        kind = i % per_class
        if kind == 1:
            continue  # all zero: must never be drawn
        if kind == 0:
            y0, x0, y1, x1 = 0, 0, 28, 28
        else:
            y0, x0 = rng.integers(0, 20, 2)
            y1, x1 = y0 + rng.integers(3, 29 - y0), x0 + rng.integers(3, 29 - x0)
        images[i, y0:y1, x0:x1] = rng.choice(values, (y1 - y0, x1 - x0))
    return images, labels


@pytest.fixture(scope="module")
def train():
    return garments("train")


def tight_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def image_crops(images: np.ndarray) -> list[np.ndarray]:
    """Each non-empty image cut to its tight non-zero box."""
    crops = []
    for image in images:
        if image.any():
            x0, y0, x1, y1 = tight_box(image > 0)
            crops.append(image[y0:y1, x0:x1])
    return crops


# --- clutter -----------------------------------------------------------------------------------


def test_clutter_shapes_and_determinism(train):
    a = clutter_canvases(*train, count=40, seed=3)
    b = clutter_canvases(*train, count=40, seed=3)
    c = clutter_canvases(*train, count=40, seed=4)
    canvases, labels, boxes = a
    assert canvases.shape == (40, 64, 64) and canvases.dtype == np.uint8
    assert labels.shape == (40,) and labels.dtype == np.int64
    assert boxes.shape == (40, 4) and boxes.dtype == np.int64
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(canvases, c[0])


def test_clutter_box_is_the_garment_and_distractors_are_other_classes(train):
    images, labels = train
    canvases, classes, boxes = clutter_canvases(images, labels, count=200, seed=0, size=70)
    crops = {c: image_crops(images[labels == c]) for c in range(CLASSES)}
    with_distractors = 0
    for canvas, cls, (x0, y0, x1, y1) in zip(canvases, classes, boxes, strict=True):
        assert 0 <= x0 < x1 <= 70 and 0 <= y0 < y1 <= 70
        assert x1 - x0 <= 28 and y1 - y0 <= 28
        own = (canvas > 0) & (band_class(canvas) == cls)
        assert tight_box(own) == (x0, y0, x1, y1)  # holds every garment pixel, and tight
        inside = canvas[y0:y1, x0:x1]
        # Nothing but the garment inside its box: it is one of the class's images, whole.
        assert any(c.shape == inside.shape and np.array_equal(c, inside) for c in crops[cls])
        outside = canvas.copy()
        outside[y0:y1, x0:x1] = 0
        values = outside[outside > 0]
        assert not np.isin(band_class(values), [cls]).any()
        with_distractors += values.size > 0
    assert with_distractors >= 190  # 4 crops each, each with a non-zero pixel


def test_clutter_classes_balanced_exactly(train):
    for count in (37, 100, 1001):
        _, classes, _ = clutter_canvases(*train, count=count, seed=1, distractors=0)
        tally = np.bincount(classes, minlength=CLASSES)
        assert tally.max() - tally.min() <= 1 and tally.sum() == count


def solid(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """One image per class with every pixel non-zero, so any crop of it is a solid square."""
    images, labels = garments(split)
    return images[::6], labels[::6]


def test_clutter_fragment_sizes_and_dropping():
    images, labels = solid()
    assert (images > 0).all()
    canvases, classes, boxes = clutter_canvases(
        images, labels, count=30, seed=2, distractors=1, fragment=(5, 5), size=40
    )
    placed = 0
    for canvas, cls, (x0, y0, x1, y1) in zip(canvases, classes, boxes, strict=True):
        assert (band_class(canvas[y0:y1, x0:x1]) == cls).all()  # no crop pixel in the box
        outside = canvas.copy()
        outside[y0:y1, x0:x1] = 0
        if outside.any():
            placed += 1
            bx0, by0, bx1, by1 = tight_box(outside > 0)
            assert (bx1 - bx0, by1 - by0) == (5, 5)
            assert (outside[by0:by1, bx0:bx1] > 0).all()
    assert placed >= 25
    # The garment fills a 28x28 canvas and leaves no room: every distractor is dropped.
    canvases, classes, _ = clutter_canvases(images, labels, count=20, seed=0, size=28)
    for canvas, cls in zip(canvases, classes, strict=True):
        np.testing.assert_array_equal(canvas, images[labels == cls][0])


# --- multi -------------------------------------------------------------------------------------


def test_multi_shapes_and_determinism(train):
    a = multi_canvases(*train, count=30, seed=5)
    b = multi_canvases(*train, count=30, seed=5)
    c = multi_canvases(*train, count=30, seed=6)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1] == b[1]
    for x, y in zip(a[2], b[2], strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])
    assert a[0].shape == (30, 64, 64) and a[0].dtype == np.uint8
    assert all(
        box.dtype == np.int64 and box.shape == (len(k), 4) for k, box in zip(*a[1:], strict=True)
    )


def test_multi_classes_boxes_and_overlap(train):
    images, labels = train
    shapes = {c: {x.shape for x in image_crops(images[labels == c])} for c in range(CLASSES)}
    canvases, classes, boxes = multi_canvases(images, labels, count=200, seed=0)
    assert {len(k) for k in classes} == {2, 3}
    for canvas, cls, box in zip(canvases, classes, boxes, strict=True):
        assert cls == sorted(set(cls)) and all(isinstance(c, int) for c in cls)
        present = np.unique(band_class(canvas[canvas > 0]))
        assert present.tolist() == cls  # no other class on the canvas
        for c, (x0, y0, x1, y1) in zip(cls, box, strict=True):
            bx0, by0, bx1, by1 = tight_box((canvas > 0) & (band_class(canvas) == c))
            assert x0 <= bx0 and y0 <= by0 and bx1 <= x1 and by1 <= y1  # holds every pixel
            assert (y1 - y0, x1 - x0) in shapes[c]  # the tight box of one of its images
            assert min(x0, y0) >= 0 and max(x1, y1) <= 64
        for a, b in itertools.combinations(box, 2):
            w = min(a[2], b[2]) - max(a[0], b[0])
            h = min(a[3], b[3]) - max(a[1], b[1])
            area = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
            assert max(w, 0) * max(h, 0) <= 0.1 * area


def test_multi_classes_balanced(train):
    _, classes, _ = multi_canvases(*train, count=500, seed=2)
    tally = np.bincount([c for k in classes for c in k], minlength=CLASSES)
    assert np.abs(tally - tally.mean()).max() <= 0.1 * tally.mean()


def test_multi_zero_overlap_and_fewer_objects(train):
    _, classes, boxes = multi_canvases(*train, count=50, seed=0, max_overlap=0.0, objects=(1, 3))
    for box in boxes:
        for a, b in itertools.combinations(box, 2):
            assert min(a[2], b[2]) <= max(a[0], b[0]) or min(a[3], b[3]) <= max(a[1], b[1])
    # Only one full garment fits a 28x28 canvas: three are asked for, one is used.
    _, classes, _ = multi_canvases(
        *solid(), count=10, seed=0, size=28, objects=(1, 3), max_overlap=0.0
    )
    assert [len(k) for k in classes] == [1] * 10


# --- both --------------------------------------------------------------------------------------


def test_no_test_pixels_in_train_canvases(train):
    test = garments("test", seed=1)
    for make in (clutter_canvases, multi_canvases):
        train_values = set(np.unique(make(*train, count=100, seed=0)[0]).tolist()) - {0}
        test_values = set(np.unique(make(*test, count=100, seed=0)[0]).tolist()) - {0}
        assert train_values and test_values and not train_values & test_values
        assert all(v % 2 == 1 for v in train_values) and all(v % 2 == 0 for v in test_values)


def test_label_values_are_kept(train):
    images, labels = train
    shifted = labels * 10 + 7
    _, clutter, _ = clutter_canvases(images, shifted, count=20, seed=0)
    _, multi, _ = multi_canvases(images, shifted, count=20, seed=0)
    assert set(clutter.tolist()) <= set(shifted.tolist())
    assert {c for k in multi for c in k} <= set(shifted.tolist())


BAD_COMMON = [
    ({"count": 0}, "count"),
    ({"count": 2.5}, "count"),
    ({"size": 27}, "size"),
    ({"seed": None}, "seed"),
    ({"seed": -1}, "seed"),
    ({"tries": 0}, "tries"),
    ({"images": np.zeros((60, 28, 27), np.uint8)}, "images"),
    ({"images": np.zeros((60, 28, 28), np.float32)}, "images"),
    ({"images": [[0]]}, "images"),
    ({"labels": np.zeros(59, np.int64)}, "labels"),
    ({"labels": np.zeros(60, np.float32)}, "labels"),
]
BAD_CLUTTER = [
    ({"labels": np.zeros(60, np.int64)}, "labels"),  # one class
    ({"fragment": (0, 5)}, "fragment"),
    ({"fragment": (9, 8)}, "fragment"),
    ({"fragment": (8, 29)}, "fragment"),
    ({"fragment": 8}, "fragment"),
    ({"distractors": -1}, "distractors"),
]
BAD_MULTI = [
    ({"labels": np.arange(60) % 2}, "labels"),  # fewer than objects[1] = 3 classes
    ({"objects": (0, 2)}, "objects"),
    ({"objects": (3, 2)}, "objects"),
    ({"max_overlap": 1.5}, "max_overlap"),
    ({"max_overlap": -0.1}, "max_overlap"),
    ({"objects": (3, 3), "size": 28, "max_overlap": 0.0}, "objects"),  # cannot fit
]


@pytest.mark.parametrize(
    ("make", "bad", "name"),
    [(clutter_canvases, b, n) for b, n in BAD_COMMON + BAD_CLUTTER]
    + [(multi_canvases, b, n) for b, n in BAD_COMMON + BAD_MULTI],
)
def test_bad_arguments_raise_one_line_value_errors(train, make, bad, name):
    images, labels = solid() if "size" in bad else train  # solid: "cannot fit" must fail
    kwargs = {"images": images, "labels": labels, "count": 5, "seed": 0}
    kwargs.update(bad)
    with pytest.raises(ValueError, match=name) as err:
        make(kwargs.pop("images"), kwargs.pop("labels"), **kwargs)
    assert "\n" not in str(err.value)


def test_all_zero_class_is_rejected(train):
    images, labels = train
    images = images.copy()
    images[labels == 4] = 0
    for make in (clutter_canvases, multi_canvases):
        with pytest.raises(ValueError, match="images: every image of class 4"):
            make(images, labels, count=5, seed=0)
