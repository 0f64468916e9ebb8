"""Users' settings and files that used to break silently (issue 13): each refused in one line
or handled, with what used to happen in the test's docstring."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from support import make_imagefolder, tiny_recipe, write_recipe

from discatt_timm import DiscriminativeAttentionLoss, attention_maps
from discatt_timm.cli import main
from discatt_timm.data import convert_image
from discatt_timm.errors import CheckpointError, RecipeError, UserError
from discatt_timm.recipes import config_from_dict, load_recipe
from discatt_timm.rundir import latest_checkpoint
from discatt_timm.training import train

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_imagefolder(tmp_path_factory.mktemp("tiny"), classes=3, per_class=(8, 4), size=16)


def test_out_of_range_and_odd_dtype_targets():
    """Was: 'Target 10 is out of bounds' with no valid range; uint8 labels crashed."""
    model = timm.create_model("cifar_resnet20", num_classes=10).eval()
    criterion = DiscriminativeAttentionLoss(model)
    x = torch.randn(2, 3, 16, 16)
    with pytest.raises(ValueError, match=r"must lie in \[0, 9\] .* got min 3, max 10"):
        criterion(x, torch.tensor([3, 10]))
    with pytest.raises(ValueError, match=r"\(2,\) integer class indices"):
        criterion(x, torch.tensor(3))
    as_uint8 = criterion(x, torch.tensor([3, 4], dtype=torch.uint8)).loss
    torch.testing.assert_close(as_uint8, criterion(x, torch.tensor([3, 4])).loss)


def test_attention_maps_leave_batch_norm_statistics_as_found():
    """Was: maps of a train-mode model moved its BatchNorm running statistics."""
    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=10).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    attention_maps(model, torch.randn(2, 3, 64, 64), torch.tensor([1, 2]))
    after = model.state_dict()
    assert model.training and all(torch.equal(before[k], after[k]) for k in before)


def test_latest_pointer_is_never_followed_out_of_the_run(tmp_path):
    """Was: checkpoints/latest = ../../elsewhere was followed outside the run directory."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "trainer_state.json").write_text("{}")
    run = tmp_path / "runs" / "r"
    step = run / "checkpoints" / "step_000000003"
    step.mkdir(parents=True)
    (step / "trainer_state.json").write_text("{}")
    (run / "checkpoints" / "latest").write_text("../../../elsewhere\n")
    assert latest_checkpoint(run) == step
    (run / "checkpoints" / "latest").write_text("step_000000003\n")
    assert latest_checkpoint(run) == step


def test_resume_with_another_recipe_is_refused_before_anything_is_written(tiny_data, tmp_path):
    """Was: --resume with a changed recipe overwrote recipe.yaml, then failed in a 3 KB line."""
    recipe = tiny_recipe(tiny_data, tmp_path / "runs", schedule={"epochs": 1})
    result = train(config_from_dict(recipe))
    saved = (result.run_dir / "recipe.yaml").read_text()
    changed = config_from_dict(tiny_recipe(tiny_data, tmp_path / "runs", optim={"lr": 0.5}))
    with pytest.raises(CheckpointError, match=r"differs from the run's \(optim.lr: 0.002 -> 0.5"):
        train(changed, resume=True)
    assert (result.run_dir / "recipe.yaml").read_text() == saved
    assert train(config_from_dict(recipe), resume=True).global_step == result.global_step


def test_publish_never_overwrites_a_users_folder(tiny_data, tmp_path, capsys):
    """Was: --local-dir into a non-empty folder replaced README.md, config.json, weights."""
    result = train(
        config_from_dict(tiny_recipe(tiny_data, tmp_path / "runs", schedule={"epochs": 1}))
    )
    capsys.readouterr()  # the training's progress bars
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "README.md").write_text("my notes")
    code = main(["publish", str(result.run_dir), "--local-dir", str(mine)])
    err = capsys.readouterr().err
    assert code == 2 and "is not empty" in err and len(err.strip().splitlines()) == 1
    assert (mine / "README.md").read_text() == "my notes"
    assert main(["publish", str(result.run_dir), "--local-dir", str(result.run_dir)]) == 2
    assert "is the run directory itself" in capsys.readouterr().err
    assert main(["publish", str(result.run_dir), "--local-dir", str(mine), "--overwrite"]) == 0
    assert (mine / "README.md").read_text() != "my notes"


