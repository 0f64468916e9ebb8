"""Publishing: train -> publish folder -> timm.create_model -> same logits; cards; uploads; tags."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
import yaml
from huggingface_hub import ModelCard
from safetensors.torch import load_file
from support import make_imagefolder, tiny_recipe, write_recipe

from discatt_timm import hub
from discatt_timm.cli import main
from discatt_timm.recipes import load_recipe
from discatt_timm.training import train
from discatt_timm.zoo import Variant, register_variants
from discatt_timm.zoo.check import REPRODUCE_TOL, check_zoo, compare_metric
from discatt_timm.zoo.manifest import MANIFEST


def _train(tmp: Path, model: str, image_size: int, name: str) -> Path:
    data = make_imagefolder(tmp / "data", classes=3, per_class=(8, 4), size=image_size)
    recipe = tiny_recipe(
        data,
        tmp / "runs",
        name=name,
        model={"name": model, "bn_eval": False},
        data={"image_size": image_size},
        optim={"name": "momentum", "lr": 0.01, "weight_decay": 5.0e-4},
        schedule={"epochs": 1, "sched": "cosine"},
    )
    cfg = load_recipe(write_recipe(tmp / f"{name}.yaml", recipe))
    return train(cfg).run_dir


@pytest.fixture(scope="module")
def cifar_run(tmp_path_factory) -> Path:
    return _train(tmp_path_factory.mktemp("cifar"), "cifar_resnet20", 16, "tiny")


@pytest.fixture(scope="module")
def resnet_run(tmp_path_factory) -> Path:
    return _train(tmp_path_factory.mktemp("resnet"), "resnet18", 32, "tiny_resnet18")


def _reference_logits(run_dir: Path, x: torch.Tensor) -> torch.Tensor:
    """Logits of the trained weights loaded by hand into a freshly built architecture."""
    config = json.loads((run_dir / "config.json").read_text())
    model = timm.create_model(config["architecture"], num_classes=config["num_classes"])
    model.load_state_dict(load_file(run_dir / "model.safetensors"))
    return model.eval()(x)


def test_publish_local_dir_loads_with_timm_and_gives_equal_logits(cifar_run, tmp_path):
    folder = Path(hub.publish(cifar_run, local_dir=tmp_path / "pub"))
    assert {p.name for p in folder.iterdir()} >= {
        "model.safetensors",
        "config.json",
        "README.md",
        "metrics.json",
        "recipe.yaml",
    }
    model = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x), _reference_logits(cifar_run, x))
    config = json.loads((folder / "config.json").read_text())
    assert config["discatt"]["layers"] == {"inner": "layer2", "last": "layer3"}
    assert config["pretrained_cfg"]["mean"] and config["pretrained_cfg"]["input_size"][1:] == [
        16,
        16,
    ]
    assert config["label_names"] == ["class0", "class1", "class2"]


def test_model_card_carries_the_measured_metrics(cifar_run, tmp_path):
    folder = Path(hub.publish(cifar_run, local_dir=tmp_path / "pub"))
    card = ModelCard.load(folder / "README.md")
    metrics = json.loads((cifar_run / "metrics.json").read_text())
    data = card.data
    assert data.library_name == "timm"
    assert set(hub.TAGS) <= set(data.tags)
    assert data.license == "apache-2.0"
    recorded = {r.metric_type: r.metric_value for r in data.eval_results}
    for key, (metric_type, _) in hub.METRICS.items():
        if key in metrics:
            assert recorded[metric_type] == metrics[key]  # exactly, not rounded
    assert recorded["accuracy"] == metrics["top1"]
    assert "timm.create_model" in card.text and "@inproceedings{wang2019sharpen" in card.text
    assert "attention:" in card.text  # the recipe inline


def _hf_cache(folder: Path, cache: Path, repo_id: str) -> Path:
    """Lay ``folder`` out as huggingface_hub's cache of ``repo_id`` at one commit."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    return cache


OFFLINE_LOAD = """
import socket, sys
def refuse(*args, **kwargs):
    raise RuntimeError("network access attempted")
socket.socket.connect = refuse
socket.create_connection = refuse
import timm, torch
{imports}
model = timm.create_model(sys.argv[1], pretrained=True).eval()
torch.manual_seed(0)
with torch.no_grad():
    print(repr(model(torch.randn(2, 3, 32, 32)).tolist()))
"""


