"""Zoo cards: both attention panels, the split and its size, the spread over a study's seeds."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import yaml
from huggingface_hub import ModelCard
from PIL import Image
from test_hub import _train

from discatt_timm import hub
from discatt_timm.cli import main
from discatt_timm.errors import PublishError
from discatt_timm.spread import seed_spread


def _panel(path: Path, color: str) -> None:
    Image.new("RGB", (6, 4), color).save(path)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """One tiny trained run, as a supervised run and a cross-entropy baseline, with panels."""
    tmp = tmp_path_factory.mktemp("cards")
    trained = _train(tmp, "cifar_resnet20", 16, "tiny")
    model, baseline, bare = tmp / "model", tmp / "baseline", tmp / "bare_baseline"
    for run in (model, baseline, bare):
        shutil.copytree(trained, run)
    _panel(model / "attention_maps.png", "red")
    _panel(baseline / "attention_maps.png", "blue")
    for run in (baseline, bare):
        recipe = yaml.safe_load((run / "recipe.yaml").read_text())
        recipe["attention"]["method"] = "none"
        (run / "recipe.yaml").write_text(yaml.safe_dump(recipe))
        metrics = json.loads((run / "metrics.json").read_text())
        metrics["top1"] = 0.125  # tell the baseline's column from the model's
        (run / "metrics.json").write_text(json.dumps(metrics))
    return {"model": model, "baseline": baseline, "bare": bare}


def _record(regime: str, arm: str, seed: int, **metrics: float | None) -> dict:
    return {"regime": regime, "arm": arm, "seed": seed, "attention": {}, **metrics}


# Known values; the baseline arm has seeds 1, 2, 4, so the pairs are seeds 1 and 2.
RECORDS = [
    _record("r", "sup", 1, test_top1=0.80, siou_last=0.10, consistency=0.5, pointing_last=0.9),
    _record("r", "sup", 2, test_top1=0.84, siou_last=0.20, consistency=0.6),
    _record("r", "sup", 3, test_top1=0.82, siou_last=0.30, consistency=None),
    _record("r", "baseline", 1, test_top1=0.78, siou_last=0.40, consistency=0.4),
    _record("r", "baseline", 2, test_top1=0.80, siou_last=0.50, consistency=0.8),
    _record("r", "baseline", 4, test_top1=0.76, siou_last=0.60, consistency=math.nan),
    _record("other", "sup", 1, test_top1=0.10, siou_last=0.90),  # another regime: left out
]
# metric name, better, arm, baseline, paired difference (sup - baseline), better in
EXPECTED_ROWS = [
    (
        "top-1 accuracy",
        "higher",
        "0.8200 ± 0.0200 (3)",
        "0.7800 ± 0.0200 (3)",
        "0.0300 ± 0.0141 (2)",
        "2 of 2",
    ),
    (
        "attention sIoU, last layer",
        "lower",
        "0.2000 ± 0.1000 (3)",
        "0.5000 ± 0.1000 (3)",
        "-0.3000 ± 0.0000 (2)",
        "2 of 2",
    ),
    (
        "attention consistency loss",
        "lower",
        "0.5500 ± 0.0707 (2)",
        "0.6000 ± 0.2828 (2)",
        "-0.0500 ± 0.2121 (2)",
        "1 of 2",
    ),
    ("pointing game, last layer", "higher", "0.9000 (1)", "—", "—", "—"),
]


def _jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    return _jsonl(tmp_path_factory.mktemp("study") / "results.jsonl", RECORDS)


@pytest.fixture(scope="module")
def full_folder(runs, study, tmp_path_factory) -> Path:
    """The folder of the model with its baseline and the study's spread."""
    out = tmp_path_factory.mktemp("pub") / "full"
    hub.publish(
        runs["model"],
        local_dir=out,
        baseline_dir=runs["baseline"],
        seeds=study,
        regime="r",
        arm="sup",
    )
    return out


