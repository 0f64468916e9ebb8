"""The study of issue 7: its code path end to end on a tiny image folder, and STUDY.md is what
the committed JSON lines give."""

from __future__ import annotations

import json
import shutil
import sys
import tarfile
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
        assert r["resumed_from_epoch"] == 0  # trained in one go: its clocks are its cost
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


def test_scoring_batches_are_the_recipes_eval_batches(folder, tmp_path):
    """The study scores in the recipe's ``eval_batch_size`` (the transfer regime's 128-px
    canvases need smaller batches than 250)."""
    import timm

    settings = [f"data.path={folder}", "data.source=imagefolder", "data.eval_batch_size=5"]
    cfg = study.run_config("short", "baseline", 1, settings, tmp_path)
    model = timm.create_model("cifar_resnet20", num_classes=3, in_chans=1)
    bundle, loader = study._scoring_data(cfg, model, None)
    sizes = [
        len(batch["label"] if isinstance(batch, dict) else batch[1])
        for batch in loader(bundle.eval)
    ]
    assert sizes == [5, 5, 2]  # 12 test images


def test_full_regime_records_a_curve_and_overrides_still_win(tmp_path):
    short = study.run_config("short", "baseline", 1, [], tmp_path)
    full = study.run_config("full", "baseline", 1, [], tmp_path)
    assert full.data.max_train_samples is None and full.schedule.epochs == 60
    assert (full.eval.every_n_epochs, full.data.max_eval_samples) == (1, 2000)
    assert short.eval.every_n_epochs == 1000  # the other regimes keep their recipe's
    mine = study.run_config("full", "baseline", 1, ["eval.every_n_epochs=3"], tmp_path)
    assert mine.eval.every_n_epochs == 3


def test_minor_arms_run_their_regimes_seeds_unless_named():
    plan = study.planned_runs(["multi", "clutter"], None, [1, 2, 3])
    multi = [(a, s) for r, a, s in plan if r == "multi"]
    assert [s for a, s in multi if a == "paper_ch"] == [1]  # multi's minor_seeds: 1
    assert [s for a, s in multi if a == "softmax_px"] == [1, 2, 3]
    assert [s for r, a, s in plan if r == "clutter" and a == "paper_ch"] == [1, 2, 3]
    five = study.planned_runs(["clutter"], None, [1, 2, 3, 4, 5])  # make study-v2's plan
    assert [s for r, a, s in five if a == "paper_px"] == [1, 2, 3]  # minor arms: 3 seeds
    assert [s for r, a, s in five if a == "baseline"] == [1, 2, 3, 4, 5]
    assert [s for r, a, s in five if a == "softmax_px"] == [1, 2, 3, 4, 5]
    named = study.planned_runs(["multi"], ["paper_ch"], [2, 3])  # asked for: run
    assert named == [("multi", "paper_ch", 2), ("multi", "paper_ch", 3)]


def test_verdict_needs_every_seed():
    assert study_report.verdict([0.1, 0.2, 0.3]) == "better in every seed (sign test p = 0.125)"
    assert (
        study_report.verdict([-0.1, -0.2, -0.3, -1]) == "worse in every seed (sign test p = 0.0625)"
    )
    assert study_report.verdict([0.1, -0.2, 0.3]) == "mixed signs"
    assert study_report.verdict([0.1, 0.2]) == "too few seeds (2)"


def test_committed_report_is_reproduced_from_the_committed_results(capsys):
    assert study_report.main(["--check"]) == 0, capsys.readouterr().out