def _offline_logits(name: str, cache: Path, imports: str = "") -> list:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache)}
    result = subprocess.run(
        [sys.executable, "-c", OFFLINE_LOAD.format(imports=imports), name],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return eval(result.stdout.strip().splitlines()[-1])


def test_hf_hub_cache_loads_offline_without_this_package(resnet_run, tmp_path):
    folder = Path(hub.publish(resnet_run, local_dir=tmp_path / "pub"))
    cache = _hf_cache(folder, tmp_path / "cache", "discatt-test/resnet18-tiny")
    via_hub = _offline_logits("hf-hub:discatt-test/resnet18-tiny", cache)
    torch.manual_seed(0)
    expected = _reference_logits(resnet_run, torch.randn(2, 3, 32, 32))
    assert torch.equal(torch.tensor(via_hub), expected)
    # ... and through a zoo tag pointing at that Hub id, with this package imported.
    config = json.loads((folder / "config.json").read_text())
    cfg = {**config["pretrained_cfg"], "num_classes": config["num_classes"]}
    register = (
        "from discatt_timm.zoo import Variant, register_variants\n"
        "register_variants([Variant(name='resnet18.discatt_tiny', recipe='r.yaml', "
        f"dataset='d', hf_hub_id='discatt-test/resnet18-tiny', pretrained_cfg={cfg!r})])"
    )
    via_tag = _offline_logits("resnet18.discatt_tiny", cache, imports=register)
    assert torch.equal(torch.tensor(via_tag), expected)


def test_zoo_tags_do_not_disturb_timm_tags():
    before = timm.list_pretrained("resnet18.*")
    names = register_variants(
        [Variant(name="resnet18.discatt_probe", recipe="r.yaml", dataset="d", hf_hub_id="o/n")]
    )
    after = timm.list_pretrained("resnet18.*")
    assert names == ["resnet18.discatt_probe"]
    assert set(before) <= set(after) and "resnet18.discatt_probe" in after
    assert "resnet18.a1_in1k" in after
    assert timm.models.get_pretrained_cfg("resnet18").tag == "a1_in1k"  # default unchanged
    cfg = timm.models.get_pretrained_cfg("resnet18.discatt_probe")
    assert cfg.hf_hub_id == "o/n" and cfg.url is None  # nothing inherited from timm's tags


class _RecordingApi:
    calls: list = []

    def __init__(self, token=None):
        self.token = token

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs, self.token))
        return f"https://huggingface.co/{repo_id}"

    def create_branch(self, repo_id, **kwargs):
        self.calls.append(("create_branch", repo_id, kwargs, self.token))

    def upload_folder(self, **kwargs):
        files = sorted(p.name for p in Path(kwargs["folder_path"]).iterdir())
        self.calls.append(("upload_folder", kwargs["repo_id"], {**kwargs, "files": files}, None))


def test_upload_sends_the_folder_to_the_hub_api(cifar_run, monkeypatch):
    _RecordingApi.calls = []
    monkeypatch.setattr(hub, "HfApi", _RecordingApi)
    url = hub.publish(cifar_run, repo_id="me/tiny", private=True, revision="v1", token="hf_fake")
    assert url == "https://huggingface.co/me/tiny"
    (create, _, kwargs, token), branch, upload = _RecordingApi.calls
    assert create == "create_repo" and kwargs == {"private": True, "exist_ok": True}
    assert token == "hf_fake"
    assert branch[0] == "create_branch" and branch[2]["branch"] == "v1"
    assert upload[1] == "me/tiny" and upload[2]["revision"] == "v1"
    assert {"model.safetensors", "config.json", "README.md"} <= set(upload[2]["files"])


def _cli(argv: list[str]) -> int:
    return main(["publish", *argv])