def test_a_missing_split_is_not_replaced_by_another(tiny_data, capsys, tmp_path):
    """Was: discatt metrics --split validation measured the train split, recorded 'validation'."""
    model = timm.create_model("cifar_resnet20", num_classes=3)
    from safetensors.torch import save_file

    save_file(model.state_dict(), str(tmp_path / "m.safetensors"))
    argv = ["metrics", "--model", "cifar_resnet20", "--checkpoint", str(tmp_path / "m.safetensors")]
    code = main([*argv, "--data", str(tiny_data), "--split", "validation"])
    err = capsys.readouterr().err
    assert code == 2 and "has no split 'validation'; splits: test, train" in err


@pytest.mark.parametrize("mode", ["I;16", "I"])
def test_wide_gray_images_keep_their_range(mode):
    """Was: 16-bit PNGs were clipped to 255 (almost every pixel saturated)."""
    levels = np.linspace(0, 65535 if mode == "I;16" else 4000, 64).astype(np.int32).reshape(8, 8)
    image = Image.fromarray(levels.astype(np.uint16) if mode == "I;16" else levels)
    assert image.mode == mode
    gray = np.asarray(convert_image(image, "L"))
    assert gray.min() == 0 and gray.max() == 255 and (gray == 255).mean() < 0.05
    assert np.all(np.diff(gray.flatten().astype(int)) >= 0)  # order kept
    assert convert_image(image, "RGB").mode == "RGB"


def test_a_tracker_that_is_not_installed_names_the_extra(tiny_data, tmp_path):
    """Was: only tensorboard was checked; others failed inside Accelerate."""
    recipe = tiny_recipe(tiny_data, tmp_path / "runs", accelerate={"log_with": ["json", "aim"]})
    path = write_recipe(tmp_path / "r.yaml", recipe)
    cfg = load_recipe(path)
    import importlib.util

    if importlib.util.find_spec("aim") is not None:
        pytest.skip("aim is installed here")
    with pytest.raises(
        RecipeError, match=r"lists aim, which is not installed: pip install 'discatt-timm\[aim\]'"
    ):
        train(cfg)
    assert not (tmp_path / "runs" / "tiny").exists()  # refused before anything was written


