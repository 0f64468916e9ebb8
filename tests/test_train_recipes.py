"""Every recipe builds its model, data pipeline and optimizer on tiny stand-in data in the real
layout; one recipe per family trains two steps with its attention losses on."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import pytest
import torch
from support import standin_overrides

from discatt_timm.config import ModelConfig
from discatt_timm.data import build_data, build_loaders, load_splits
from discatt_timm.recipes import list_recipes, load_recipe
from discatt_timm.training import (
    build_criterion,
    build_model,
    build_optimizer,
    build_scheduler,
    train,
)

pytestmark = pytest.mark.usefixtures("one_thread")

RECIPES = list_recipes(Path(__file__).resolve().parents[1] / "recipes")
FAMILIES = {
    "cifar100": "cifar100_resnet110_pixel",
    "caltech256": "caltech256_n30_resnet18_pixel",
    "imagenet": "imagenet_resnet18_channel",
    "cub200": "cub200_resnet50_channel",
    "voc2012": "voc2012_resnet18_pixel",
    "fashion_mnist": "fashion_mnist_quickstart",
    "fashion_mnist_clutter": "fashion_mnist_clutter_study",
    "fashion_mnist_multi": "fashion_mnist_multi_study",
}


@pytest.fixture(scope="module")
def standins(tmp_path_factory):
    return tmp_path_factory.mktemp("standins")


@functools.cache
def _model(model_cfg: ModelConfig, num_classes: int) -> torch.nn.Module:
    # baselines and their variants share a model section: build each distinct one once
    return build_model(model_cfg, num_classes)


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_recipe_builds_model_data_and_optimizer(path, standins):
    cfg = load_recipe(path)
    cfg = load_recipe(
        path, [*standin_overrides(cfg, standins), "data.batch_size=2", "data.num_workers=0"]
    )
    splits = load_splits(cfg.data)
    model = _model(cfg.model, cfg.model.num_classes or splits.num_classes)
    assert model.get_classifier().out_features == splits.num_classes
    bundle = build_data(cfg.data, model, splits, seed=cfg.seed)
    size = cfg.data.image_size
    x, y = bundle.train[0]
    assert x.shape == (cfg.model.in_chans, size, size)
    assert bundle.eval[0][0].shape == x.shape
    if cfg.data.multilabel:
        assert y.shape == (splits.num_classes,)
    train_loader, _ = build_loaders(bundle, cfg.data)
    optimizer = build_optimizer(model, cfg.optim)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(cfg.optim.lr)
    scheduler = build_scheduler(optimizer, cfg.schedule, len(train_loader))
    assert scheduler is not None or cfg.schedule.sched == "none"
    criterion = build_criterion(model, cfg)
    assert (type(criterion).__name__ == "DiscriminativeAttentionLoss") == cfg.supervised


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_family_trains_two_steps(family, standins, tmp_path):
    name = FAMILIES[family]
    cfg = load_recipe(name)
    size = {"cifar100": 32, "fashion_mnist": 28}.get(family, 64)
    size = 32 if family.startswith("fashion_mnist_") else size
    cfg = load_recipe(
        name,
        [
            *standin_overrides(cfg, standins),
            f"output_dir={tmp_path}",
            f"data.image_size={size}",
            "data.batch_size=4",
            "data.eval_batch_size=4",
            "data.num_workers=0",
            "data.max_train_samples=null",
            "data.max_eval_samples=null",
            "schedule.max_steps=2",
            "accelerate.log_with=[json]",
            "accelerate.log_every_n_steps=1",
            "checkpoint.every_n_steps=null",
            f"eval.num_images={2 if family in ('voc2012', 'fashion_mnist') else 0}",
            "eval.attention=true",
            "eval.attention_max_samples=4",
        ],
    )
    assert cfg.supervised
    result = train(cfg)
    assert result.global_step == 2
    metrics = result.metrics
    keys = ("mAP", "roc_auc") if cfg.data.multilabel else tuple(f"top{k}" for k in cfg.eval.topk)
    for key in (*keys, "siou_inner", "siou_last", "consistency", "loss"):
        assert math.isfinite(metrics[key]), key
    if family.startswith("fashion_mnist_"):  # boxes: localisation, gathered like the rest
        assert metrics["localisation_samples"] > 0 and 0 <= metrics["pointing_last"] <= 1
    log = (result.run_dir / "logs" / "metrics.jsonl").read_text()
    assert log.count('"train/siou_inner"') == 2
    assert (result.run_dir / "attention_maps.png").is_file() == (cfg.eval.num_images > 0)