def test_folder_holds_both_panels_and_the_card_shows_them_in_order(runs, full_folder):
    assert (full_folder / "attention_maps.png").read_bytes() == (
        runs["model"] / "attention_maps.png"
    ).read_bytes()
    assert (full_folder / hub.BASELINE_PANEL).read_bytes() == (
        runs["baseline"] / "attention_maps.png"
    ).read_bytes()
    text = (full_folder / "README.md").read_text()
    assert text.count("### Attention maps of this model and of its baseline") == 1
    ours = text.index("![attention maps of this model](attention_maps.png)")
    theirs = text.index("![attention maps of the baseline](baseline_attention_maps.png)")
    assert ours < theirs
    assert "*This model (`attention_maps.png`).*" in text
    assert "*The cross-entropy baseline (`baseline_attention_maps.png`).*" in text


def test_card_model_index_still_equals_metrics_json(runs, full_folder):
    card = ModelCard.load(full_folder / "README.md")
    metrics = json.loads((runs["model"] / "metrics.json").read_text())
    recorded = {r.metric_type: r.metric_value for r in card.data.eval_results}
    expected = {t: metrics[k] for k, (t, _) in hub.METRICS.items() if k in metrics}
    assert recorded == expected and recorded["accuracy"] != 0.125  # not the baseline's


def test_without_a_baseline_panel_the_card_keeps_its_single_image(runs, tmp_path):
    out = Path(hub.publish(runs["model"], local_dir=tmp_path / "pub", baseline_dir=runs["bare"]))
    text = (out / "README.md").read_text()
    assert not (out / hub.BASELINE_PANEL).exists()
    assert "\n![attention maps](attention_maps.png)\n" in text
    assert "baseline_attention_maps" not in text and "### Attention maps" not in text
    assert "| top-1 accuracy |" in text and "| 0.1250 |" in text  # the baseline's column
    assert "Spread over the study's seeds" not in text


def test_results_heading_names_the_split_and_its_size(runs, full_folder, tmp_path):
    metrics = json.loads((runs["model"] / "metrics.json").read_text())
    text = (full_folder / "README.md").read_text()
    heading = f"## Results (measured on the `{metrics['split']}` split, {metrics['num_samples']}"
    assert f"{heading} images, by the training run: `metrics.json`)" in text
    unsized = tmp_path / "unsized"
    shutil.copytree(runs["model"], unsized)
    del metrics["num_samples"]
    (unsized / "metrics.json").write_text(json.dumps(metrics))
    text = str(hub.build_model_card(unsized))
    assert "## Results (measured on the `test` split, by the training run: `metrics.json`)" in text


def test_seed_table_gives_the_hand_computed_spread(full_folder, study):
    text = (full_folder / "README.md").read_text()
    section = text.split("## Spread over the study's seeds", 1)[1].split("## Training")[0]
    prose = " ".join(section.split("| metric |")[0].split())
    assert f"results file `{study}`, regime `r`: arm `sup` (seeds 1, 2, 3)" in prose
    assert "baseline arm `baseline` (seeds 1, 2, 4)" in prose
    assert "Lower is better for sIoU, the consistency loss and the confusing class's" in prose
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0] == "| metric | better | `sup` | `baseline` | difference | better in |"
    assert rows[1:] == ["| " + " | ".join(row) + " |" for row in EXPECTED_ROWS]


def test_seed_spread_numbers_are_the_statistics_of_the_pairs(study):
    spread = seed_spread(study, regime="r", arm="sup", baseline_arm="baseline")
    top1 = {row.key: row for row in spread.rows}["top1"]
    assert top1.arm.mean == pytest.approx(0.82) and top1.arm.sd == pytest.approx(0.02)
    assert top1.baseline.mean == pytest.approx(0.78) and top1.baseline.n == 3
    assert top1.difference.mean == pytest.approx(0.03)
    assert top1.difference.sd == pytest.approx(math.sqrt(2) * 0.01) and top1.better == 2
    assert [row.key for row in spread.rows] == ["top1", "siou_last", "consistency", "pointing_last"]


