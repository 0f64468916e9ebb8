"""Recipes: every file parses, baseline vs supervised differ only in `attention`, and bad keys,
types or values are rejected before any work starts, naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from discatt_timm import cli
from discatt_timm.errors import RecipeError
from discatt_timm.recipes import (
    apply_overrides,
    config_from_dict,
    config_to_dict,
    dump_recipe,
    list_recipes,
    load_recipe,
    parse_override,
    recipe_diff,
)

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
ALL = list_recipes(RECIPES)
FROM_IMAGENET = ("caltech256_", "cub200_", "voc2012_")


def minimal(**sections) -> dict:
    recipe = {"name": "t", "model": {"name": "cifar_resnet20"}, "data": {"source": "fashion_mnist"}}
    recipe.update(sections)
    return recipe


def test_recipe_set_is_complete():
    names = {p.stem for p in ALL}
    expected = {"fashion_mnist_quickstart", "fashion_mnist_quickstart_baseline"}
    for variant in ("baseline", "pixel", "channel"):
        expected.add(f"cifar100_resnet110_{variant}")
        expected.add(f"voc2012_resnet18_{variant}")
        for n in (30, 60):
            for arch in ("resnet18", "vgg19"):
                expected.add(f"caltech256_n{n}_{arch}_{variant}")
    for variant in ("baseline", "channel"):
        expected.add(f"imagenet_resnet18_{variant}")
        expected.add(f"cub200_resnet50_{variant}")
        expected.add(f"cub200_resnet101_{variant}")
    assert expected <= names


@pytest.mark.parametrize("path", ALL, ids=[p.stem for p in ALL])
def test_every_recipe_parses_and_round_trips(path):
    cfg = load_recipe(path)
    assert cfg.name == path.stem
    assert config_from_dict(yaml.safe_load(dump_recipe(cfg))) == cfg
    if path.stem.startswith(FROM_IMAGENET):
        # the paper's baselines start from ImageNet weights; the recipe says so
        assert cfg.model.pretrained and "ImageNet" in cfg.description
        assert "ImageNet weights" in path.read_text().split("name:")[0]
    if cfg.data.source == "voc2012":
        assert cfg.data.multilabel and cfg.attention.multilabel


def test_paper_settings():
    cifar = load_recipe(RECIPES / "cifar100_resnet110_pixel.yaml")
    assert (cifar.optim.lr, cifar.optim.weight_decay, cifar.data.batch_size) == (0.1, 5e-4, 128)
    assert (cifar.schedule.milestones, cifar.schedule.epochs) == ((81, 122), 160)
    assert (cifar.data.augment, cifar.data.crop_padding) == ("pad_crop", 4)
    caltech = load_recipe(RECIPES / "caltech256_n60_resnet18_pixel.yaml")
    assert (caltech.data.train_per_class, caltech.data.test_per_class) == (60, 25)
    assert caltech.data.drop_classes == ("257.clutter",)
    assert (caltech.optim.lr, caltech.optim.weight_decay, caltech.schedule.epochs) == (
        0.01,
        1e-3,
        20,
    )
    cub = load_recipe(RECIPES / "cub200_resnet101_channel.yaml")
    assert (cub.data.image_size, cub.data.batch_size, cub.optim.lr) == (448, 10, 0.001)
    imagenet = load_recipe(RECIPES / "imagenet_resnet18_channel.yaml")
    assert (imagenet.data.batch_size, imagenet.optim.weight_decay) == (256, 1e-4)
    assert imagenet.schedule.milestones == (30, 60)


def _pairs():
    baselines = [p for p in ALL if p.stem.endswith("_baseline")]
    for base in baselines:
        stem = base.stem.removesuffix("_baseline")
        siblings = [p for p in ALL if p.stem.startswith(stem) and p != base]
        siblings = [p for p in siblings if p.stem.removeprefix(stem).count("_") <= 1]
        yield base, siblings


@pytest.mark.parametrize("base,siblings", list(_pairs()), ids=lambda v: getattr(v, "stem", ""))
def test_baseline_and_supervised_differ_only_in_attention(base, siblings):
    assert siblings, f"{base.stem} has no supervised variant"
    baseline = load_recipe(base)
    assert baseline.attention.method == "none" and not baseline.supervised
    for path in siblings:
        supervised = load_recipe(path)
        assert supervised.supervised
        diff = recipe_diff(baseline, supervised)
        assert set(diff) - {"name", "description"} <= {  # names say nothing of training
            f"attention.{k}" for k in config_to_dict(supervised)["attention"]
        }
        assert "attention.method" in diff


def test_quickstart_is_supervised_and_small():
    cfg = load_recipe(RECIPES / "fashion_mnist_quickstart.yaml")
    assert cfg.supervised and cfg.model.name == "cifar_resnet20" and cfg.model.in_chans == 1
    assert cfg.data.source == "fashion_mnist" and cfg.data.image_size == 28


@pytest.mark.parametrize(
    "override,message",
    [
        ("optim.lrr=0.1", "unknown recipe key 'optim.lrr'; did you mean 'lr'?"),
        ("optimizer.lr=0.1", "unknown recipe key 'optimizer'; did you mean 'optim'?"),
        ("optim.lr=-1", "recipe key 'optim.lr' must be > 0, got -1.0"),
        ("optim.lr=fast", "recipe key 'optim.lr' must be a number, got 'fast' (str)"),
        ("data.batch_size=1.5", "recipe key 'data.batch_size' must be an integer, got 1.5"),
        ("data.batch_size=0", "recipe key 'data.batch_size' must be a positive integer, got 0"),
        ("model.pretrained=maybe", "recipe key 'model.pretrained' must be true/false"),
        ("model.name=resnet_18", "recipe key 'model.name' must be a timm model"),
        ("data.source=cifar", "recipe key 'data.source' must be one of hub, imagefolder"),
        ("data.scale=[0.5]", "recipe key 'data.scale' must be a list of 2 a number"),
        ("schedule.sched=multistep", "recipe key 'schedule.milestones' must list at least one"),
        ("schedule.milestones=[60,30]", "recipe key 'schedule.milestones' must be increasing"),
        ("attention.method=pixels", "recipe key 'attention.method' must be one of none, "),
        ("attention.grad_mode=approx", "recipe key 'attention.grad_mode' must be one of exact"),
        ("attention.weights=[1,1]", "recipe key 'attention.weights' must be a list of 3"),
        ("attention.weights=[1,-1,1]", "recipe key 'attention.weights' must be three finite"),
        ("attention.multilabel=true", "recipe key 'attention.multilabel' cannot be set"),
        ("accelerate.static_graph=true", "recipe key 'accelerate.static_graph' must be false"),
        (
            "accelerate.mixed_precision=bf16",
            "recipe key 'attention.normalize' must be softmax with method pixel under",
        ),
        (
            "accelerate.mixed_precision=fp8",
            "recipe key 'accelerate.mixed_precision' must be one of",
        ),
        ("accelerate.log_with=[tensorbord]", "did you mean 'tensorboard'?"),
        ("data.mean=[0.5]", "recipe key 'data.mean' must have model.in_chans=3 values"),
        ("model.checkpoint=x.safetensors", "recipe key 'model.checkpoint' and model.pretrained"),
        ("name=a/b", "recipe key 'name' must be a plain run name"),
        ("eval.attention_method=cam", "recipe key 'eval.attention_method' must be one of"),
    ],
)
def test_bad_recipe_values_name_the_key(override, message):
    base = RECIPES / "caltech256_n30_resnet18_pixel.yaml"
    with pytest.raises(RecipeError) as info:
        load_recipe(base, [override])
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_required_key_and_wrong_section_type():
    with pytest.raises(RecipeError, match="recipe key 'model' is required"):
        config_from_dict({"name": "x"})
    with pytest.raises(RecipeError, match="recipe key 'model.name' is required"):
        config_from_dict({"name": "x", "model": {}, "data": {}})
    with pytest.raises(
        RecipeError, match="recipe key 'data.path' is required for data.source 'hub'"
    ):
        config_from_dict({"name": "x", "model": {"name": "resnet18"}, "data": {}})
    with pytest.raises(RecipeError, match="recipe section 'optim' must be a mapping"):
        config_from_dict(minimal(optim=[1, 2]))


def test_baseline_allows_static_graph_and_numeric_strings():
    cfg = config_from_dict(
        minimal(
            attention={"method": "none"}, accelerate={"static_graph": True}, optim={"lr": "1e-3"}
        )
    )
    assert cfg.accelerate.static_graph and cfg.optim.lr == 1e-3  # PyYAML reads 1e-3 as a string


def test_mixed_precision_allows_softmax_pixel_maps_and_channel_maps():
    for attention in ({"method": "pixel", "normalize": "softmax"}, {"method": "channel"}):
        cfg = config_from_dict(minimal(attention=attention, accelerate={"mixed_precision": "bf16"}))
        assert cfg.accelerate.mixed_precision == "bf16"


def test_multilabel_follows_data():
    cfg = config_from_dict(minimal(data={"source": "voc2012", "multilabel": True}))
    assert cfg.attention.multilabel
    assert "multilabel" not in config_to_dict(cfg)["attention"]


def test_overrides_are_yaml():
    assert parse_override("optim.lr=0.05") == ("optim.lr", 0.05)
    assert parse_override("model.layers=[layer3, layer4]") == ("model.layers", ["layer3", "layer4"])
    assert parse_override("data.max_train_samples=null") == ("data.max_train_samples", None)
    assert parse_override("name=run=2") == ("name", "run=2")
    with pytest.raises(RecipeError, match="must look like section.key=value"):
        parse_override("optim.lr")
    with pytest.raises(RecipeError, match="is not a section"):
        apply_overrides({"name": "x"}, ["name.sub=1"])
    data = apply_overrides({"optim": {"lr": 1}}, ["optim.lr=2", "schedule.epochs=3"])
    assert data == {"optim": {"lr": 2}, "schedule": {"epochs": 3}}


def test_cli_rejects_a_bad_key_before_any_work(tmp_path, capsys):
    code = cli.main(
        [
            "train",
            "--recipe",
            str(RECIPES / "fashion_mnist_quickstart.yaml"),
            "--set",
            f"output_dir={tmp_path}",
            "optim.learning_rate=0.1",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("discatt train: error: unknown recipe key 'optim.learning_rate'")
    assert len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # nothing was created


def test_cli_prints_the_resolved_recipe(capsys):
    code = cli.main(
        ["train", "--recipe", "fashion_mnist_quickstart", "--print-recipe", "--set", "optim.lr=0.2"]
    )
    assert code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["optim"]["lr"] == 0.2 and printed["name"] == "fashion_mnist_quickstart"


def test_unknown_recipe_name_lists_the_available_ones():
    with pytest.raises(RecipeError, match="available recipes: .*fashion_mnist_quickstart"):
        load_recipe("no_such_recipe")
