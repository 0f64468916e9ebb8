"""``discatt metrics`` / ``attention_report``: equal to a direct per-image computation with the
foundation's functions on a tiny image folder made here; one-line errors."""

from __future__ import annotations

import json

import datasets.config
import huggingface_hub.constants
import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file
from timm.data import create_transform, resolve_data_config

from discatt_timm import attention_maps
from discatt_timm.cli import main
from discatt_timm.evaluation import measure
from discatt_timm.losses import attention_mask, consistency_loss, normalize_maps, soft_iou

pytestmark = pytest.mark.usefixtures("one_thread")

CLASSES = ("ant", "bee", "cat")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """``DIR/test/<class>/*.png``: 3 classes x 4 RGB images whose colour depends on the class."""
    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    for c, name in enumerate(CLASSES):
        (root / "test" / name).mkdir(parents=True)
        for i in range(4):
            pixels = rng.integers(0, 256, (36, 36, 3), dtype=np.uint8)
            pixels[..., c] //= 4
            Image.fromarray(pixels).save(root / "test" / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(3)
    model = timm.create_model("cifar_resnet20", num_classes=len(CLASSES)).eval()
    path = tmp_path_factory.mktemp("weights") / "model.safetensors"
    save_file(model.state_dict(), str(path))
    return model, path


def direct(model, folder):
    """Per image (batch of one, eval mode): maps, masks and losses by the foundation's functions
    (float32: batches of 1 and of 5 differ by ~1e-5 after the sharp omega=100 mask)."""
    transform = create_transform(**resolve_data_config(model=model), is_training=False)
    rows = []
    for c, name in enumerate(CLASSES):
        for path in sorted((folder / "test" / name).glob("*.png")):
            x = transform(Image.open(path).convert("RGB"))[None]
            logits = model(x).detach()
            other = logits.clone()
            other[0, c] = float("-inf")
            confusing = int(other.argmax())
            pair = torch.tensor([[c, confusing]])
            inner, last = (
                attention_maps(model, x, pair, method="pixel", layer=layer)[0]
                for layer in ("inner", "last")
            )  # 2 x h x w each: target, confusing
            zero_confusing_last = bool(last[1].max() <= 0)
            inner, last = normalize_maps(inner), normalize_maps(last)
            mask = attention_mask(last[:1])
            mask_inner = F.interpolate(mask[:, None], size=inner.shape[-2:], mode="bilinear")[:, 0]
            rows.append(
                {
                    "class": c,
                    "predicted": int(logits.argmax()),
                    "siou_inner": soft_iou(inner[:1], inner[1:], mask_inner).item(),
                    "siou_last": soft_iou(last[:1], last[1:], mask).item(),
                    "consistency": consistency_loss(inner[:1], mask_inner).item(),
                    "zero_confusing_last": float(zero_confusing_last),
                }
            )
    return rows


def test_report_equals_a_direct_computation(folder, checkpoint):
    model, _ = checkpoint
    report = measure(model, str(folder), split="test", batch_size=5, top_pairs=3)
    rows = direct(model, folder)
    assert report["num_samples"] == len(rows) == 12
    keys = ("siou_inner", "siou_last", "consistency", "zero_confusing_last")
    for c, name in enumerate(CLASSES):
        mine = [r for r in rows if r["class"] == c]
        got = report["per_class"][c]
        assert (got["class"], got["name"], got["samples"]) == (c, name, 4)
        for key in keys:
            assert got[key] == pytest.approx(np.mean([r[key] for r in mine]), abs=2e-4), key
        assert got["top1"] == pytest.approx(np.mean([r["predicted"] == c for r in mine]))
    for key in keys:
        assert report["overall"][key] == pytest.approx(np.mean([r[key] for r in rows]), abs=2e-4)
    assert 0 < report["overall"]["siou_last"] < 1
    # most-confused pairs: the largest off-diagonal counts of the confusion matrix
    counts: dict[tuple[int, int], int] = {}
    for r in rows:
        if r["predicted"] != r["class"]:
            key = (r["class"], r["predicted"])
            counts[key] = counts.get(key, 0) + 1
    expected = sorted(counts.values(), reverse=True)[:3]
    assert [p["errors"] for p in report["confused_pairs"]] == expected
    for pair in report["confused_pairs"]:
        assert counts[(pair["true"], pair["predicted"])] == pair["errors"]
        assert pair["names"] == [CLASSES[pair["true"]], CLASSES[pair["predicted"]]]


def test_cli_table_and_json(folder, checkpoint, tmp_path, capsys):
    model, path = checkpoint
    out = tmp_path / "report.json"
    argv = ["metrics", "--model", "cifar_resnet20", "--checkpoint", str(path)]
    code = main([*argv, "--data", str(folder), "--json", str(out), "--batch-size", "4"])
    printed = capsys.readouterr().out
    assert code == 0
    saved = json.loads(out.read_text())
    expected = measure(model, str(folder), split="test")
    assert saved["overall"] == pytest.approx(expected["overall"], abs=1e-6)
    assert saved["model"] == "cifar_resnet20" and saved["checkpoint"] == str(path)
    assert "overall" in printed and all(name in printed for name in CLASSES)
    assert f"{saved['overall']['siou_last']:.3f}" in printed


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--data", "NOFOLDER/x"], "NOFOLDER"),
        (["--data", "FOLDER", "--layers", "layer2"], "--layers takes INNER,LAST"),
        (["--data", "FOLDER", "--layers", "layer2,nope"], "nope"),
        (["--data", "FOLDER", "--method", "nope"], "unknown attention method 'nope'"),
        (["--data", "FOLDER", "--max-samples", "0"], "--max-samples must be >= 1"),
        (["--data", "FOLDER", "--top-pairs", "-1"], "--top-pairs must be >= 0"),
        (["--data", "FOLDER", "--device", "nope"], "--device"),
        (["--data", "FOLDER", "--batch-size", "0"], "--batch-size must be >= 1"),
    ],
)
def test_bad_input_is_one_line(folder, checkpoint, capsys, extra, message, monkeypatch):
    # Both libraries read the variables at import, before this test runs: set their copies.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    _, path = checkpoint
    extra = [str(folder) if e == "FOLDER" else e for e in extra]
    code = main(["metrics", "--model", "cifar_resnet20", "--checkpoint", str(path), *extra])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("discatt metrics: error:") and message in err


def test_class_count_mismatch_is_one_line(folder, capsys, tmp_path):
    model = timm.create_model("cifar_resnet20", num_classes=5)
    path = tmp_path / "five.safetensors"
    save_file(model.state_dict(), str(path))
    argv = ["metrics", "--model", "cifar_resnet20", "--checkpoint", str(path)]
    code = main([*argv, "--data", str(folder)])
    err = capsys.readouterr().err
    assert code == 2 and "the model has 5 classes, the data" in err and "has 3" in err
