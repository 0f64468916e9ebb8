"""``loading.load_model``: the one model + weights loader of train, explain, metrics and the zoo."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import save_file
from support import make_imagefolder, tiny_recipe, write_recipe
from timm.models import save_for_hf

from discatt_timm.cli import main
from discatt_timm.errors import LoadError
from discatt_timm.loading import find_weights, load_model


def _model(num_classes: int = 3, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return timm.create_model("cifar_resnet20", num_classes=num_classes)


def _equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("loading")
    save_file(_model(3, seed=1).state_dict(), str(root / "c20.safetensors"))
    save_file(
        timm.create_model("resnet18", num_classes=3).state_dict(), str(root / "r18.safetensors")
    )
    (root / "text.safetensors").write_text("not weights")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / "img.png")
    make_imagefolder(root / "data", classes=3, per_class=(8, 4), size=16)
    return root


def _error(capsys, argv: list[str]) -> str:
    """The one error line of a command (``train`` may show the data's progress bars first)."""
    code = main([str(a) for a in argv])
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in lines if f"discatt {argv[0]}: error: " in line]
    assert code == 2 and len(errors) == 1 and lines[-1] == errors[0], lines
    return errors[0].split(": error: ", 1)[1]


@pytest.mark.parametrize(
    "weights, expected",
    [
        ("text.safetensors", "cannot read checkpoint"),
        ("r18.safetensors", "does not fit cifar_resnet20"),
    ],
)
def test_the_same_bad_checkpoint_is_the_same_line_in_every_command(
    capsys, files, tmp_path, weights, expected
):
    file = files / weights
    recipe = write_recipe(tmp_path / "r.yaml", tiny_recipe(files / "data", tmp_path / "runs"))
    said = {
        "train": _error(capsys, ["train", "--recipe", recipe, "--set", f"model.checkpoint={file}"]),
        "explain": _error(
            capsys,
            ["explain", files / "img.png", "--model", "cifar_resnet20", "--checkpoint", file],
        ),
        "metrics": _error(
            capsys,
            [
                "metrics",
                "--model",
                "cifar_resnet20",
                "--checkpoint",
                file,
                "--data",
                files / "data",
            ],
        ),
    }
    assert expected in said["explain"]
    assert said["train"] == said["explain"] == said["metrics"], said


def test_a_checkpoint_wins_over_the_weights_a_local_dir_names(files, tmp_path):
    """``local-dir:`` + ``checkpoint``: the checkpoint's weights, not the folder's (timm alone
    would load the folder's and drop the file silently)."""
    folder_model = _model(3, seed=2)
    save_for_hf(folder_model, str(tmp_path / "folder"), safe_serialization=True)
    loaded = load_model(f"local-dir:{tmp_path / 'folder'}", files / "c20.safetensors")
    assert _equal(loaded, _model(3, seed=1)) and not _equal(loaded, folder_model)
    assert not loaded.training


def test_torch_files_load_ema_weights_first_and_run_dirs_resolve(files, tmp_path):
    plain, ema = _model(3, seed=3), _model(3, seed=4)
    torch.save(
        {"state_dict": plain.state_dict(), "state_dict_ema": ema.state_dict()}, tmp_path / "c.pth"
    )
    assert _equal(load_model("cifar_resnet20", tmp_path / "c.pth"), ema)  # timm's rule
    save_for_hf(plain, str(tmp_path / "run"), safe_serialization=True)
    assert find_weights(tmp_path / "run") == tmp_path / "run" / "model.safetensors"
    assert _equal(load_model("cifar_resnet20", tmp_path / "run"), plain)


def test_a_new_class_count_keeps_the_backbone_and_a_fresh_head(files):
    source = _model(3, seed=1)
    tuned = load_model("cifar_resnet20", files / "c20.safetensors", num_classes=7)
    assert tuned.num_classes == 7 and tuned.get_classifier().out_features == 7
    head = {"fc.weight", "fc.bias"}
    s, t = source.state_dict(), tuned.state_dict()
    assert all(torch.equal(s[k], t[k]) for k in s if k not in head)
    with pytest.raises(LoadError, match="does not fit"):
        load_model("cifar_resnet20", files / "r18.safetensors", num_classes=3)


def test_truncated_weights_in_a_run_directory_are_one_line(tmp_path, capsys):
    """Was: a SafetensorError traceback from inside timm."""
    save_for_hf(_model(3), str(tmp_path / "run"), safe_serialization=True)
    weights = tmp_path / "run" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(LoadError, match="cannot read checkpoint .*model.safetensors"):
        load_model(str(tmp_path / "run"))
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(image)
    assert main(["explain", "--model", str(tmp_path / "run"), str(image)]) == 2
    assert "cannot read checkpoint" in capsys.readouterr().err
