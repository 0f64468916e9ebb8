"""benchmarks/study_report_v2.py on small synthetic records (no training; issue 12)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import study_report  # noqa: E402
import study_report_v2 as report  # noqa: E402


def record(regime, arm, seed, value, *, epochs=40, multilabel=False, curve=None, **extra):
    """One run's JSON line with the study's schema; ``value`` is test top-1 (or mAP)."""
    metric = "mAP" if multilabel else "top1"
    row = {
        "regime": regime,
        "arm": arm,
        "seed": seed,
        "attention": {"method": "none"},
        "epochs": epochs,
        "git": "abc1234",
        "device": "cpu: test",
        "torch": "2.x",
        "date": "2026-12-01",
        f"train_{metric}": value + 0.05,
        "train_samples": 3000,
        "test_samples": 10000,
        f"test_{metric}": value,
        "siou_inner": 0.3,
        "siou_last": 0.4,
        "consistency": 0.4,
        "zero_target_inner": 0.0,
        "zero_confusing_inner": 0.0,
        "zero_target_last": 0.01,
        "zero_confusing_last": 0.2,
        "pointing_inner": 0.9,
        "energy_inner": 0.7,
        "confusing_energy_inner": 0.6,
        "pointing_last": 0.95,
        "energy_last": 0.5,
        "confusing_energy_last": 0.25,
        "confused_error": 0.3,
        "per_class_top1": {},
        "confused_pairs": [],
        "eval_curve": curve
        if curve is not None
        else [[i, value - 0.001 * (6 - i)] for i in range(6)],
        "wall_s": 660.0,
        "train_wall_s": 600.0,
        **extra,
    }
    return row


def write(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def rows_of(text: str, arm: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(f"| {arm} |")]


BASE = [0.80, 0.82, 0.84]
ARM = [0.81, 0.84, 0.87]  # diffs 0.01, 0.02, 0.03


def test_paired_interval_matches_a_hand_computation():
    diffs = [0.01, 0.02, 0.03]
    mean, half = study_report.paired_interval(diffs)
    # mean 0.02, sample sd 0.01, t_{0.975}(2) = 4.303: 4.303 * 0.01 / sqrt(3) = 0.02484
    assert mean == pytest.approx(0.02)
    assert half == pytest.approx(4.3027 * 0.01 / math.sqrt(3))
    assert half == pytest.approx(0.02484, abs=1e-5)
    assert study_report.paired_interval([0.01]) is None
    assert study_report.t_quantile(1) == pytest.approx(12.706, abs=1e-3)
    assert study_report.t_quantile(30) == pytest.approx(2.0423, abs=1e-4)
    assert study_report.t_quantile(60) == pytest.approx(2.0003, abs=1e-3)  # past the table
    assert report.sign_count([0.01, -0.02, 0.03]) == "2/3 seeds better"


def test_regime_table_paired_difference_interval_and_sign():
    records = [record("clutter", "baseline", s, v) for s, v in zip((1, 2, 3), BASE, strict=True)]
    records += [record("clutter", "paper_px", s, v) for s, v in zip((1, 2, 3), ARM, strict=True)]
    text = report.render(records)
    (row,) = [r for r in rows_of(text, "paper_px") if "seeds better" in r]
    # Δ in points: mean +2.00, half-width 2.484 -> [-0.48, +4.48]
    assert "+2.00 [-0.48, +4.48]" in row
    assert "3/3 seeds better" in row
    assert "better in every seed (sign test p = 0.125)" in row
    assert "84.00 ± 3.00" in row  # test top-1 of the arm, mean ± sample sd
    assert "10.0 / 11.0" in row  # minutes of training / of the run
    # The best arm gets 5 planned seeds, like the baseline; softmax_ch has none yet.
    assert "baseline 3/5 (seeds 4, 5)" in text
    assert "paper_px 3/5 (seeds 4, 5)" in text
    assert "softmax_ch 0/3" in text and "softmax_px 0/5" in text  # a main arm: 5
    assert "--regimes clutter --arms paper_px --seeds 4 5" in text  # not in the plan's 5


def test_a_resumed_run_is_left_out_of_the_cost():
    records = [record("clutter", "baseline", s, v) for s, v in zip((1, 2, 3), BASE, strict=True)]
    records += [record("clutter", "paper_px", s, v) for s, v in zip((1, 2), ARM[:2], strict=True)]
    # seed 3 resumed at epoch 30 of 40: its clocks hold a quarter of the run
    records.append(
        record(
            "clutter", "paper_px", 3, ARM[2], resumed_from_epoch=30, wall_s=210, train_wall_s=150
        )
    )
    text = report.render(records)
    (row,) = [r for r in rows_of(text, "paper_px") if "seeds better" in r]
    assert "| 3 |" in row and "+2.00 [-0.48, +4.48]" in row  # its accuracy still counts
    assert row.endswith("| 10.0 / 11.0 |")  # not (600 + 600 + 150) / 3 s = 7.5 min


def test_a_run_on_more_threads_is_left_out_of_the_cost():
    records = [record("clutter", "baseline", s, v) for s, v in zip((1, 2, 3), BASE, strict=True)]
    # seed 3 trained on two threads: faster, so its minutes would pull the mean down
    records[2] = {**records[2], "device": "cpu: AMD EPYC, 2 thread(s)", "wall_s": 60.0}
    records[1] = {**records[1], "device": "cpu: AMD EPYC, 1 thread(s)"}
    (row,) = [r for r in rows_of(report.render(records), "baseline") if "| - | - |" in r]
    assert "| 3 |" in row and row.endswith("| 10.0 / 11.0 |")  # not (660 + 660 + 60) / 3 s


def test_mixed_signs():
    arm = [0.81, 0.81, 0.87]  # diffs +0.01, -0.01, +0.03
    records = [record("clutter", "baseline", s, v) for s, v in zip((1, 2, 3), BASE, strict=True)]
    records += [record("clutter", "softmax_px", s, v) for s, v in zip((1, 2, 3), arm, strict=True)]
    (row,) = [r for r in rows_of(report.render(records), "softmax_px") if "seeds better" in r]
    assert "2/3 seeds better" in row and "mixed signs" in row


def test_multi_reports_map():
    records = [
        record("multi", "baseline", s, v, epochs=20, multilabel=True)
        for s, v in zip((1, 2, 3), BASE, strict=True)
    ] + [
        record("multi", "paper_ch", s, v, epochs=20, multilabel=True)
        for s, v in zip((1, 2, 3), ARM, strict=True)
    ]
    text = report.render(records)
    section = text.split("## Regime `multi`")[1].split("## ")[0]
    assert "| test mAP | Δ mAP [95% CI] |" in section
    (row,) = [r for r in rows_of(section, "paper_ch") if "seeds better" in r]
    assert "84.00 ± 3.00" in row and "+2.00 [-0.48, +4.48]" in row
    assert "89.00 ± 3.00" in row  # train mAP
    # multi's minor arms plan one seed; here paper_ch is the best arm, so it plans 5 like
    # the main arms.
    assert "paper_ch 3/5 (seeds 4, 5)" in section
    assert "paper_px 0/1" in section and "softmax_ch 0/1" in section
    assert "softmax_px 0/5" in section
    # its extra seeds start after multi's one minor seed, and only seed 1 is in the plan
    assert "--regimes multi --arms paper_ch --seeds 2 3 4 5 --out" in text
    assert "4 of 55 planned runs are in" in text  # baseline 1-3 and paper_ch 1


def test_partial_data_renders(tmp_path):
    # One seed of two arms in clutter, nothing elsewhere, no convergence files on disk.
    records = [record("clutter", "baseline", 1, 0.85), record("clutter", "paper_px", 1, 0.82)]
    text = report.render(records, report.read_convergence([tmp_path / "absent.jsonl"]))
    assert "-3.00 (one seed)" in text
    assert "too few seeds (1)" in text
    for regime in ("multi", "transfer", "full"):
        assert f"## Regime `{regime}`: no runs yet" in text
    assert "paper_px 1/5 (seeds 2, 3, 4, 5)" in text  # the best (only) arm so far
    assert "softmax_px 0/5" in text
    # make study-v2's plan, as the runner counts it: clutter 19, multi 13, transfer 13, full 10
    assert "the study is still running: 2 of 55 planned runs are in." in text
    variants = [
        record("clutter", "softmax_px_every4", 1, 0.85),
        record("clutter", "baseline", 9, 0.8),
    ]
    assert "2 of 55 planned runs are in" in report.render(records + variants)  # not planned
    assert "| transfer | `fashion_mnist_clutter_transfer` | 2000 | 24 |" in text
    transfer = text.split("## Regime `transfer`")[1].split("## ")[0]
    assert (
        "5 seeds for baseline and softmax_px and the best arm, 1 for each other arm (13 runs)"
        in transfer
    )
    empty = report.render([])
    assert "## Regime `clutter`: no runs yet" in empty
    assert "--seeds 4 5" not in empty  # no best arm outside the main ones to add seeds to


def test_a_complete_plan_says_so():
    # Every run make study-v2 plans, with the multi regime's metric: the header says all are in.
    records = [
        record(regime, arm, seed, 0.8, multilabel=regime == "multi")
        for regime in report.V2_REGIMES
        for arm, seeds in report.planned_seeds(regime, None).items()
        for seed in range(1, seeds + 1)
    ]
    assert len(records) == 55
    text = report.render(records)
    assert "do not edit by hand; all 55 planned runs are in." in text
    assert "still running" not in text and "**Missing:** nothing" in text


def test_convergence_table_and_last_evals(tmp_path):
    probes = [
        write(tmp_path / f"p{e}.jsonl", [record("clutter", "baseline", 1, v, epochs=e)])
        for e, v in ((20, 0.803), (40, 0.852), (80, 0.854))
    ]
    base = record("clutter", "baseline", 1, 0.852, curve=[[i, 0.80 + i / 100] for i in range(8)])
    text = report.render([base], report.read_convergence(probes), sources=probes)
    assert "| 20 | `p20.jsonl` | 80.30 | 85.30 |" in text
    assert "| 80 | `p80.jsonl` | 85.40 | 90.40 |" in text
    assert "+4.90 points from 20 to 40 epochs; +0.20 points from 40 to 80 epochs" in text
    assert "| 1 | 8 | 83.00, 84.00, 85.00, 86.00, 87.00 | +4.00 |" in text
    assert text.count("| 11.0 |") == 3  # 660 s per probe, trained in one go


def test_a_resumed_probe_shows_no_cost(tmp_path):
    # Its clocks cover only the epochs after the resume, so its minutes would read too low.
    probes = [
        write(tmp_path / "p20.jsonl", [record("clutter", "baseline", 1, 0.80, epochs=20)]),
        write(
            tmp_path / "p40.jsonl",
            [record("clutter", "baseline", 1, 0.85, epochs=40, resumed_from_epoch=31)],
        ),
    ]
    base = record("clutter", "baseline", 1, 0.85)
    text = report.render([base], report.read_convergence(probes), sources=probes)
    assert "| 20 | `p20.jsonl` | 80.00 | 85.00 |" in text
    assert text.split("| 20 | `p20.jsonl` |")[1].split("\n")[0].endswith("| 11.0 |")
    assert (
        text.split("| 40 | `p40.jsonl` |")[1].split("\n")[0].endswith("| - (resumed at epoch 31) |")
    )
    two = write(tmp_path / "p80.jsonl", [record("clutter", "baseline", 1, 0.86, epochs=80)])
    two.write_text(two.read_text().replace('"cpu: test"', '"cpu: AMD EPYC, 2 thread(s)"'))
    text = report.render([base], report.read_convergence([two]), sources=[two])
    assert text.split("| 80 | `p80.jsonl` |")[1].split("\n")[0].endswith("| - (2 threads) |")


def test_a_probe_longer_than_the_schedule_reads_against_the_regimes_own_run(tmp_path):
    # full: the regime's seed-1 baseline (15 epochs) lives in the main results, the probe
    # (30 epochs) in its own file; a probe at the regime's own budget would win over it.
    probe = write(tmp_path / "f30.jsonl", [record("full", "baseline", 1, 0.9421, epochs=30)])
    rows = [
        record("full", "baseline", 1, 0.9377, epochs=15),
        record("full", "baseline", 2, 0.9404, epochs=15),
    ]
    results = tmp_path / "results_v2.jsonl"
    text = report.render(rows, report.read_convergence([probe]), results, sources=[probe])
    full = text.split("## Regime `full`")[1]
    assert "| 15 | `results_v2.jsonl` | 93.77 |" in full
    assert "| 30 | `f30.jsonl` | 94.21 |" in full
    assert "Test top-1 changes by +0.44 points from 15 to 30 epochs." in full
    assert "`results_v2.jsonl` |" not in report.render(rows, [], results)  # no probe, no table
    # Once the regime moves to the probe's budget, its 15-epoch runs are the earlier file's
    # and still give the table its first row.
    now = [record("full", "baseline", 1, 0.9453, epochs=30)]
    full15 = report.EARLIER["full"][0].name
    earlier = [{**r, "_source": full15} for r in rows]
    text = report.render(now, report.read_convergence([probe]), results, [probe], earlier=earlier)
    convergence = text.split("Convergence of the seed-1 baseline (`full`")[1]
    assert f"| 15 | `{full15}` | 93.77 |" in convergence
    assert "+0.44 points from 15 to 30 epochs" in convergence  # the probe wins at 30


def test_check_detects_a_stale_file(tmp_path, capsys):
    results = write(tmp_path / "results_v2.jsonl", [record("clutter", "baseline", 1, 0.85)])
    probe = write(tmp_path / "probe.jsonl", [record("clutter", "baseline", 1, 0.85)])
    out = tmp_path / "STUDY_V2.md"
    args = ["--results", str(results), "--convergence", str(probe), "--out", str(out)]
    assert report.main([*args, "--check"]) == 1  # no file yet
    assert report.main(args) == 0
    assert report.main([*args, "--check"]) == 0
    with results.open("a") as file:
        file.write(json.dumps(record("clutter", "paper_px", 1, 0.82)) + "\n")
    assert report.main([*args, "--check"]) == 1
    assert "differs from" in capsys.readouterr().out


def test_each_regime_shows_its_own_probes_in_its_metric(tmp_path):
    clutter = write(tmp_path / "c40.jsonl", [record("clutter", "baseline", 1, 0.852)])
    multi = [
        write(
            tmp_path / f"m{e}.jsonl", [record("multi", "baseline", 1, v, epochs=e, multilabel=True)]
        )
        for e, v in ((40, 0.919), (80, 0.931))
    ]
    sources = [clutter, *multi]
    rows = [
        record("clutter", "baseline", 1, 0.852),
        record("multi", "baseline", 1, 0.931, epochs=80, multilabel=True),
    ]
    text = report.render(rows, report.read_convergence(sources), sources=sources)
    clutter_part, multi_part = text.split("## Regime `clutter`")[1].split("## Regime `multi`")
    assert "`m40.jsonl`" not in clutter_part and "`c40.jsonl`" not in multi_part
    assert "| 40 | `m40.jsonl` | 91.90 | 96.90 |" in multi_part
    assert "Test mAP changes by +1.20 points from 40 to 80 epochs." in multi_part


def test_localisation_is_paired_against_the_baseline_of_each_seed():
    base = [
        record("clutter", "baseline", s, 0.85, pointing_last=p)
        for s, p in ((1, 0.98), (2, 0.97), (3, 0.99))
    ]
    arm = [
        record("clutter", "softmax_px", s, 0.85, pointing_last=p)
        for s, p in ((1, 0.88), (2, 0.89), (3, 0.87))
    ]
    text = report.render(base + arm)
    # pointing: -10, -8, -12 points: mean -10, sd 2, t(2) = 4.3027 -> half 4.968
    assert (
        "| softmax_px | -10.00 [-14.97, -5.03] | +0.00 [+0.00, +0.00] | +0.00 [+0.00, +0.00] |"
        in text
    )
    no_boxes = [{**r, "pointing_last": None} for r in base + arm]
    assert "Localisation against the baseline" not in report.render(no_boxes)


def test_earlier_unconverged_runs_are_summarised_apart_from_the_verdict():
    """Runs at a schedule that had not converged (``EARLIER``) get their own paired table under
    the regime, and neither their runs nor their Δ reach the regime's table or its plan."""
    current = [record("transfer", "baseline", 1, 0.84, epochs=24)]
    earlier = [
        record("transfer", "baseline", s, v, epochs=12)
        for s, v in zip((1, 2, 3), BASE, strict=True)
    ]
    earlier += [
        record("transfer", "softmax_px", s, v, epochs=12)
        for s, v in zip((1, 2, 3), ARM, strict=True)
    ]
    source = report.EARLIER["transfer"][0].name
    text = report.render(current, earlier=[{**r, "_source": source} for r in earlier])
    transfer = text.split("## Regime `transfer`")[1].split("## Regime `full`")[0]
    table, apart = transfer.split("Earlier runs at 12 epochs")
    assert "softmax_px 0/5" in table and rows_of(table, "softmax_px") == []
    assert "Localisation against the baseline" not in table  # no arm to pair yet
    assert rows_of(apart, "softmax_px") == [
        "| softmax_px | 3 | 84.00 ± 3.00 | +2.00 [-0.48, +4.48] | 3/3 seeds better |"
    ]
    assert "(3 + 3)" not in text and "earlier `transfer` runs in" in text
    assert "Earlier runs" not in report.render(current)  # nothing to summarise


