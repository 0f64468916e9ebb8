"""``discatt compare`` / ``compare``: each column is ``measure``'s report of that model, the
panels show exactly the images one of the two models gets right (oracle: a per-image loop),
and bad input is one line."""

from __future__ import annotations

import json

import pytest
import timm
import torch
from PIL import Image
from support import make_imagefolder
from timm.data import create_transform, resolve_data_config
from timm.models import save_for_hf

from discatt_timm.cli import main
from discatt_timm.compare import Comparison, compare, disagreements, format_comparison
from discatt_timm.evaluation import measure
from discatt_timm.loading import load_model

pytestmark = pytest.mark.usefixtures("one_thread")

CLASSES = ("class0", "class1", "class2")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """``DIR/test/class<c>/*.png``: 3 classes x 4 test images (``support.make_imagefolder``)."""
    return make_imagefolder(tmp_path_factory.mktemp("tiny"), classes=3, per_class=(1, 4), size=32)


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    """Two cifar_resnet20 folders (timm's ``save_for_hf``) from different random inits."""
    dirs = []
    for seed in (0, 5):
        torch.manual_seed(seed)
        model = timm.create_model("cifar_resnet20", num_classes=len(CLASSES)).eval()
        path = tmp_path_factory.mktemp(f"model{seed}")
        save_for_hf(model, str(path))
        dirs.append(path)
    return dirs


def right_per_image(model, folder):
    """Oracle: one image at a time, in the folder's sorted order, top-1 == label."""
    transform = create_transform(**resolve_data_config(model=model), is_training=False)
    right = []
    for c, name in enumerate(CLASSES):
        for path in sorted((folder / "test" / name).glob("*.png")):
            x = transform(Image.open(path).convert("RGB"))[None]
            right.append(bool(model(x).argmax(dim=1).item() == c))
    return torch.tensor(right)