@pytest.mark.parametrize(
    ("recipe", "regime", "arm", "earlier"),
    [
        ("fashion_mnist_softmax_px", "short", "softmax_px", []),
        ("fashion_mnist_softmax_px_baseline", "short", "baseline", []),
        ("fashion_mnist_clutter_softmax_px", "clutter", "softmax_px", []),
        ("fashion_mnist_clutter_softmax_px_baseline", "clutter", "baseline", []),
        ("fashion_mnist_multi_softmax_px", "multi", "softmax_px", []),
        ("fashion_mnist_multi_softmax_px_baseline", "multi", "baseline", []),
        ("fashion_mnist_clutter_transfer_softmax_px", "transfer", "softmax_px", []),
        ("fashion_mnist_clutter_transfer_softmax_px_baseline", "transfer", "baseline", []),
        # The zoo's full pair shipped from the regime's earlier 15-epoch schedule
        # (benchmarks/study/results_v2_full15.jsonl); the regime now trains 60.
        ("fashion_mnist_full_softmax_px", "full", "softmax_px", ["schedule.epochs=15"]),
        ("fashion_mnist_full_softmax_px_baseline", "full", "baseline", ["schedule.epochs=15"]),
    ],
)
def test_the_named_recipe_is_the_studys_seed_1_recipe(tmp_path, recipe, regime, arm, earlier):
    """``make demo``'s pair and the zoo pairs are the study's seed-1 recipe of each arm; only
    evaluation and bookkeeping differ. (``short`` evaluates once, at the end, so the demo pair
    is its run exactly; clutter and multi evaluate every epoch, and each evaluation loader draws
    from torch's RNG, so a zoo run there is a fresh draw of the same recipe.)"""
    from discatt_timm.recipes import load_recipe, recipe_diff

    measured = study.run_config(regime, arm, 1, earlier, tmp_path)
    named = load_recipe(recipe)
    differ = set(recipe_diff(measured, named))
    bookkeeping = {"name", "description", "output_dir", "data.max_eval_samples"}
    assert differ - bookkeeping <= {k for k in differ if k.startswith(("eval.", "checkpoint."))}
    assert named.attention == measured.attention


def test_the_demo_pair_differs_only_in_attention():
    from discatt_timm.recipes import load_recipe, recipe_diff

    differ = recipe_diff(
        load_recipe("fashion_mnist_softmax_px"), load_recipe("fashion_mnist_softmax_px_baseline")
    )
    assert {k.split(".")[0] for k in differ} == {"name", "attention"}
    assert differ["attention.method"] == ("pixel", "none")


def _record(arm, seed, top1, **extra):
    base = {"regime": "short", "arm": arm, "seed": seed, "test_top1": top1, "date": "d1"}
    return {**base, "siou_last": 0.1, "zero_confusing_last": 0.0, "wall_s": 120.0, **extra}