def test_each_earlier_schedule_gets_its_own_table_shortest_first():
    """A regime that moved twice (full: 15, then 30, then 60 epochs) keeps one paired table per
    earlier file, in ``EARLIER``'s order, each naming its file and counted in the header."""
    full15, full30 = report.EARLIER["full"]
    earlier = [
        {**record("full", arm, s, v + (0.01 if epochs == 30 else 0), epochs=epochs), "_source": f}
        for epochs, f in ((30, full30.name), (15, full15.name))
        for arm, values in (("baseline", BASE), ("softmax_px", ARM))
        for s, v in zip((1, 2, 3), values, strict=True)
    ]
    text = report.render([record("full", "baseline", 1, 0.95, epochs=60)], earlier=earlier)
    full = text.split("## Regime `full`")[1]
    first, second = full.split("Earlier runs at ")[1:]
    assert first.startswith(f"15 epochs (`benchmarks/study/{full15.name}`)")
    assert second.startswith(f"30 epochs (`benchmarks/study/{full30.name}`)")
    assert rows_of(first, "baseline")[0].split(" | ")[2] == "82.00 ± 2.00"
    assert rows_of(second, "baseline")[0].split(" | ")[2] == "83.00 ± 2.00"
    assert f"`benchmarks/study/{full15.name}` (6), `benchmarks/study/{full30.name}` (6)" in text
