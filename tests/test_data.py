"""Data: sources normalised to image/label datasets, the paper's protocols, seeded transforms."""

from __future__ import annotations

import random

import numpy as np
import pytest
import timm
import torch
from support import (
    make_caltech,
    make_cub,
    make_fashion_idx,
    make_imagefolder,
    make_parquet,
    make_voc,
    write_idx,
)

from discatt_timm.config import DataConfig
from discatt_timm.data import (
    FASHION_MNIST_CLASSES,
    DataError,
    DatasetNotFoundError,
    build_data,
    build_loaders,
    build_transforms,
    caltech256_split,
    load_fashion_mnist,
    load_splits,
    read_idx,
)
from discatt_timm.data import fashion_mnist as fashion_mnist_module


def test_read_idx_plain_and_gzip(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    for name in ("a-idx3-ubyte", "a-idx3-ubyte.gz"):
        write_idx(tmp_path / name, array)
        assert np.array_equal(read_idx(tmp_path / name), array)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(DataError, match="not an unsigned-byte IDX file"):
        read_idx(tmp_path / "bad")


def test_fashion_mnist_from_idx_files_is_converted_once(tmp_path):
    root = make_fashion_idx(tmp_path / "fm", train=20, test=10)
    cache = tmp_path / "cache"
    dd = load_fashion_mnist(str(root), str(cache))
    assert len(dd["train"]) == 20 and len(dd["test"]) == 10
    assert dd["train"].features["label"].names == list(FASHION_MNIST_CLASSES)
    sample = dd["train"][3]
    assert sample["image"].size == (28, 28) and sample["image"].mode == "L"
    assert sample["label"] == 3
    expected = read_idx(root / "train-images-idx3-ubyte.gz")[3]
    assert np.array_equal(np.asarray(sample["image"]), expected)
    cached = sorted(p.name for p in cache.iterdir())
    assert len(cached) == 1 and cached[0].startswith("fashion_mnist-")
    again = load_fashion_mnist(str(root), str(cache))  # from the cache
    assert again["test"]["label"] == dd["test"]["label"]


def test_fashion_mnist_missing_names_the_apt_step(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise DatasetNotFoundError("no network") from ConnectionError("offline")

    monkeypatch.setattr(fashion_mnist_module, "load_hub", offline)
    with pytest.raises(DatasetNotFoundError) as info:
        load_fashion_mnist(str(tmp_path / "nowhere"), str(tmp_path / "cache"))
    message = str(info.value)
    assert "apt-get install -y dataset-fashion-mnist" in message
    assert "zalando-datasets/fashion_mnist" in message and "\n" not in message


def test_fashion_mnist_falls_back_to_the_hub(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(
        fashion_mnist_module, "load_hub", lambda path, *a, **k: calls.append(path) or "hub"
    )
    assert load_fashion_mnist(str(tmp_path / "nowhere")) == "hub"
    assert calls == ["zalando-datasets/fashion_mnist"]


def test_caltech256_split_protocol():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(256), rng.integers(80, 120, 256))
    train, test = caltech256_split(labels, train_per_class=60, test_per_class=25, seed=1)
    assert not set(train) & set(test)
    train_counts = np.bincount(labels[train], minlength=256)
    test_counts = np.bincount(labels[test], minlength=256)
    assert (train_counts == 60).all()
    per_class = np.bincount(labels, minlength=256)
    assert (test_counts == np.minimum(25, per_class - 60)).all()
    rest = caltech256_split(labels, train_per_class=60, test_per_class=None, seed=1)[1]
    assert len(rest) == len(labels) - 60 * 256  # test_per_class=None: all the rest
    assert caltech256_split(labels, train_per_class=60, test_per_class=25, seed=1) == (train, test)
    assert caltech256_split(labels, train_per_class=60, test_per_class=25, seed=2)[0] != train
    with pytest.raises(DataError, match="leaves none for testing"):
        caltech256_split([0, 0, 1, 1], train_per_class=2)


def test_caltech256_source_removes_clutter(tmp_path):
    top = make_caltech(tmp_path, classes=3, per_class=5)
    cfg = DataConfig(
        source="caltech256",
        path=str(tmp_path),  # the parent of 256_ObjectCategories works too
        train_per_class=3,
        test_per_class=1,
        drop_classes=("257.clutter",),
    )
    splits = load_splits(cfg)
    assert splits.class_names == ("001.thing0", "002.thing1", "003.thing2")
    assert len(splits.train) == 9 and len(splits.eval) == 3
    assert sorted(set(splits.train["label"])) == [0, 1, 2]
    assert not any("clutter" in row["image"].filename for row in splits.eval)
    with pytest.raises(DataError, match="did you mean '257.clutter'"):
        load_splits(
            DataConfig(
                source="caltech256", path=str(top), train_per_class=2, drop_classes=("257.cluter",)
            )
        )


def test_cub200_official_split(tmp_path):
    make_cub(tmp_path, classes=3, per_class=4)
    splits = load_splits(DataConfig(source="cub200", path=str(tmp_path / "CUB_200_2011")))
    assert splits.class_names == ("001.Bird_0", "002.Bird_1", "003.Bird_2")
    assert len(splits.train) == 6 and len(splits.eval) == 6  # even images train, odd test
    assert splits.train["label"] == [0, 0, 1, 1, 2, 2]


def test_voc2012_multi_hot_targets(tmp_path):
    top = make_voc(tmp_path, per_split=8)
    cfg = DataConfig(source="voc2012", path=str(top), multilabel=True, eval_split="val")
    splits = load_splits(cfg)
    assert splits.num_classes == 20 and splits.multilabel
    assert len(splits.train) == 8 and len(splits.eval) == 8
    model = timm.create_model("resnet18", num_classes=20)
    bundle = build_data(cfg, model, splits)
    for k in range(8):
        x, y = bundle.eval[k]
        assert y.shape == (20,) and y.dtype == torch.float32
        assert set(torch.nonzero(y).flatten().tolist()) == {k % 20, (k + 3) % 20}  # 0 = present


def test_hub_source_detects_and_renames_columns(tmp_path):
    root = make_parquet(tmp_path / "hub", image_column="img", label_column="fine_label", classes=4)
    splits = load_splits(DataConfig(source="hub", path=str(root)))
    assert splits.train.column_names == ["image", "label"]
    assert splits.class_names == ("c0", "c1", "c2", "c3")
    with pytest.raises(DataError, match="no label column 'coarse'.*columns: img, fine_label"):
        load_splits(DataConfig(source="hub", path=str(root), label_column="coarse"))
    with pytest.raises(DataError, match="has no split 'validation'; splits: "):
        load_splits(DataConfig(source="hub", path=str(root), eval_split="validation"))


def test_imagefolder_source_and_subsets(tmp_path):
    root = make_imagefolder(tmp_path / "folder", classes=3, per_class=(8, 4))
    cfg = DataConfig(source="imagefolder", path=str(root), max_train_samples=10, split_seed=3)
    splits = load_splits(cfg)
    assert len(splits.train) == 10 and len(splits.eval) == 12
    assert splits.class_names == ("class0", "class1", "class2")
    again = load_splits(cfg)
    assert again.train["label"] == splits.train["label"]
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        load_splits(DataConfig(source="imagefolder", path=str(tmp_path / "missing")))


def test_missing_protocol_data_says_where_to_get_it(tmp_path):
    for source, extra in (("cub200", {}), ("voc2012", {"multilabel": True})):
        with pytest.raises(DatasetNotFoundError, match="download"):
            load_splits(DataConfig(source=source, path=str(tmp_path), **extra))
    with pytest.raises(DatasetNotFoundError, match="data.caltech.edu"):
        load_splits(DataConfig(source="caltech256", path=str(tmp_path / "x"), train_per_class=3))


def test_transforms_follow_the_model_and_recipe():
    model = timm.create_model("cifar_resnet20", in_chans=1, num_classes=10)
    cfg = DataConfig(source="fashion_mnist", image_size=28, augment="pad_crop")
    train_tf, eval_tf, config = build_transforms(cfg, model)
    assert config["input_size"] == (1, 28, 28)
    assert len(config["mean"]) == 1  # the 3-channel CIFAR mean is averaged for 1 channel
    from PIL import Image

    image = Image.new("L", (28, 28), 128)
    assert train_tf(image).shape == eval_tf(image).shape == (1, 28, 28)
    squash = DataConfig(source="cub200", image_size=64, crop_pct=1.0, crop_mode="squash")
    _, eval_tf, _ = build_transforms(squash, timm.create_model("resnet18"))
    assert eval_tf(Image.new("RGB", (100, 50))).shape == (3, 64, 64)


def test_augmentation_is_seeded_per_sample_and_epoch(tmp_path):
    root = make_imagefolder(tmp_path / "folder", classes=2, per_class=(4, 2))
    cfg = DataConfig(source="imagefolder", path=str(root), image_size=24, augment="timm")
    model = timm.create_model("resnet18", num_classes=2)
    bundle = build_data(cfg, model, load_splits(cfg), seed=7)
    torch.manual_seed(123)
    random.seed(123)
    before = (torch.rand(1), random.random())
    torch.manual_seed(123)
    random.seed(123)
    first = bundle.train[1][0]
    after = (torch.rand(1), random.random())
    assert before == after  # the global RNGs are left as found
    assert torch.equal(bundle.train[1][0], first)
    bundle.train.set_epoch(1)
    assert not torch.equal(bundle.train[1][0], first)
    bundle.train.set_epoch(0)
    assert torch.equal(bundle.train[1][0], first)


def test_loaders_use_the_global_batch(tmp_path):
    root = make_imagefolder(tmp_path / "folder", classes=2, per_class=(4, 2))
    cfg = DataConfig(
        source="imagefolder", path=str(root), image_size=16, batch_size=3, num_workers=0
    )
    model = timm.create_model("cifar_resnet20", num_classes=2)
    bundle = build_data(cfg, model, load_splits(cfg))
    train, evaluation = build_loaders(bundle, cfg)
    assert len(train) == 2 and len(evaluation) == 2  # 8 // 3 (last dropped), ceil(4 / 3)
    x, y = next(iter(train))
    assert x.shape == (3, 3, 16, 16) and y.dtype == torch.int64
    with pytest.raises(DataError, match="exceeds the 8 training samples"):
        build_loaders(bundle, DataConfig(source="imagefolder", path=str(root), batch_size=9))