def test_cheaper_section_pairs_each_arm_with_the_baseline_and_softmax_px():
    records = [_record("baseline", s, v) for s, v in ((1, 0.80), (2, 0.82), (3, 0.81))]
    records += [_record("softmax_px", s, v) for s, v in ((1, 0.81), (2, 0.84), (3, 0.81))]
    records += [
        _record("softmax_px_every4", s, v, date="d2", wall_s=60.0)
        for s, v in ((1, 0.82), (2, 0.83), (3, 0.80))
    ]
    lines = study_report.cheaper_section(records, "short")
    row = next(line for line in lines if line.startswith("| softmax_px_every4 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # vs baseline: +2, +1, -1 points: mean 0.667, sd 1.528, t(2) = 4.3027 -> half 3.795
    assert cells[2] == "+0.67 [-3.13, +4.46]"
    assert cells[3] == "2/3 seeds better"
    # vs softmax_px: +1, -1, -1 points: mean -0.333, sd 1.155 -> half 2.868
    assert cells[4] == "-0.33 [-3.20, +2.54]"
    assert cells[7:] == [f"{study_report.STEP_COST['softmax_px_every4']:.2f}x", "1.0", "d2"]
    assert study_report.cheaper_section(records, "long") == []
    no_cheap = [r for r in records if r["arm"] != "softmax_px_every4"]
    assert study_report.cheaper_section(no_cheap, "short") == []


def test_a_paused_run_is_timed_without_its_pause(tmp_path):
    path = tmp_path / "r.jsonl"
    rows = [_record("baseline", 1, 0.8, train_wall_s=100.0), _record("baseline", 2, 0.8)]
    rows[0]["paused_s"] = 30.0
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    first, second = study_report.read_results(path)
    assert (first["wall_s"], first["train_wall_s"]) == (90.0, 70.0)
    assert second["wall_s"] == 120.0


def test_issue15_arms_are_softmax_px_with_one_change_each(tmp_path):
    from discatt_timm.recipes import recipe_diff

    full = study.run_config("short", "softmax_px", 1, [], tmp_path)
    lazy = study.run_config("short", "softmax_px_every4", 1, [], tmp_path)
    part = study.run_config("short", "softmax_px_f0.25", 1, [], tmp_path)
    assert {k for k in recipe_diff(full, lazy) if k != "name"} == {"attention.every"}
    assert lazy.attention.every == 4
    assert {k for k in recipe_diff(full, part) if k != "name"} == {
        "attention.batch_fraction",
        "attention.select",
    }
    assert (part.attention.batch_fraction, part.attention.select) == (0.25, "random")


def test_a_resumed_run_records_the_epochs_its_earlier_attempt_trained(tmp_path):
    run_dir = tmp_path / "transfer-softmax_px-seed4"
    assert study.resumed_epoch(run_dir) == 0  # nothing trained yet
    for step, epoch in ((62, 1), (496, 8)):
        folder = run_dir / "checkpoints" / f"step_{step:09d}"
        folder.mkdir(parents=True)
        (folder / "trainer_state.json").write_text(json.dumps({"epoch": epoch}))
    (run_dir / "checkpoints" / "latest").write_text("step_000000496")
    assert study.resumed_epoch(run_dir) == 8


def test_a_parked_run_resumes_from_a_fresh_clone(folder, tmp_path):
    """A run interrupted after its first epoch is parked, its runs folder is lost (a new
    session's fresh clone), and the next start unpacks it, trains only the second epoch, keeps
    the first epoch's evaluation and deletes the archive."""
    from discatt_timm.rundir import complete_checkpoints
    from discatt_timm.training import train

    settings = [
        *("data.source=imagefolder", f"data.path={folder}", "schedule.epochs=2"),
        *("schedule.warmup_epochs=0", "data.batch_size=8", "data.eval_batch_size=8"),
        *("data.max_eval_samples=null", "eval.every_n_epochs=1", "checkpoint.keep_last=2"),
    ]
    runs, parked, out = tmp_path / "runs", tmp_path / "parked", tmp_path / "results.jsonl"
    train(study.run_config("short", "baseline", 1, settings, runs))
    run_dir = runs / "short-baseline-seed1"
    first, second = complete_checkpoints(run_dir / "checkpoints")[-2:]
    shutil.rmtree(second)  # killed during epoch 2, before its evaluation was logged
    (run_dir / "checkpoints" / "latest").write_text(first.name)
    step = json.loads((first / "trainer_state.json").read_text())["global_step"]
    log = run_dir / "logs" / "metrics.jsonl"
    rows = [line for line in log.read_text().splitlines() if json.loads(line)["step"] <= step]
    log.write_text("\n".join(rows) + "\n")
    argv = ["--regimes", "short", "--arms", "baseline", "--seeds", "1", "--out", str(out)]
    argv += ["--runs-dir", str(runs), "--parked", str(parked)]
    argv += [arg for setting in settings for arg in ("--set", setting)]

    assert study.main([*argv, "--park"]) == 0
    archive = parked / "short-baseline-seed1.tar"
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert {"recipe.yaml", "checkpoints/latest"} <= names
    assert f"checkpoints/{first.name}/trainer_state.json" in names
    assert not [name for name in names if second.name in name]

    shutil.rmtree(runs)
    assert study.main(argv) == 0
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["resumed_from_epoch"] == 1
    assert len(record["eval_curve"]) == 2  # the parked epoch's evaluation came along
    assert not archive.exists()


def test_unparking_never_replaces_a_checkpoint_nor_writes_outside_the_run(tmp_path):
    import study_parking

    run_dir, parked = tmp_path / "runs" / "full-baseline-seed3", tmp_path / "parked"
    parked.mkdir()
    with tarfile.open(parked / "full-baseline-seed3.tar", "w") as tar:
        tar.add(__file__, arcname="../escaped.py")
    with pytest.raises(SystemExit, match="full-baseline-seed3.tar cannot be unpacked"):
        study_parking.unpark(run_dir, parked)
    assert not (tmp_path / "runs" / "escaped.py").exists()
    folder = run_dir / "checkpoints" / "step_000000010"
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text(json.dumps({"epoch": 4}))
    assert study_parking.unpark(run_dir, parked) is False  # its own checkpoint wins
    assert study.resumed_epoch(run_dir) == 4


def test_a_parked_folder_that_is_a_file_is_refused_in_one_line(tmp_path, capsys):
    (tmp_path / "parked").write_text("not a folder")
    argv = [
        "--regimes",
        "full",
        "--out",
        str(tmp_path / "r.jsonl"),
        "--parked",
        str(tmp_path / "parked"),
    ]
    with pytest.raises(SystemExit) as stop:
        study.main([*argv, "--park"])
    assert stop.value.code == 2
    assert "--parked" in capsys.readouterr().err and not (tmp_path / "r.jsonl").exists()