def test_columns_are_measure_reports_and_panels_show_the_disagreements(folder, model_dirs):
    models = {"a": load_model(str(model_dirs[0])), "b": load_model(str(model_dirs[1]))}
    result = compare(models, str(folder), panels=2, batch_size=5)
    for title, model in models.items():
        expected = measure(model, str(folder), batch_size=5)
        assert result.reports[title] == expected  # the same images, maps and numbers
    with torch.no_grad():
        right = [right_per_image(m, folder) for m in models.values()]
    differ = torch.nonzero(right[0] != right[1]).flatten().tolist()
    assert differ, "the two inits should disagree on some image (seeds chosen for it)"
    assert result.images == differ[:2]
    assert len(result.panels) == len(result.images)
    for panel, index in zip(result.panels, result.images, strict=True):
        assert len(panel.rows) == 4  # two models x (inner, last)
        assert {row.label for row in panel.rows} == {index // 4}  # the framed true class
        assert [row.maps.shape[0] for row in panel.rows] == [3] * 4  # top-3


def test_disagreements_takes_the_first_indices_where_exactly_one_is_right():
    a = torch.tensor([True, False, True, True, False, False])
    b = torch.tensor([True, True, False, True, False, True])
    assert disagreements(a, b, 2) == [1, 2]
    assert disagreements(a, b, 10) == [1, 2, 5]
    assert disagreements(a, a, 3) == []


def test_table_rows_follow_the_reports():
    def report(**overall):
        return {
            "data": "d",
            "split": "test",
            "num_samples": 7,
            "method": "pixel",
            "overall": overall,
        }

    single = Comparison({"x": report(top1=0.5, siou_last=0.25), "y": report(top1=0.75)})
    lines = format_comparison(single).splitlines()
    assert lines[0] == "d (test, 7 images, pixel maps)"
    assert lines[1].split() == ["x", "y"]
    assert lines[2].split() == ["top-1", "0.5000", "0.7500"]
    assert lines[3].split() == ["sIoU", "last", "0.250", "-"]
    assert len(lines) == 4  # no mAP, no localisation rows without those keys
    boxes = Comparison({"x": report(mAP=0.9, pointing_last=1.0), "y": report(mAP=0.8)})
    text = format_comparison(boxes)
    assert "top-1" not in text and "pointing game, last" in text and "0.9000" in text


def test_cli_prints_both_columns_and_writes_panels_and_json(folder, model_dirs, tmp_path, capsys):
    out, report = tmp_path / "panels", tmp_path / "r.json"
    argv = ["compare", "--data", str(folder), "--name", "a", "--name", "b", "--panels", "1"]
    argv += ["--model", str(model_dirs[0]), "--model", str(model_dirs[1])]
    assert main([*argv, "--out", str(out), "--json", str(report), "--batch-size", "5"]) == 0
    printed = capsys.readouterr().out
    saved = json.loads(report.read_text())
    top1 = [f"{saved[t]['overall']['top1']:.4f}" for t in ("a", "b")]
    assert next(line for line in printed.splitlines() if line.startswith("top-1")).split() == [
        "top-1",
        *top1,
    ]
    assert len(list(out.glob("test*_explain.png"))) == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--name", "a"], "1 --name for 2 --model"),
        (["--name", "a", "--name", "a"], "column titles must differ"),
        (["--panels", "-1"], "--panels must be >= 0, got -1"),
        (["--max-samples", "0"], "--max-samples must be >= 1, got 0"),
    ],
)
def test_bad_input_is_one_line(folder, model_dirs, capsys, extra, message):
    argv = ["compare", "--data", str(folder), "--model", str(model_dirs[0])]
    argv += ["--model", str(model_dirs[1]), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("discatt compare: error: ") and message in err and "\n" not in err


def test_models_that_always_agree_give_no_panels(folder, model_dirs):
    model = load_model(str(model_dirs[0]))
    result = compare({"a": model, "b": model}, str(folder), panels=3, batch_size=5)
    assert result.images == [] and result.panels == [] and set(result.reports) == {"a", "b"}


def test_one_model_is_refused(folder, model_dirs, capsys):
    assert main(["compare", "--data", str(folder), "--model", str(model_dirs[0])]) == 2
    assert "compare needs two or more --model, got 1" in capsys.readouterr().err


@pytest.fixture
def fashion_models(tmp_path, monkeypatch):
    """Two random cifar_resnet20 (10 classes, 1 channel) and a fake Fashion-MNIST of 8 train /
    12 test images behind the derived boxed data sets (cached under ``tmp_path``)."""
    from support import make_fashion_idx

    idx = make_fashion_idx(tmp_path / "fm", train=8, test=12)
    monkeypatch.setattr("discatt_timm.data.fashion_mnist.FASHION_MNIST_DIR", str(idx))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    models = {}
    for seed in (0, 1):
        torch.manual_seed(seed)
        models[f"m{seed}"] = timm.create_model("cifar_resnet20", num_classes=10, in_chans=1).eval()
    return models


@pytest.mark.parametrize("source", ["fashion_mnist_clutter", "fashion_mnist_multi"])
def test_boxed_and_multilabel_data_get_localisation_rows(fashion_models, source):
    """Data with boxes: the localisation rows appear; multi-label: mAP instead of top-1, and a
    model is right on an image when its positive logits are exactly the present classes."""
    models = fashion_models
    result = compare(models, source, panels=12, batch_size=6)
    text = format_comparison(result)
    assert "pointing game, last" in text and "energy in box, inner" in text
    assert ("mAP" in text) == (source == "fashion_mnist_multi")
    assert ("top-1" in text) == (source == "fashion_mnist_clutter")
    for title, model in models.items():
        assert result.reports[title] == measure(model, source, batch_size=6)
    assert len(result.panels) == len(result.images) <= 12


def _pointing_per_image(model, bundle):
    """Oracle: one image at a time, each present class's last-layer map peaks in its box."""
    from discatt_timm.attention import attention_maps, resize_maps
    from discatt_timm.layers import resolve_layers
    from discatt_timm.localisation import pointing_game

    last = resolve_layers(model).last
    hits = []
    for index in range(len(bundle.eval)):
        x, y, boxes = bundle.eval[index]
        y = torch.as_tensor(y)
        present = (y > 0.5).nonzero().flatten() if y.ndim else y.view(1).long()
        ok = []
        for c in present.tolist():
            maps = attention_maps(model, x[None], torch.tensor([[c]]), method="pixel", layer=last)
            maps = resize_maps(maps, tuple(x.shape[-2:]))[:, 0]
            ok.append(bool(pointing_game(maps, boxes[c][None])[0]))
        hits.append(bool(ok) and all(ok))
    return torch.tensor(hits)


@pytest.mark.parametrize("source", ["fashion_mnist_clutter", "fashion_mnist_multi"])
def test_pick_pointing_draws_where_exactly_one_map_points_into_the_box(fashion_models, source):
    from discatt_timm.compare import pointing_hits
    from discatt_timm.data import eval_data, named_data

    models = fashion_models
    bundle = eval_data(named_data(source), models["m0"])
    hits = [pointing_hits(m, bundle, batch_size=5) for m in models.values()]
    for got, model in zip(hits, models.values(), strict=True):
        assert torch.equal(got, _pointing_per_image(model, bundle))
    result = compare(models, source, panels=12, batch_size=5, pick="pointing")
    assert result.images == disagreements(*hits, 12)
    assert len(result.panels) == len(result.images)
    if source == "fashion_mnist_clutter":  # two random inits point differently on some canvases
        assert len(result.images) > 0


def test_pick_pointing_needs_boxes_and_pick_is_checked(folder, model_dirs, capsys):
    argv = ["compare", "--data", str(folder), "--model", str(model_dirs[0])]
    argv += ["--model", str(model_dirs[1]), "--pick", "pointing"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "pick 'pointing' needs data with boxes" in err and "\n" not in err
    model = load_model(str(model_dirs[0]))
    with pytest.raises(ValueError, match="pick must be one of right, pointing, got 'best'"):
        compare({"a": model, "b": model}, str(folder), pick="best")
