"""``fashion_mnist_clutter`` / ``fashion_mnist_multi``: cached tables with boxes, through the
data pipeline, the trainer's evaluation and ``discatt metrics``."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from support import make_fashion_idx

from discatt_timm.cli import main
from discatt_timm.config import DataConfig
from discatt_timm.data import build_data, eval_data, load_splits
from discatt_timm.errors import DataError, RecipeError
from discatt_timm.evaluation import evaluate


@pytest.fixture(scope="module")
def idx(tmp_path_factory):
    return make_fashion_idx(tmp_path_factory.mktemp("fm"), train=40, test=20)


def _cfg(idx, tmp_path, source: str, **extra) -> DataConfig:
    return DataConfig(
        source=source,
        path=str(idx),
        cache_dir=str(tmp_path / "cache"),
        multilabel=source == "fashion_mnist_multi",
        image_size=32,
        num_workers=0,
        **extra,
    )


@pytest.mark.parametrize("source", ["fashion_mnist_clutter", "fashion_mnist_multi"])
def test_tables_are_cached_deterministic_and_boxed(idx, tmp_path, source):
    cfg = _cfg(idx, tmp_path, source)
    splits = load_splits(cfg)
    assert (len(splits.train), len(splits.eval)) == (40, 20)  # one canvas per source image
    assert splits.class_names[0] == "T-shirt/top" and splits.multilabel == cfg.multilabel
    again = load_splits(cfg)  # from the cache
    assert again.train[3]["boxes"] == splits.train[3]["boxes"]
    assert np.array_equal(np.asarray(again.train[3]["image"]), np.asarray(splits.train[3]["image"]))
    other = load_splits(_cfg(idx, tmp_path, source, split_seed=1))
    assert other.train[0]["boxes"] != splits.train[0]["boxes"]  # another generator seed
    for row in splits.eval:
        image = np.asarray(row["image"])
        assert image.shape == (64, 64)
        labels = row["label"] if cfg.multilabel else [row["label"]]
        assert len(row["boxes"]) == len(labels) >= 1
        for x0, y0, x1, y1 in row["boxes"]:
            assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1


def test_the_eval_pipeline_returns_boxes_and_keeps_them_on_the_object(idx, tmp_path):
    cfg = _cfg(idx, tmp_path, "fashion_mnist_clutter")
    model = timm.create_model("cifar_resnet20", num_classes=10, in_chans=1)
    bundle = build_data(cfg, model, load_splits(cfg))
    assert bundle.data_config["crop_pct"] == 1.0  # a plain resize: boxes stay on the garment
    x, y, boxes = bundle.eval[0]
    assert x.shape == (1, 32, 32) and boxes.shape == (10, 4)
    assert torch.isnan(boxes).any(dim=1).sum() == 9 and not torch.isnan(boxes[y]).any()
    assert len(bundle.train[0]) == 2  # training batches carry no boxes
    with pytest.raises(DataError, match="data.crop_pct=0.875 would crop images"):
        build_data(
            _cfg(idx, tmp_path, "fashion_mnist_clutter", crop_pct=0.875), model, load_splits(cfg)
        )
    with pytest.raises(RecipeError, match="must be true for data.source 'fashion_mnist_multi'"):
        DataConfig(source="fashion_mnist_multi")


@pytest.mark.parametrize("source", ["fashion_mnist_clutter", "fashion_mnist_multi"])
def test_evaluation_and_metrics_report_localisation(idx, tmp_path, source, capsys, monkeypatch):
    cfg = _cfg(idx, tmp_path, source)
    torch.manual_seed(0)
    model = timm.create_model("cifar_resnet20", num_classes=10, in_chans=1).eval()
    bundle = eval_data(cfg, model)
    loader = torch.utils.data.DataLoader(bundle.eval, batch_size=8)
    metrics = evaluate(model, loader, multilabel=cfg.multilabel, topk=(1,))
    pairs = sum(len(r["boxes"]) for r in bundle.eval.table)
    assert metrics["localisation_samples"] == pairs
    for key in ("pointing", "energy", "confusing_energy"):
        assert 0 <= metrics[f"{key}_inner"] <= 1 and 0 <= metrics[f"{key}_last"] <= 1
    # discatt metrics names the same data by name (the IDX files of data.path's default place
    # are replaced by the tiny ones through the cache folder the command reads)
    monkeypatch.setattr("discatt_timm.data.fashion_mnist.FASHION_MNIST_DIR", str(idx))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    path = tmp_path / "c20.safetensors"
    from safetensors.torch import save_file

    save_file(model.state_dict(), str(path))
    code = main(
        ["metrics", "--model", "cifar_resnet20", "--checkpoint", str(path), "--data", source]
    )
    out = capsys.readouterr().out
    assert code == 0 and "localisation, inner / last" in out
    assert f"{metrics['pointing_inner']:.3f} / {metrics['pointing_last']:.3f}" in out
