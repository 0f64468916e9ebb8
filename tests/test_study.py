"""The study of issue 7: its code path end to end on a tiny image folder, and STUDY.md is what
the committed JSON lines give."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import study_fashion_mnist as study  # noqa: E402
import study_report  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """``DIR/{train,test}/<class>/*.png``: 3 classes of 28 x 28 grayscale images."""
    root = tmp_path_factory.mktemp("tiny_fmnist")
    rng = np.random.default_rng(1)
    for split, count in (("train", 8), ("test", 4)):
        for c, name in enumerate(("Shirt", "Coat", "Bag")):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 200, (28, 28), dtype=np.uint8)
                pixels[4 + 8 * c : 12 + 8 * c] = 255  # a class-specific bright band
                Image.fromarray(pixels, mode="L").save(root / split / name / f"{i}.png")
    return root


def test_study_end_to_end_resumes_and_reports(folder, tmp_path, capsys):
    out, runs = tmp_path / "results.jsonl", tmp_path / "runs"
    argv = [
        "--regimes",
        "short",
        "--arms",
        "baseline",
        "paper_px",
        "--seeds",
        "1",
        "2",
        "--out",
        str(out),
        "--runs-dir",
        str(runs),
        *("--set", "data.source=imagefolder", "--set", f"data.path={folder}"),
        *("--set", "schedule.epochs=1", "--set", "schedule.warmup_epochs=0"),
        *("--set", "data.batch_size=8", "--set", "data.eval_batch_size=8"),
        *("--set", "data.max_eval_samples=null"),
    ]
    assert study.main(argv) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["arm"], r["seed"]) for r in records] == [
        ("baseline", 1),
        ("baseline", 2),
        ("paper_px", 1),
        ("paper_px", 2),
    ]
    for r in records:
        assert r["regime"] == "short" and r["epochs"] == 1 and r["test_samples"] == 12
        assert r["train_samples"] == 24  # the regime caps at 10,000; the folder has 24
        assert 0 <= r["test_top1"] <= 1 and 0 <= r["train_top1"] <= 1
        assert 0 <= r["siou_last"] <= 1 and 0 <= r["zero_confusing_last"] <= 1
        assert set(r["per_class_top1"]) == {"Shirt", "Coat", "Bag"}
        assert r["confused_error"] == pytest.approx(
            1 - (r["per_class_top1"]["Shirt"] + r["per_class_top1"]["Coat"]) / 2
        )
        assert r["git"] and r["device"].startswith("cpu") and r["wall_s"] > 0
    assert records[0]["attention"]["method"] == "none"
    assert records[2]["attention"]["method"] == "pixel"
    # Resumable: a second call finds every run done and trains nothing.
    capsys.readouterr()
    assert study.main(argv) == 0
    assert "4 of 4 runs already" in capsys.readouterr().out
    assert len(out.read_text().splitlines()) == 4
    # Report: computed from the lines, paired by seed.
    text = study_report.render(study_report.read_results(out))
    assert "## Regime `short`" in text and "| paper_px | 2 |" in text
    by = {(r["arm"], r["seed"]): r["test_top1"] for r in records}
    diff = ((by["paper_px", 1] - by["baseline", 1]) + (by["paper_px", 2] - by["baseline", 2])) / 2
    assert f"{diff * 100:+.2f} points" in text
    assert "too few seeds (2)" in text


def test_warmup_arm_is_a_share_of_the_regime_epochs(tmp_path):
    cfg = study.run_config("long", "warmup_px", 3, [], tmp_path)
    assert cfg.attention.warmup_epochs == pytest.approx(0.4 * study.REGIMES["long"]["epochs"])
    assert cfg.seed == 3 and cfg.data.max_train_samples == study.REGIMES["long"]["train_samples"]
    assert study.run_config("short", "baseline", 1, [], tmp_path).supervised is False


def test_verdict_needs_every_seed():
    assert study_report.verdict([0.1, 0.2, 0.3]) == "better in every seed (sign test p = 0.125)"
    assert (
        study_report.verdict([-0.1, -0.2, -0.3, -1]) == "worse in every seed (sign test p = 0.0625)"
    )
    assert study_report.verdict([0.1, -0.2, 0.3]) == "mixed signs"
    assert study_report.verdict([0.1, 0.2]) == "too few seeds (2)"


def test_committed_report_is_reproduced_from_the_committed_results(capsys):
    assert study_report.main(["--check"]) == 0, capsys.readouterr().out


def test_the_named_recipe_trains_exactly_what_the_study_measured(tmp_path):
    from discatt_timm.recipes import load_recipe, recipe_diff

    measured = study.run_config("short", "softmax_px", 1, [], tmp_path)
    named = load_recipe("fashion_mnist_softmax_px")
    differ = set(recipe_diff(measured, named))
    bookkeeping = {"name", "description", "output_dir", "data.max_eval_samples"}
    assert differ - bookkeeping <= {k for k in differ if k.startswith(("eval.", "checkpoint."))}
    assert named.attention.normalize == "softmax" and named.attention.method == "pixel"
