"""Seeded generators of two derived Fashion-MNIST datasets: cluttered and multi-garment canvases.

Attention supervision needs images where *where* the object is matters and is known. Plain
Fashion-MNIST centres one garment on an empty 28x28 background, so every attention map looks
right. These generators paste garments onto bigger canvases and return the box of each one:

* ``clutter_canvases`` -- the classic cluttered-MNIST construction: one whole garment at a
  random place plus small crops of garments of *other* classes (distractors) that never touch
  the garment's box. The label is the garment's class, the box its tight non-zero box.
* ``multi_canvases`` -- two or three garments of distinct classes that barely overlap, with
  the sorted class list (a multi-label target) and one box per class.

Both take the raw arrays (``N x 28 x 28`` uint8 images, ``N`` integer labels) from the caller,
use only numpy, and draw everything from ``np.random.default_rng(seed)``: the same inputs and
seed give identical arrays. Build train canvases from train images and test canvases from test
images, so that no test pixel leaks into training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["clutter_canvases", "multi_canvases"]

GARMENT = 28  # side of a Fashion-MNIST image
_MAX_RESAMPLES = 100  # whole-canvas redraws in multi_canvases before giving up


@dataclass(frozen=True)
class _Garments:
    """The images grouped by class, with each image's tight non-zero box ``(x0, y0, x1, y1)``."""

    images: np.ndarray  # N x 28 x 28 uint8
    classes: np.ndarray  # C distinct label values, sorted
    boxes: np.ndarray  # N x 4 int64, relative to the image
    pools: tuple[np.ndarray, ...]  # per class index: indices of its non-empty images

    def pick(self, rng: np.random.Generator, cls: int) -> int:
        """Index of a random non-empty image of class index ``cls``."""
        pool = self.pools[cls]
        return int(pool[rng.integers(len(pool))])


def _int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def _int_range(name: str, value: object, low: int, high: int) -> tuple[int, int]:
    ok = isinstance(value, tuple | list) and len(value) == 2
    ok = ok and all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in value)
    if not ok or not low <= value[0] <= value[1] <= high:
        raise ValueError(
            f"{name} must be a pair (lo, hi) of ints, {low} <= lo <= hi <= {high}; got {value!r}"
        )
    return int(value[0]), int(value[1])


def _garments(images: object, labels: object, min_classes: int, why: str) -> _Garments:
    """Validate the raw arrays and group the non-empty images by class."""
    if not (
        isinstance(images, np.ndarray)
        and images.dtype == np.uint8
        and images.ndim == 3
        and images.shape[1:] == (GARMENT, GARMENT)
        and len(images) > 0
    ):
        got = (getattr(images, "shape", None), getattr(images, "dtype", type(images).__name__))
        raise ValueError(f"images must be a non-empty N x 28 x 28 uint8 array, got {got}")
    labels = np.asarray(labels)
    if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"labels must be {len(images)} integers (one per image), "
            f"got shape {labels.shape} dtype {labels.dtype}"
        )
    classes, inverse = np.unique(labels, return_inverse=True)
    if len(classes) < min_classes:
        raise ValueError(
            f"labels must hold at least {min_classes} distinct classes ({why}), got {len(classes)}"
        )
    rows, cols = images.any(axis=2), images.any(axis=1)  # N x 28 each
    nonempty = rows.any(axis=1)
    boxes = np.stack(
        [
            cols.argmax(1),
            rows.argmax(1),
            GARMENT - cols[:, ::-1].argmax(1),
            GARMENT - rows[:, ::-1].argmax(1),
        ],
        1,
    )
    pools = tuple(np.flatnonzero((inverse == c) & nonempty) for c in range(len(classes)))
    for cls, pool in zip(classes, pools, strict=True):
        if len(pool) == 0:
            raise ValueError(
                f"images: every image of class {cls} is all zero; each class needs a non-zero image"
            )
    return _Garments(images, classes, boxes.astype(np.int64), pools)


def _crop(rng: np.random.Generator, image: np.ndarray, side: int) -> np.ndarray:
    """A ``side x side`` crop of ``image`` holding at least one non-zero pixel.

    Anchored at a uniformly drawn non-zero pixel, then placed uniformly among the crops holding
    it, so it never needs rejection however small the garment is.
    """
    flat = np.flatnonzero(image)
    r, c = divmod(int(flat[rng.integers(len(flat))]), GARMENT)
    top = rng.integers(max(0, r - side + 1), min(r, GARMENT - side) + 1)
    left = rng.integers(max(0, c - side + 1), min(c, GARMENT - side) + 1)
    return image[top : top + side, left : left + side]