class _Planted:
    """A pickle that writes a file when it is loaded (what a hostile checkpoint would do)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import pathlib

        return (pathlib.Path.write_text, (pathlib.Path(self.marker), "ran"))


def test_resume_never_unpickles_and_refuses_a_truncated_rng_state(tiny_data, tmp_path):
    """Was: a custom_checkpoint_0.pkl planted in a checkpoint ran on --resume (Accelerate
    loads registered objects with weights_only=False); a truncated RNG file was skipped."""
    cfg = config_from_dict(tiny_recipe(tiny_data, tmp_path / "runs", schedule={"epochs": 1}))
    result = train(cfg)
    checkpoint = result.checkpoint
    assert not list(checkpoint.glob("custom_checkpoint_*.pkl"))  # the scheduler is in JSON
    state = (checkpoint / "trainer_state.json").read_text()
    assert '"scheduler": {' in state and '"base_values"' in state
    marker = tmp_path / "ran.txt"
    torch.save(_Planted(str(marker)), checkpoint / "custom_checkpoint_0.pkl")
    with pytest.raises(CheckpointError, match="holds custom_checkpoint_0.pkl: a pickle"):
        train(cfg, resume=True)
    assert not marker.exists()
    (checkpoint / "custom_checkpoint_0.pkl").unlink()
    assert train(cfg, resume=True).global_step == result.global_step
    rng = checkpoint / "random_states_0.pkl"
    rng.write_bytes(rng.read_bytes()[:40])
    with pytest.raises(CheckpointError, match=r"random_states_0.pkl does not read"):
        train(cfg, resume=True)


def test_bad_files_and_names_are_one_line_before_any_work(tiny_data, tmp_path, capsys):
    """Was: tracebacks for a non-UTF-8 recipe, an output_dir that is a file, a mistyped local
    --data path (reported as a Hub failure), a manifest that is a list, an unknown
    model.layers name found only after the data loaded."""
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("name: caf\xe9\n".encode("latin-1"))
    assert main(["train", "--recipe", str(latin)]) == 2
    assert "is not UTF-8 text" in capsys.readouterr().err
    file = tmp_path / "a_file"
    file.write_text("x")
    for out, section, message in (
        (file, {}, "'output_dir' names a file"),
        (tmp_path / "runs", {"model": {"layers": ["layer2", "nope"]}}, "last layer 'nope' is not"),
    ):
        recipe = tiny_recipe(tiny_data, out, **section)
        path = write_recipe(tmp_path / "r.yaml", recipe)
        assert main(["train", "--recipe", str(path)]) == 2
        err = capsys.readouterr().err
        assert message in err and "Generating" not in err, err  # before the data loaded
    code = main(["metrics", "--model", "resnet18", "--data", "./not/a/folder"])
    assert code == 2 and "no such folder" in capsys.readouterr().err
    from discatt_timm.zoo import load_manifest

    listed = tmp_path / "manifest.yaml"
    listed.write_text("- name: x\n")
    with pytest.raises(ValueError, match="a manifest is a mapping with a 'variants' list"):
        load_manifest(listed)


def test_one_class_folder_fp16_on_cpu_and_hidden_layers_are_refused(tiny_data, tmp_path):
    """Was: 'no label column None'; fp16 on the CPU ran in fp32 while saying fp16; gradient
    checkpointing failed with "layer 'layer3' did not run"; a compiled model reached the
    double backward."""
    from discatt_timm.config import DataConfig
    from discatt_timm.data import load_splits
    from discatt_timm.errors import DataError

    one = make_imagefolder(tmp_path / "one", classes=1, per_class=(3, 2), size=8)
    with pytest.raises(DataError, match="needs at least two class folders"):
        load_splits(DataConfig(source="imagefolder", path=str(one)))
    cfg = config_from_dict(
        tiny_recipe(
            tiny_data,
            tmp_path / "runs",
            accelerate={"mixed_precision": "fp16"},
            attention={"method": "channel"},
        )
    )
    with pytest.raises(RecipeError, match="fp16, which the CPU runs in fp32"):
        train(cfg)
    model = timm.create_model("resnet18", num_classes=10)
    model.set_grad_checkpointing(True)
    with pytest.raises(ValueError, match="gradient checkpointing"):
        DiscriminativeAttentionLoss(model)
    with pytest.raises(ValueError, match="torch.compile'd"):
        DiscriminativeAttentionLoss(torch.compile(timm.create_model("resnet18", num_classes=10)))


def test_attention_maps_refuse_empty_batches_wrong_channels_and_size_zero():
    model = timm.create_model("resnet18", num_classes=10).eval()
    with pytest.raises(ValueError, match="non-empty B x C x H x W"):
        attention_maps(model, torch.randn(0, 3, 32, 32), torch.tensor([], dtype=torch.long))
    with pytest.raises(ValueError, match="x has 1 channels; the model takes 3"):
        attention_maps(model, torch.randn(2, 1, 32, 32), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="size must be positive"):
        attention_maps(model, torch.randn(2, 3, 32, 32), torch.tensor([1, 2]), size=0)


def test_unreadable_images_are_found_before_training(tmp_path, capsys):
    """Was: one unreadable image crashed training mid-epoch, and every resume hit it again."""
    from discatt_timm.config import DataConfig
    from discatt_timm.data import load_splits
    from discatt_timm.errors import DataError

    folder = make_imagefolder(tmp_path / "folder", classes=2, per_class=(4, 2), size=8)
    (folder / "train" / "class1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(DataError, match=r"1 unreadable image\(s\) in .*, e.g. .*broken.png"):
        load_splits(DataConfig(source="imagefolder", path=str(folder)))
    splits = load_splits(DataConfig(source="imagefolder", path=str(folder), skip_unreadable=True))
    assert len(splits.train) == 8 and "skipping 1 unreadable image(s)" in capsys.readouterr().out
    assert all(row["image"].size == (8, 8) for row in splits.train)  # every one decodes


def test_the_card_licence_follows_the_weights(tiny_data, tmp_path):
    """Was: every card said apache-2.0, also for weights fine-tuned from others' weights."""
    import json
    import shutil

    import yaml

    from discatt_timm.hub import build_model_card

    result = train(
        config_from_dict(tiny_recipe(tiny_data, tmp_path / "runs", schedule={"epochs": 1}))
    )
    assert build_model_card(result.run_dir).data.license == "apache-2.0"  # from scratch
    tuned = tmp_path / "tuned"
    shutil.copytree(result.run_dir, tuned)
    recipe = yaml.safe_load((tuned / "recipe.yaml").read_text())
    recipe["model"]["pretrained"] = True
    (tuned / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    config = json.loads((tuned / "config.json").read_text())
    config["pretrained_cfg"].pop("license", None)
    (tuned / "config.json").write_text(json.dumps(config))
    assert build_model_card(tuned).data.license == "other"  # the base licence is unknown
    config["pretrained_cfg"]["license"] = "cc-by-nc-4.0"
    (tuned / "config.json").write_text(json.dumps(config))
    assert build_model_card(tuned).data.license == "cc-by-nc-4.0"
    assert build_model_card(tuned, license="mit").data.license == "mit"


def test_deterministic_runs_warn_where_torch_has_no_deterministic_kernel(tiny_data, tmp_path):
    """Was: deterministic: true asked for errors, which CUDA's adaptive-average-pool backward
    (every timm head) raises, and left cuBLAS without its workspace setting."""
    import os

    cfg = config_from_dict(
        tiny_recipe(tiny_data, tmp_path / "runs", schedule={"epochs": 1}, deterministic=True)
    )
    try:
        train(cfg)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] in (":4096:8", ":16:8")
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False