def _bad_study(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


GOOD = json.dumps(RECORDS[0])
DUPLICATE = json.dumps(_record("r", "sup", 1, test_top1=0.5))


@pytest.mark.parametrize(
    ("lines", "options", "message"),
    [
        (None, {}, r"--seeds \S+missing.jsonl does not exist"),
        ([GOOD, "{not json"], {}, r"is not JSON lines: line 2 is not JSON"),
        ([GOOD, "", "[1, 2]"], {}, r"line 3 is a list, not a JSON object"),
        ([GOOD, '{"regime": "r", "arm": "sup"}'], {}, r"line 2 has no seed"),
        ([GOOD, DUPLICATE], {}, r"lines 1 and 2 are both seed 1 of regime 'r', arm 'sup'"),
        (RECORDS, {"regime": "x"}, r"no record for --regime 'x'; it has regimes other, r$"),
        (RECORDS, {"arm": "sap"}, r"--arm 'sap' in regime 'r'; it has arms baseline, sup; did"),
        (RECORDS, {"baseline_arm": "ce"}, r"--baseline-arm 'ce' in regime 'r'; it has arms"),
        (RECORDS, {"arm": None}, r"needs --regime and --arm"),
        (RECORDS, {"arm": "baseline"}, r"--arm 'baseline' is the baseline arm itself"),
    ],
)
def test_bad_study_is_one_line_and_writes_nothing(runs, tmp_path, lines, options, message):
    if lines is None:
        path = tmp_path / "missing.jsonl"
    elif lines is RECORDS:
        path = _jsonl(tmp_path / "study.jsonl", RECORDS)
    else:
        path = _bad_study(tmp_path, lines)
    kwargs = {"regime": "r", "arm": "sup", "baseline_arm": "baseline", **options}
    out = tmp_path / "out"
    with pytest.raises(PublishError, match=message) as err:
        hub.publish(
            runs["model"], local_dir=out, baseline_dir=runs["baseline"], seeds=path, **kwargs
        )
    assert len(str(err.value).splitlines()) == 1
    assert not out.exists()


def test_regime_without_seeds_is_refused(runs, tmp_path):
    with pytest.raises(PublishError, match=r"without seeds.*--seeds FILE\.jsonl"):
        hub.publish(runs["model"], local_dir=tmp_path / "out", regime="r", arm="sup")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--seeds", "{study}", "--regime", "r"], "needs --arm"),
        (["--seeds", "{study}"], "needs --regime and --arm"),
        (["--arm", "sup"], "--arm without --seeds"),
    ],
)
def test_cli_study_flags_need_each_other(runs, study, tmp_path, capsys, flags, message):
    out = tmp_path / "out"
    argv = [str(runs["model"]), "--local-dir", str(out), *flags]
    assert main(["publish", *(a.format(study=study) for a in argv)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("discatt publish: error: ")
    assert message in err and not out.exists()


def test_cli_publishes_the_spread_against_another_baseline_arm(runs, tmp_path, capsys):
    records = [{**r, "arm": "ce"} if r["arm"] == "baseline" else r for r in RECORDS]
    study = _jsonl(tmp_path / "study.jsonl", records)
    out = tmp_path / "out"
    argv = [str(runs["model"]), "--local-dir", str(out), "--baseline", str(runs["baseline"])]
    argv += ["--seeds", str(study), "--regime", "r", "--arm", "sup", "--baseline-arm", "ce"]
    assert main(["publish", *argv]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    text = (out / "README.md").read_text()
    assert "| metric | better | `sup` | `ce` | difference | better in |" in text
    assert "| " + " | ".join(EXPECTED_ROWS[0]) + " |" in text
    assert (out / hub.BASELINE_PANEL).is_file()


def test_cli_load_name_is_the_name_the_card_loads(runs, tmp_path, capsys):
    out = tmp_path / "out"
    name = "cifar_resnet20.discatt_fashion_mnist_clutter"
    assert main(["publish", str(runs["model"]), "--local-dir", str(out), "--load-name", name]) == 0
    text = (out / "README.md").read_text()
    assert f'timm.create_model("{name}", pretrained=True)' in text
    assert "local-dir:" not in text