def _paste(canvas: np.ndarray, patch: np.ndarray, x: int, y: int) -> None:
    """``np.maximum`` ``patch`` into ``canvas`` with its top-left corner at ``(x, y)``."""
    h, w = patch.shape
    region = canvas[y : y + h, x : x + w]
    np.maximum(region, patch, out=region)


def _clutter_one(
    rng: np.random.Generator,
    g: _Garments,
    cls: int,
    canvas: np.ndarray,
    distractors: int,
    fragment: tuple[int, int],
    tries: int,
) -> np.ndarray:
    """Fill the zeroed ``canvas`` with one garment of class index ``cls``; return its box."""
    size = canvas.shape[0]
    idx = g.pick(rng, cls)
    x, y = (int(v) for v in rng.integers(0, size - GARMENT + 1, 2))
    _paste(canvas, g.images[idx], x, y)
    box = g.boxes[idx] + np.array([x, y, x, y])
    x0, y0, x1, y1 = (int(v) for v in box)
    n = len(g.classes)
    for _ in range(distractors):
        other = (cls + int(rng.integers(1, n))) % n
        side = int(rng.integers(fragment[0], fragment[1] + 1))
        patch = _crop(rng, g.images[g.pick(rng, other)], side)
        px, py = rng.integers(0, size - side + 1, (2, tries))
        free = (px + side <= x0) | (px >= x1) | (py + side <= y0) | (py >= y1)
        if free.any():
            first = int(free.argmax())
            _paste(canvas, patch, int(px[first]), int(py[first]))
    return box