def test_nan_inputs_are_said_not_trained_on(tiny_data, tmp_path):
    """Was: NaN inputs gave NaN maps and NaN losses without a word."""
    from discatt_timm.errors import TrainingError

    model = timm.create_model("resnet18", num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        attention_maps(model, x, torch.tensor([1, 2]))
    cfg = config_from_dict(
        tiny_recipe(tiny_data, tmp_path / "runs", optim={"lr": 1.0e30}, schedule={"epochs": 1})
    )
    with pytest.raises(TrainingError, match=r"the training loss is nan at step [12]: check"):
        train(cfg)


class _TokenNet(torch.nn.Module):
    """A user's model whose layers give B x N x D tokens, with no layout registered."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Conv2d(3, 8, 8, stride=8)
        self.mix = torch.nn.Linear(8, 8)
        self.head = torch.nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.mix(self.embed(x).flatten(2).transpose(1, 2)).mean(dim=1))


def test_channels_last_maps_are_read_as_such_and_unknown_layouts_refused():
    """Was: Swin's NHWC stage outputs were mapped as NCHW (maps of shape B x 7 x 768) and a
    token output would have been read as a map."""
    from discatt_timm import register_layers
    from discatt_timm.layers import _REGISTRY

    swin = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, num_classes=3)
    maps = attention_maps(swin.eval(), torch.randn(1, 3, 224, 224), torch.tensor([1]))
    assert maps.shape == (1, 7, 7)  # the last layer's 7 x 7 grid, not 7 x 768
    inner = attention_maps(swin, torch.randn(1, 3, 224, 224), torch.tensor([1]), layer="inner")
    assert inner.shape == (1, 14, 14)

    register_layers(_TokenNet, inner="mix", last="mix")
    try:
        with pytest.raises(UserError, match=r"layout with register_layers\(\.\.\., layout="):
            attention_maps(_TokenNet(), torch.randn(1, 3, 32, 32), torch.tensor([1]))
    finally:
        _REGISTRY[:] = [e for e in _REGISTRY if e.key is not _TokenNet]


def test_a_paper_recipe_after_a_plain_install_stops_at_once_with_the_extra(tmp_path):
    """Was: 24 of the 28 paper recipes log to tensorboard, which no dependency or extra
    brought; the line now names the extra, and nothing is loaded or written first."""
    import importlib.util

    if importlib.util.find_spec("tensorboard") is not None:
        pytest.skip("tensorboard is installed here")
    from pathlib import Path

    recipe = Path(__file__).resolve().parents[1] / "recipes" / "cifar100_resnet110_pixel.yaml"
    cfg = load_recipe(recipe, [f"output_dir={tmp_path}"])
    assert "tensorboard" in cfg.accelerate.log_with
    with pytest.raises(RecipeError, match=r"pip install 'discatt-timm\[tensorboard\]'"):
        train(cfg)
    assert not any(tmp_path.iterdir())