def test_no_token_stops_before_any_work(cifar_run, monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(hub, "get_token", lambda: None)
    monkeypatch.setattr(hub, "HfApi", None)  # any use would raise
    assert _cli([str(cifar_run), "--repo-id", "me/tiny"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no Hugging Face token" in err


def test_unevaluated_run_is_refused(cifar_run, tmp_path, capsys):
    partial = tmp_path / "partial"
    shutil.copytree(cifar_run, partial)
    (partial / "metrics.json").unlink()
    assert _cli([str(partial), "--local-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no metrics.json" in err
    assert not (tmp_path / "out").exists()


def test_shipped_zoo_variant_loads_offline_with_its_card():
    name = "cifar_resnet20.discatt_fashion_mnist_demo"
    assert name in timm.list_pretrained("*discatt*")
    model = timm.create_model(name, pretrained=True).eval()
    assert model.num_classes == 10 and model.conv1.in_channels == 1
    folder = Path(timm.models.get_pretrained_cfg(name).file).parent
    assert torch.equal(model.fc.weight, load_file(folder / "model.safetensors")["fc.weight"])
    assert model(torch.zeros(1, 1, 28, 28)).isfinite().all()


REPO = Path(__file__).resolve().parents[1]


def test_hub_check_passes_on_the_manifest():
    findings = check_zoo(repo_root=REPO, remeasure=False)
    assert findings and all(f.ok for f in findings), [f for f in findings if not f.ok]
    assert {"name", "recipe", "weights", "card", "metrics", "card metrics"} <= {
        f.check for f in findings
    }


# One entry per kind of data and metric: plain Fashion-MNIST top-1 (the demo, 2,000 images),
# derived cluttered canvases top-1, multi-label mAP. Each full-size entry costs about 30 s on two
# CPU cores; .ci/run re-measures every entry with `discatt hub check`.
REMEASURED = (
    "cifar_resnet20.discatt_fashion_mnist_demo",
    "cifar_resnet20.ce_fashion_mnist_clutter",
    "cifar_resnet20.ce_fashion_mnist_multi",
)


@pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").is_file(),
    reason="Fashion-MNIST (Debian package dataset-fashion-mnist) is not installed",
)
def test_hub_check_reproduces_the_recorded_metrics(tmp_path):
    """Shipped entries re-measured on their recipe's test data: top-1 bitwise on any CPU (a
    changed prediction is 1e-4), mAP bitwise or within ``REPRODUCE_TOL`` (near-tie swaps)."""
    entries = yaml.safe_load(MANIFEST.read_text())["variants"]
    subset = [e for e in entries if e["name"] in REMEASURED]
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(yaml.safe_dump({"variants": subset}))
    findings = check_zoo(manifest, repo_root=REPO)
    assert {f.variant for f in findings} == set(REMEASURED)
    measured = [f for f in findings if f.check.endswith(" reproduced")]
    assert len(measured) == len(REMEASURED)
    assert {f.check for f in measured} == {"top-1 reproduced", "mAP reproduced"}, measured
    assert all(f.ok and "measured" in f.detail for f in measured), measured
    top1 = [f for f in measured if f.check == "top-1 reproduced"]
    assert all(f.detail.endswith("bitwise equal") for f in top1), top1


def test_a_reproduced_metric_is_bitwise_or_within_the_stated_tolerance():
    assert compare_metric(0.9351, 0.9351) == (
        True,
        "measured 0.935100, recorded 0.935100: bitwise equal",
    )
    ok, detail = compare_metric(0.9275623306104059, 0.9275624025803941)  # measured on an AMD EPYC
    assert ok and "difference -7.2e-08" in detail and "not bitwise" in detail
    ok, detail = compare_metric(0.9352, 0.9351)  # one of 10,000 test images changed
    assert not ok and detail == "measured 0.935200, recorded 0.935100; difference +1.0e-04"
    assert not compare_metric(0.5 + 2 * REPRODUCE_TOL, 0.5)[0]


def test_hub_check_reports_broken_entries(tmp_path, capsys):
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(
        "variants:\n"
        "  - name: resnet18.fashion\n"  # not ARCH.discatt_DATASET
        "    recipe: recipes/missing.yaml\n"
        "    dataset: d\n"
    )
    failed = {f.check for f in check_zoo(manifest, repo_root=REPO) if not f.ok}
    assert failed == {"name", "recipe", "weights"}
    code = main(["hub", "check", "--manifest", str(manifest), "--repo-root", str(REPO)])
    out = capsys.readouterr().out
    assert code == 1 and "FAIL resnet18.fashion: recipe" in out and "0 passed, 3 failed" in out


def test_fine_tuned_lite0_folder_loads_back_with_its_licence(tmp_path):
    """``make zoo-transfer``'s path: tf_efficientnet_lite0 fine-tuned from a 1000-class
    checkpoint with a new head, published with ``--license``, loads back through timm alone
    with the trained logits; the card names the licence and no local file as base model."""
    from safetensors.torch import save_file

    base = timm.create_model("tf_efficientnet_lite0", num_classes=1000)
    save_file(base.state_dict(), tmp_path / "lite0_in1k.safetensors")
    data = make_imagefolder(tmp_path / "data", classes=3, per_class=(4, 2), size=32)
    recipe = tiny_recipe(
        data,
        tmp_path / "runs",
        name="lite0",
        model={
            "name": "tf_efficientnet_lite0",
            "checkpoint": str(tmp_path / "lite0_in1k.safetensors"),
        },
        data={"image_size": 32},
        schedule={"epochs": 1, "sched": "cosine"},
        attention={"method": "pixel", "normalize": "softmax"},
    )
    run_dir = train(load_recipe(write_recipe(tmp_path / "lite0.yaml", recipe))).run_dir
    out = tmp_path / "pub"
    assert main(["publish", str(run_dir), "--local-dir", str(out), "--license", "apache-2.0"]) == 0
    model = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), _reference_logits(run_dir, x))
        assert model(x).shape == (2, 3)
    card = ModelCard.load(out / "README.md")
    assert card.data.license == "apache-2.0" and card.data.base_model is None
    assert json.loads((out / "config.json").read_text())["discatt"]["attention"]["normalize"] == (
        "softmax"
    )
