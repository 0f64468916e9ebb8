"""``explain`` panels and the ``discatt explain`` command: layout, top-k, maps and bad input."""

from __future__ import annotations

import functools

import huggingface_hub.constants
import pytest
import safetensors.torch
import timm
import torch
from PIL import Image
from timm.models import save_for_hf

from discatt_timm.cli import EXIT_ERROR, main
from discatt_timm.errors import LoadError
from discatt_timm.explain import (
    ImageConversionWarning,
    class_names,
    explain,
    model_transform,
)
from discatt_timm.loading import load_model
from discatt_timm.viz import PAD, TITLE, panel_size

TILE = 32  # small tiles keep rendering cheap; the layout formula is the same at any size
FRAME_GREEN = (26, 191, 51)  # panels._FRAME_RGB in 8 bits


@functools.cache
def _random_model(name: str, num_classes: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, num_classes=num_classes).eval()


def _image(path, size: tuple[int, int], mode: str = "RGB", seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    channels = len(mode)
    pixels = torch.randint(0, 256, (size[1], size[0], channels), generator=generator)
    Image.fromarray(pixels.to(torch.uint8).squeeze(-1).numpy()).convert(mode).save(path)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Images (RGB, grayscale, not an image) and random-weight checkpoints, made once."""
    root = tmp_path_factory.mktemp("explain")
    out = {
        "rgb": _image(root / "cat.png", (72, 56)),
        "rgb2": _image(root / "dog.jpg", (40, 40), seed=1),
        "gray": _image(root / "gray.png", (40, 48), mode="L", seed=2),
        "text": root / "notes.png",
        "r18": root / "r18.safetensors",
        "c20": root / "c20.safetensors",
        "c20_torch": root / "c20.pth",
    }
    out["text"].write_text("not an image")
    safetensors.torch.save_file(_random_model("resnet18", 7).state_dict(), out["r18"])
    c20 = _random_model("cifar_resnet20", 10)
    safetensors.torch.save_file(c20.state_dict(), out["c20"])
    torch.save({"model": c20.state_dict(), "epoch": 3}, out["c20_torch"])
    return out


def cli(capsys, *argv) -> tuple[int, str, str]:
    """Run ``discatt explain ARGV`` through the CLI's ``main``: (status, out, err)."""
    status = main(["explain", *(str(a) for a in argv)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def png_size(path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def topk_of(model, path, k: int, input_size: int | None = None) -> list[int]:
    """``logits.topk(k)`` of one image through the model's own eval transform."""
    transform, _ = model_transform(model, input_size)
    with Image.open(path) as image, torch.no_grad():
        logits = model(transform(image.convert("RGB"))[None])
    return logits.topk(k).indices[0].tolist()


def test_panel_size_is_exact():
    assert panel_size(1, 1, 10) == (10 + 2 * PAD, TITLE + 10 + 2 * PAD)
    assert panel_size(2, 4, TILE) == (4 * 32 + 5 * 6, 2 * (40 + 32) + 3 * 6) == (158, 162)


def test_resnet18_checkpoint_layer_both(capsys, files, tmp_path):
    status, out, err = cli(
        capsys,
        *("--model", "resnet18", "--checkpoint", files["r18"], files["rgb"], files["rgb2"]),
        *("--layer", "both", "--topk", "3", "--input-size", "64", "--tile-size", TILE),
        *("--out", tmp_path),
    )
    assert status == 0, err
    assert err == ""
    paths = [tmp_path / "cat_explain.png", tmp_path / "dog_explain.png"]
    assert out.splitlines()[0].startswith(str(paths[0]))
    for path in paths:  # rows: inner, last; columns: image + 3 classes
        assert png_size(path) == panel_size(2, 4, TILE) == (158, 162)


def test_python_api_rows_topk_and_maps(files, tmp_path):
    model = _random_model("resnet18", 7)
    panels = explain(
        model,
        [files["rgb"], files["rgb2"]],
        topk=3,
        method="pixel,gradcam",
        layer="both",
        input_size=64,
        out_dir=tmp_path,
        tile=TILE,
    )
    assert [p.path.name for p in panels] == ["cat_explain.png", "dog_explain.png"]
    for panel, path in zip(panels, [files["rgb"], files["rgb2"]], strict=True):
        rows = panel.rows  # model -> method -> layer
        assert [(r.method, r.layer) for r in rows] == [
            ("pixel", "inner (layer3)"),
            ("pixel", "last (layer4)"),
            ("gradcam", "inner (layer3)"),
            ("gradcam", "last (layer4)"),
        ]
        expected = topk_of(model, path, 3, input_size=64)
        for row in rows:
            assert list(row.classes) == expected
            assert row.names == tuple(f"class {c}" for c in expected)
            assert list(row.probs) == sorted(row.probs, reverse=True)
            assert row.maps.shape == (3, 64, 64) and row.image.shape == (3, 64, 64)
            assert torch.isfinite(row.maps).all()
            assert row.maps.min() >= 0 and row.maps.max() <= 1
        assert png_size(panel.path) == panel_size(4, 4, TILE)
    assert not model.training  # mode left as found


def test_convnext_atto_model_object(files, tmp_path):
    model = _random_model("convnext_atto", 5).train()  # explain runs in eval, then restores
    (panel,) = explain(
        model, files["rgb"], topk=5, method=["channel"], input_size=64, out_dir=tmp_path, tile=TILE
    )
    assert model.training
    (row,) = panel.rows
    assert row.layer == "last (stages.3)"
    model.eval()
    assert list(row.classes) == topk_of(model, files["rgb"], 5, input_size=64)
    assert row.maps.shape == (5, 64, 64) and torch.isfinite(row.maps).all()
    assert png_size(panel.path) == panel_size(1, 6, TILE)


def test_cifar_resnet20_compare_and_true_class_frame(capsys, files, tmp_path):
    model = _random_model("cifar_resnet20", 10)
    top = topk_of(model, files["rgb"], 4)
    status, _, err = cli(
        capsys,
        *("--model", "cifar_resnet20", "--checkpoint", files["c20"], files["rgb"]),
        *("--compare", "cifar_resnet20", "--compare-checkpoint", files["c20_torch"]),
        *("--topk", "4", "--tile-size", TILE, "--out", tmp_path, "--label", top[0]),
    )
    assert status == 0, err
    path = tmp_path / "cat_explain.png"
    assert png_size(path) == panel_size(2, 5, TILE)  # a row per model, image + 4 classes
    with Image.open(path) as image:
        for row in range(2):  # the top-1 tile (column 1) of each row is the true class: framed
            top_edge = PAD + row * (TITLE + TILE + PAD) + TITLE
            assert image.getpixel((PAD + TILE + PAD - 2, top_edge + TILE // 2)) == FRAME_GREEN
            assert image.getpixel((PAD + 2 * (TILE + PAD) - 2, top_edge + TILE // 2)) != FRAME_GREEN


def test_run_directory_with_label_names(capsys, files, tmp_path):
    model = _random_model("cifar_resnet20", 10)
    names = [f"thing{i}" for i in range(10)]
    run_dir = tmp_path / "run"
    save_for_hf(model, str(run_dir), model_config={"label_names": names}, safe_serialization=True)
    assert {p.name for p in run_dir.iterdir()} >= {"config.json", "model.safetensors"}
    loaded = load_model(str(run_dir))
    assert class_names(loaded) == names
    top = topk_of(model, files["rgb"], 2)
    (panel,) = explain(loaded, files["rgb"], topk=2, labels=[names[top[1]]])
    assert panel.rows[0].names == tuple(names[c] for c in top)
    assert panel.rows[0].label == top[1] and panel.rows[0].label_rank == 2
    status, out, err = cli(capsys, "--model", run_dir, files["rgb"], "--out", tmp_path / "o")
    assert status == 0, err
    assert "run:" in out


def test_checkpoint_classes_and_names():
    assert class_names(_random_model("cifar_resnet20", 10))[3] == "class 3"
    assert class_names(timm.create_model("resnet10t", pretrained=False))[:2] == [
        "tench",
        "goldfish",
    ]


def test_grayscale_is_converted_and_said_once(capsys, files, tmp_path):
    status, _, err = cli(
        capsys,
        *("--model", "cifar_resnet20", "--checkpoint", files["c20"], files["gray"]),
        *("--compare", "cifar_resnet20", "--compare-checkpoint", files["c20"]),
        *("--topk", "2", "--tile-size", TILE, "--out", tmp_path),
    )
    assert status == 0
    assert err.splitlines() == [
        f"discatt explain: note: {files['gray']}: grayscale image converted to RGB for the model"
    ]
    assert png_size(tmp_path / "gray_explain.png") == panel_size(2, 3, TILE)
    with pytest.warns(ImageConversionWarning, match="grayscale"):
        explain(_random_model("cifar_resnet20", 10), files["gray"], topk=1)


def test_one_channel_model_without_its_own_config_reads_gray(files):
    """A model built with ``in_chans=1`` keeps timm's 3-channel pretrained config: explain
    reads the image as one channel (the stem's), with the config's mean and std averaged."""
    torch.manual_seed(0)
    model = timm.create_model("cifar_resnet20", num_classes=10, in_chans=1).eval()
    with pytest.warns(ImageConversionWarning, match="RGB colour image converted to L"):
        (panel,) = explain(model, files["rgb"], topk=2)
    row = panel.rows[0]
    assert row.maps.shape == (2, 32, 32)
    assert torch.equal(row.image[0], row.image[1]) and torch.equal(row.image[0], row.image[2])


BAD_INPUT = {
    "not an image": (["{text}"], "not an image file"),
    "missing file": (["{dir}/missing.png"], "missing.png: no such file"),
    "unknown model": (
        ["{rgb}", "--model", "resnet-18"],
        "unknown model 'resnet-18' (close matches: resnet18",
    ),
    "missing layer": (["{rgb}", "--layer", "layer9"], "'layer9' is not a submodule"),
    "no feature map": (["{rgb}", "--layer", "fc"], "gives no B x C x H x W feature map"),
    "bad method": (["{rgb}", "--method", "pixel,foo"], "unknown attention method 'foo'"),
    "bad checkpoint": (["{rgb}", "--checkpoint", "{text}"], "cannot read checkpoint"),
    "wrong checkpoint": (["{rgb}", "--checkpoint", "{r18}"], "does not fit cifar_resnet20"),
    "unknown class": (["{rgb}", "--label", "zebra"], "unknown class 'zebra'"),
    "label count": (["{rgb}", "--label", "1", "2"], "2 labels given for 1 images"),
    "topk too big": (["{rgb}", "--topk", "11"], "topk must be in [1, 10]"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_one_line_error(capsys, files, tmp_path, case):
    argv, expected = BAD_INPUT[case]
    names = {k: str(v) for k, v in files.items()} | {"dir": str(tmp_path)}
    argv = [a.format(**names) for a in argv]
    if "--model" not in argv:
        argv += ["--model", "cifar_resnet20"]
    if "--checkpoint" not in argv:
        argv += ["--checkpoint", str(files["c20"])]
    status, out, err = cli(capsys, *argv, "--out", tmp_path)
    assert status == EXIT_ERROR == 2
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert err.startswith("discatt explain: error: ") and expected in err, err
    assert not list(tmp_path.glob("*.png"))


def test_offline_uncached_weights_is_one_line(capsys, files, tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(LoadError, match="cannot get the pretrained weights of 'resnet18'"):
        load_model("resnet18")
    status, _, err = cli(capsys, "--model", "resnet18", files["rgb"], "--out", tmp_path)
    assert status == EXIT_ERROR
    assert len(err.splitlines()) == 1 and "--checkpoint" in err, err