def clutter_canvases(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    count: int,
    seed: int,
    size: int = 64,
    distractors: int = 4,
    fragment: tuple[int, int] = (8, 12),
    tries: int = 20,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cluttered canvases: one whole garment plus crops of other classes' garments.

    Args:
        images: ``N x 28 x 28`` uint8 garments; labels: ``N`` integer classes (>= 2 distinct).
        count: canvases to make; seed: the only source of randomness.
        size: canvas side (>= 28); distractors: crops per canvas (>= 0).
        fragment: inclusive range ``(lo, hi)`` of a crop's side, ``1 <= lo <= hi <= 28``; each
            crop comes from a random image of another class and holds a non-zero pixel.
        tries: random positions tried per crop; a crop that cannot avoid the garment's box in
            that many is dropped.

    Returns:
        ``(canvases, labels, boxes)``: ``count x size x size`` uint8; ``count`` int64 label
        values, each class ``count // C`` or ``count // C + 1`` times; ``count x 4`` int64
        ``(x0, y0, x1, y1)`` (x1, y1 exclusive), the tight box of the garment's non-zero
        pixels on the canvas. No crop intersects that box; all-zero images are never drawn.
    """
    g = _garments(images, labels, 2, "a distractor comes from another class")
    count, size = _int("count", count, 1), _int("size", size, GARMENT)
    distractors, tries = _int("distractors", distractors, 0), _int("tries", tries, 1)
    fragment = _int_range("fragment", fragment, 1, GARMENT)
    seed = _int("seed", seed, 0)
    rng = np.random.default_rng(seed)
    order = rng.permutation(np.arange(count) % len(g.classes))
    canvases = np.zeros((count, size, size), np.uint8)
    boxes = np.empty((count, 4), np.int64)
    for i, cls in enumerate(order):
        boxes[i] = _clutter_one(rng, g, int(cls), canvases[i], distractors, fragment, tries)
    return canvases, g.classes[order].astype(np.int64), boxes


def _area(boxes: np.ndarray) -> np.ndarray:
    """Areas of ``... x 4`` boxes ``(x0, y0, x1, y1)``."""
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def _place(
    rng: np.random.Generator,
    rel: np.ndarray,
    placed: list[np.ndarray],
    size: int,
    max_overlap: float,
    tries: int,
) -> tuple[int, int] | None:
    """A top-left corner where the box ``rel`` (relative to the image) overlaps each ``placed``
    box by at most ``max_overlap`` of the smaller one's area, or ``None`` after ``tries``."""
    xy = rng.integers(0, size - GARMENT + 1, (tries, 2))
    if not placed:
        return int(xy[0, 0]), int(xy[0, 1])
    cand = (rel[None, :] + np.concatenate([xy, xy], axis=1))[:, None, :]  # tries x 1 x 4
    other = np.stack(placed)[None, :, :]  # 1 x P x 4
    w = np.minimum(cand[..., 2], other[..., 2]) - np.maximum(cand[..., 0], other[..., 0])
    h = np.minimum(cand[..., 3], other[..., 3]) - np.maximum(cand[..., 1], other[..., 1])
    inter = np.clip(w, 0, None) * np.clip(h, 0, None)  # tries x P
    ok = (inter <= max_overlap * np.minimum(_area(rel), _area(other))).all(axis=1)
    if not ok.any():
        return None
    first = int(ok.argmax())
    return int(xy[first, 0]), int(xy[first, 1])


def _multi_one(
    rng: np.random.Generator,
    g: _Garments,
    usage: np.ndarray,
    canvas: np.ndarray,
    objects: tuple[int, int],
    max_overlap: float,
    tries: int,
) -> tuple[list[int], np.ndarray] | None:
    """Garments of distinct least-used classes on the zeroed ``canvas``; ``None`` if fewer than
    ``objects[0]`` fit (``canvas`` is then dirty). Returns class indices (sorted) and boxes."""
    k = int(rng.integers(objects[0], objects[1] + 1))
    chosen = np.lexsort((rng.random(len(usage)), usage))[:k]  # least used, random ties
    placed: dict[int, np.ndarray] = {}
    for cls in chosen:
        idx = g.pick(rng, int(cls))
        rel = g.boxes[idx]
        at = _place(rng, rel, list(placed.values()), canvas.shape[0], max_overlap, tries)
        if at is not None:
            _paste(canvas, g.images[idx], *at)
            placed[int(cls)] = rel + np.array([at[0], at[1], at[0], at[1]])
    if len(placed) < objects[0]:
        return None
    order = sorted(placed)
    return order, np.stack([placed[c] for c in order]).astype(np.int64)


def multi_canvases(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    count: int,
    seed: int,
    size: int = 64,
    objects: tuple[int, int] = (2, 3),
    max_overlap: float = 0.1,
    tries: int = 50,
) -> tuple[np.ndarray, list[list[int]], list[np.ndarray]]:
    """Multi-garment canvases: a few whole garments of distinct classes that barely overlap.

    Args:
        images: ``N x 28 x 28`` uint8 garments; labels: ``N`` integer classes (at least
            ``objects[1]`` distinct).
        count: canvases to make; seed: the only source of randomness; size: canvas side (>= 28).
        objects: inclusive range ``(lo, hi)`` of garments per canvas, ``1 <= lo <= hi``.
        max_overlap: in ``[0, 1]``; for every pair of garments the intersection of their tight
            boxes is at most this fraction of the smaller box's area.
        tries: random positions tried per garment; one that does not fit is left out, and a
            canvas left with fewer than ``lo`` garments is drawn again.

    Returns:
        ``(canvases, classes, boxes)``: ``count x size x size`` uint8; per canvas the sorted
        list of its distinct label values (``lo..hi`` of them); per canvas a ``k x 4`` int64
        array whose row j is the tight non-zero box ``(x0, y0, x1, y1)`` (x1, y1 exclusive) of
        the garment of the j-th class. Each canvas takes the least-used classes so far (random
        tie-breaking), so every class appears about equally often over the canvases.
    """
    objects = _int_range("objects", objects, 1, np.iinfo(np.int64).max)
    g = _garments(images, labels, objects[1], f"objects[1]={objects[1]} distinct per canvas")
    count, size = _int("count", count, 1), _int("size", size, GARMENT)
    tries, seed = _int("tries", tries, 1), _int("seed", seed, 0)
    if (
        isinstance(max_overlap, bool)
        or not isinstance(max_overlap, int | float | np.floating)
        or not 0 <= max_overlap <= 1
    ):
        raise ValueError(f"max_overlap must be a number in [0, 1], got {max_overlap!r}")
    rng = np.random.default_rng(seed)
    usage = np.zeros(len(g.classes), np.int64)
    canvases = np.zeros((count, size, size), np.uint8)
    classes: list[list[int]] = []
    boxes: list[np.ndarray] = []
    for i in range(count):
        for _ in range(_MAX_RESAMPLES):
            canvases[i] = 0
            drawn = _multi_one(rng, g, usage, canvases[i], objects, max_overlap, tries)
            if drawn is not None:
                break
        else:
            raise ValueError(
                f"objects[0]={objects[0]} garments do not fit on a size={size} "
                f"canvas with max_overlap={max_overlap}; raise size or max_overlap"
            )
        usage[drawn[0]] += 1
        classes.append([int(g.classes[c]) for c in drawn[0]])
        boxes.append(drawn[1])
    return canvases, classes, boxes
