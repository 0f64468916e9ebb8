"""Models side by side on one data set: the same measured metrics, and panels where they differ.

Python::

    models = {"baseline": load_model("runs/demo_baseline"), "softmax_px": load_model("runs/demo")}
    result = compare(models, "fashion_mnist", panels=3, out_dir="runs/compare")
    print(format_comparison(result))

Command (``discatt_timm.cli.compare``)::

    discatt compare --model runs/demo_baseline --model runs/demo --data fashion_mnist

Each model is measured by ``evaluation.measure`` on the same split (the same images and the
same kind of maps), so the columns compare. The panels show the first ``panels`` images on
which the first two models differ, each with both models' top-k maps at the inner and the last
layer (``explain``). ``pick="right"`` (the default): exactly one of them gets the image right
(single label: its top-1 is the label; multi-label: its positive logits are exactly the present
classes); ``pick="pointing"``, for data with boxes: exactly one of them points into the box
(the last layer's map of the true class peaks inside it; multi-label: every present class's
map inside its own box), where the two models' maps differ most visibly. ``make demo`` prints
and draws its pair with it; the study's panels are picked the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .data import eval_data, named_data
from .data.pipeline import DataBundle
from .errors import ExplainError
from .evaluation import measure
from .explain import explain
from .localisation import localisation_terms
from .viz import Panel

__all__ = [
    "PICKS",
    "Comparison",
    "compare",
    "disagreements",
    "format_comparison",
    "pointing_hits",
    "predictions_right",
]

PICKS = ("right", "pointing")  # what the drawn images differ in (see the module docstring)

# (report key, row label, format) in print order; a row is shown when any model has its key.
ROWS: tuple[tuple[str, str, str], ...] = (
    ("top1", "top-1", "{:.4f}"),
    ("mAP", "mAP", "{:.4f}"),
    ("siou_inner", "sIoU inner", "{:.3f}"),
    ("siou_last", "sIoU last", "{:.3f}"),
    ("consistency", "L_ac", "{:.3f}"),
    ("zero_confusing_last", "zero C maps, last", "{:.3f}"),
    ("pointing_inner", "pointing game, inner", "{:.3f}"),
    ("pointing_last", "pointing game, last", "{:.3f}"),
    ("energy_inner", "energy in box, inner", "{:.3f}"),
    ("energy_last", "energy in box, last", "{:.3f}"),
    ("confusing_energy_last", "confusing energy in box, last", "{:.3f}"),
)


@dataclass(frozen=True)
class Comparison:
    """What ``compare`` measured: ``reports`` (``measure`` per model, in order), the test
    indices drawn and their ``panels``."""

    reports: dict[str, dict[str, Any]]
    images: list[int] = field(default_factory=list)
    panels: list[Panel] = field(default_factory=list)


def _per_image(
    model: nn.Module, bundle: DataBundle, batch_size: int, score: Callable[..., Tensor]
) -> Tensor:
    """``N`` values of ``score(*batch)`` over ``bundle``'s evaluation images, in order, with
    ``model`` in eval mode (its mode is restored) and each batch on the model's device."""
    loader = torch.utils.data.DataLoader(bundle.eval, batch_size=batch_size, shuffle=False)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        return torch.cat([score(*(t.to(device) for t in batch)).cpu() for batch in loader])
    finally:
        model.train(was_training)


def predictions_right(model: nn.Module, bundle: DataBundle, *, batch_size: int = 64) -> Tensor:
    """``N`` booleans: whether ``model`` gets each evaluation image of ``bundle`` right
    (top-1 equal to the label; multi-label: positive logits exactly the present classes)."""

    @torch.no_grad()
    def right(x: Tensor, y: Tensor, *_: Tensor) -> Tensor:
        logits = model(x)
        if bundle.multilabel:
            return ((logits > 0) == (y > 0.5)).all(dim=1)
        return logits.argmax(dim=1) == y

    return _per_image(model, bundle, batch_size, right)


def pointing_hits(
    model: nn.Module, bundle: DataBundle, *, method: str = "pixel", batch_size: int = 64
) -> Tensor:
    """``N`` booleans: whether ``model``'s last-layer map of each evaluation image's true
    class peaks inside that class's box (multi-label: every present class with a box; an image
    without any box is a miss). ``bundle`` must carry boxes (a ``boxes`` column)."""
    if not bundle.eval.boxes:
        raise ExplainError("pick 'pointing' needs data with boxes; use pick 'right' here")

    def hits(x: Tensor, y: Tensor, boxes: Tensor) -> Tensor:
        confusing = torch.zeros(len(x), dtype=torch.long, device=x.device)  # unused here
        scored = localisation_terms(model, x, y, confusing, boxes, method=method)
        scored = scored["pointing_last"].detach()
        known = ~torch.isnan(scored)
        return ((scored == 1) | ~known).all(dim=1) & known.any(dim=1)

    return _per_image(model, bundle, batch_size, hits)


