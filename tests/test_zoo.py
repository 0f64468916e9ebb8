"""The zoo's listing (``discatt hub list``), the README's zoo table, and the rule that every
entry's recipe differs from its baseline's only in the attention section."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from discatt_timm.cli import main
from discatt_timm.zoo import Variant, load_manifest
from discatt_timm.zoo.check import attention_only_diff, check_zoo
from discatt_timm.zoo.listing import markdown_table, plain_table, zoo_rows

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"


def test_readme_zoo_table_is_the_generated_one():
    text = README.read_text()
    found = re.search(r"<!-- zoo-table -->\n(.*?)\n<!-- /zoo-table -->", text, re.S)
    assert found, "README.md needs the <!-- zoo-table --> markers"
    assert found.group(1) == markdown_table(zoo_rows()), "run: discatt hub list --markdown"


@pytest.mark.parametrize("variant", load_manifest(), ids=lambda v: v.name)
def test_each_entry_differs_from_its_baseline_only_in_attention(variant):
    entries = {v.name: v for v in load_manifest()}
    baseline = entries[variant.baseline].recipe if variant.baseline else variant.baseline_recipe
    if baseline is None:
        assert variant.name.split(".", 1)[1].startswith("ce_"), "a variant needs a baseline"
        return
    assert attention_only_diff(REPO / variant.recipe, REPO / baseline) == []


def _entry(root: Path, name: str, attention: dict, metrics: dict) -> Variant:
    folder = root / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"discatt": {"attention": attention}}))
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return Variant(name=name, recipe="r.yaml", dataset="d/x", folder=str(folder))


def test_rows_read_the_shipped_metrics_and_config(tmp_path):
    variant = _entry(
        tmp_path,
        "a.discatt_x",
        {"method": "pixel", "normalize": "softmax"},
        {"top1": 0.91234, "num_samples": 10000, "siou_last": 0.0271, "pointing_last": 0.98},
    )
    multi = _entry(tmp_path, "a.ce_x", {"method": "none"}, {"mAP": 0.93125, "num_samples": 50})
    variant = Variant(**{**variant.__dict__, "baseline": "a.ce_x"})
    rows = zoo_rows([variant, multi])
    assert rows[0].cells() == (
        "a.discatt_x", "A_px, softmax", "d/x", "top-1 0.9123", "10000", "0.027", "0.980", "a.ce_x"
    )  # fmt: skip
    assert rows[1].cells() == ("a.ce_x", "cross-entropy", "d/x", "mAP 0.9313", "50", "-", "-", "-")
    table = markdown_table(rows).splitlines()
    assert table[2] == (
        "| `a.discatt_x` | A_px, softmax | d/x | top-1 0.9123 | 10000 | 0.027 | 0.980 | `a.ce_x` |"
    )
    lines = plain_table(rows).splitlines()
    assert len(lines) == 3 and lines[0].startswith("entry") and lines[1].startswith("a.discatt_x")
    assert lines[1].index("A_px") == lines[0].index("supervision")  # padded columns


def test_hub_check_refuses_a_baseline_that_differs_elsewhere(tmp_path):
    recipe = (REPO / "recipes" / "fashion_mnist_softmax_px.yaml").read_text()
    (tmp_path / "base.yaml").write_text(
        recipe.replace("method: pixel\n  normalize: softmax", "method: none").replace(
            "lr: 0.1", "lr: 0.2"
        )
    )
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(
        "variants:\n"
        "  - name: cifar_resnet20.discatt_fashion_mnist\n"
        "    recipe: recipes/fashion_mnist_softmax_px.yaml\n"
        f"    baseline_recipe: {tmp_path / 'base.yaml'}\n"
        "    dataset: d\n"
        "    hf_hub_id: me/x\n"
    )
    findings = {f.check: f for f in check_zoo(manifest, repo_root=REPO)}
    bad = findings["differs only in attention"]
    assert not bad.ok and bad.detail == "also differs in optim.lr"


def test_hub_list_prints_every_entry(capsys):
    assert main(["hub", "list"]) == 0
    out = capsys.readouterr().out
    assert all(v.name in out for v in load_manifest())
    assert main(["hub", "list", "--markdown"]) == 0
    assert capsys.readouterr().out.strip() == markdown_table(zoo_rows())