def disagreements(right_a: Tensor, right_b: Tensor, count: int) -> list[int]:
    """The first ``count`` indices where exactly one of two models is right."""
    return torch.nonzero(right_a != right_b).flatten()[:count].tolist()


def _true_class(bundle: DataBundle, index: int) -> int | None:
    """The framed class of a panel: the label, or the first present class (multi-label)."""
    label = bundle.eval.table[index]["label"]
    if isinstance(label, Sequence):  # multi-label tables hold the present classes' indices
        return int(label[0]) if len(label) else None
    return int(label)


def compare(
    models: Mapping[str, nn.Module],
    data: str,
    *,
    split: str = "test",
    method: str = "pixel",
    max_samples: int | None = None,
    batch_size: int = 64,
    panels: int = 3,
    topk: int = 3,
    out_dir: str | Path | None = None,
    pick: str = "right",
) -> Comparison:
    """Measure every model on one split of ``data`` and draw where the first two disagree.

    Args:
        models: ``{title: model}``, two or more, all with the data's classes.
        data: a data name, image folder or Hub id, as for ``discatt metrics``.
        split, method, max_samples, batch_size: as for ``evaluation.measure``.
        panels: how many disagreeing images to draw (0: none).
        topk: classes per panel row.
        out_dir: where the panels are written (``test<index>_<class>_explain.png``).
        pick: what the drawn images differ in: ``right`` (the prediction) or ``pointing``
            (whether the map points into the box; data with boxes).
    """
    if len(models) < 2:
        raise ExplainError(f"compare needs two or more models, got {len(models)}")
    if panels < 0:
        raise ExplainError(f"panels must be >= 0, got {panels}")
    if pick not in PICKS:
        raise ExplainError(f"pick must be one of {', '.join(PICKS)}, got {pick!r}")
    config = named_data(data, split=split, max_samples=max_samples)
    reports = {
        title: measure(
            model, data, split=split, method=method, max_samples=max_samples, batch_size=batch_size
        )
        for title, model in models.items()
    }
    if panels == 0:
        return Comparison(reports)
    first, second = list(models.values())[:2]
    bundle = eval_data(config, first)
    if pick == "pointing":
        scores = [
            pointing_hits(m, bundle, method=method, batch_size=batch_size) for m in (first, second)
        ]
    else:
        scores = [predictions_right(m, bundle, batch_size=batch_size) for m in (first, second)]
    picked = disagreements(*scores, panels)
    if not picked:  # the models agree on every image: nothing to draw
        return Comparison(reports)
    images = [bundle.eval.table[i]["image"] for i in picked]
    labels = [_true_class(bundle, i) for i in picked]
    drawn = explain(
        dict(models),
        images,
        topk=topk,
        method=method,
        layer=["inner", "last"],
        labels=labels,
        multilabel=bundle.multilabel,
        out_dir=None,
    )
    if out_dir is not None:
        drawn = _save(
            drawn,
            picked,
            [bundle.class_names[c] if c is not None else "none" for c in labels],
            Path(out_dir),
        )
    return Comparison(reports, picked, drawn)


def _save(panels: list[Panel], picked: list[int], names: list[str], out_dir: Path) -> list[Panel]:
    out_dir.mkdir(parents=True, exist_ok=True)
    saved = []
    for panel, index, name in zip(panels, picked, names, strict=True):
        stem = f"test{index}_{name.replace('/', '-').replace(' ', '_').lower()}"
        saved.append(Panel(panel.source, panel.rows, panel.save(out_dir / f"{stem}_explain.png")))
    return saved


def format_comparison(result: Comparison) -> str:
    """The measured metrics as a table: one row per metric, one column per model."""
    titles = list(result.reports)
    overall = {t: r["overall"] for t, r in result.reports.items()}
    width = max(12, *(len(t) for t in titles))
    first = next(iter(result.reports.values()))
    head = (
        f"{first['data']} ({first['split']}, {first['num_samples']} images, {first['method']} maps)"
    )
    lines = [head, f"{'':<30}" + "".join(f"{t:>{width + 2}}" for t in titles)]
    for key, label, fmt in ROWS:
        if not any(key in o for o in overall.values()):
            continue
        cells = [fmt.format(o[key]) if key in o else "-" for o in overall.values()]
        lines.append(f"{label:<30}" + "".join(f"{c:>{width + 2}}" for c in cells))
    return "\n".join(lines)
