"""Write ``benchmarks/STUDY_V2.md`` from study v2's JSON lines (no hand-typed numbers; issue 12).

    python benchmarks/study_report_v2.py [--results benchmarks/study/results_v2.jsonl]
                                         [--convergence FILE ...] [--out benchmarks/STUDY_V2.md]
                                         [--check]

``--check`` exits 1 when the file on disk differs from what the results give. Everything below
the title is computed here from the records: per regime (``study_fashion_mnist.REGIMES``: clutter,
multi, transfer, full) and arm the mean and sample standard deviation over seeds, the paired
per-seed differences to the baseline with a 95% paired-t interval and a sign count, the map
metrics, the cost per run, the baseline's last evaluation epochs, for clutter and multi the
convergence probes (20 / 40 / 80 epochs), and what is still missing from the plan (3 seeds per
arm, 5 for the baseline and the best arm). While the study runs, a regime or arm without runs
is reported as missing, never an error.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STUDY = HERE / "study"
RESULTS = STUDY / "results_v2.jsonl"
CONVERGENCE = (
    STUDY / "results_v2_clutter20.jsonl",
    STUDY / "probe_clutter_epochs.jsonl",
    STUDY / "probe_clutter_epochs80.jsonl",
    STUDY / "probe_multi_epochs20.jsonl",
    STUDY / "probe_multi_epochs40.jsonl",
    STUDY / "probe_multi_epochs80.jsonl",
    STUDY / "probe_transfer_epochs4.jsonl",
    STUDY / "probe_transfer_epochs12.jsonl",
    STUDY / "probe_transfer_epochs24.jsonl",
    STUDY / "probe_transfer_epochs48.jsonl",
    STUDY / "probe_full_epochs30.jsonl",
    STUDY / "probe_full_epochs60.jsonl",
)
# A regime's runs at earlier schedules that turned out not to have converged, one file per
# schedule: kept apart, summarised under the regime, never in its verdict.
EARLIER: dict[str, tuple[Path, ...]] = {
    "transfer": (STUDY / "results_v2_transfer12.jsonl",),
    "full": (STUDY / "results_v2_full15.jsonl", STUDY / "results_v2_full30.jsonl"),
}
REPORT = HERE / "STUDY_V2.md"
sys.path.insert(0, str(HERE))
from study_fashion_mnist import (  # noqa: E402
    ARM_NOTES,
    ARMS,
    MAIN_V2_ARMS,
    REGIME_ARMS,
    REGIMES,
    minor_seeds,
)
from study_report import (  # noqa: E402
    BASELINE,
    _fmt,
    _interval,
    _mean,
    _mean_std,
    cheaper_section,
    paired_differences,
    sign_count,
    verdict,
    write_or_check,
)
from study_report import read_results as _read_results  # noqa: E402

V2_REGIMES = ("clutter", "multi", "transfer", "full")
PLANNED_SEEDS_TOP = 5  # the main arms (baseline, softmax_px) and the best arm by mean paired Δ
LAST_EVALS = 5


def read_results(path: Path) -> list[dict[str, Any]]:
    """``study_report.read_results``, or no records while ``path`` does not exist yet."""
    return _read_results(path) if path.is_file() else []


def metric_of(rows: Sequence[dict[str, Any]]) -> str:
    """``"mAP"`` for multi-label records, else ``"top1"``."""
    return "mAP" if any("test_mAP" in r for r in rows) else "top1"


def _values(rows: Sequence[dict[str, Any]], key: str) -> list[float]:
    return [r[key] for r in rows if r.get(key) is not None]


def _pair(rows: Sequence[dict[str, Any]], key: str, scale: float = 1.0, digits: int = 3) -> str:
    inner, last = _mean(rows, f"{key}_inner"), _mean(rows, f"{key}_last")
    return f"{_fmt(inner, scale, digits)} / {_fmt(last, scale, digits)}"


def _rel(path: Path) -> str:
    path = Path(path).resolve()
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name


def arm_order(regime: str, arms: set[str]) -> list[str]:
    """The regime's planned arms first (in plan order), then any others in ``ARMS`` order."""
    planned = list(REGIME_ARMS.get(regime, ()))
    return [a for a in planned if a in arms] + [a for a in ARMS if a in arms and a not in planned]


def group(rows: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by_arm: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_arm.setdefault(row["arm"], []).append(row)
    return {arm: sorted(r, key=lambda r: r["seed"]) for arm, r in by_arm.items()}


def arm_diffs(by_arm: dict[str, list[dict[str, Any]]], key: str) -> dict[str, list[float]]:
    """Per non-baseline arm: the paired per-seed differences of ``key`` to the baseline."""
    base = by_arm.get(BASELINE, [])
    return {
        arm: paired_differences(rows, base, key) for arm, rows in by_arm.items() if arm != BASELINE
    }


def best_arm(regime: str, diffs: dict[str, list[float]]) -> str | None:
    """The arm with the highest mean paired difference (plan order breaks ties); None without
    any paired seed."""
    candidates = [a for a in REGIME_ARMS.get(regime, ()) if diffs.get(a)]  # planned arms only
    return max(candidates, key=lambda a: statistics.fmean(diffs[a]), default=None)


def planned_seeds(regime: str, best: str | None) -> dict[str, int]:
    """Seeds planned per arm of ``regime``: 5 for the main arms (``MAIN_V2_ARMS``, what
    ``make study-v2`` runs) and for the best arm, ``minor_seeds(regime)`` for another arm."""
    top = (*MAIN_V2_ARMS, best)
    return {
        arm: PLANNED_SEEDS_TOP if arm in top else minor_seeds(regime)
        for arm in REGIME_ARMS.get(regime, ())
    }


def missing(regime: str, by_arm: dict[str, list[dict[str, Any]]], best: str | None) -> str:
    """One line: the planned arms with fewer seeds than planned (and which seeds)."""
    gaps = []
    for arm, count in planned_seeds(regime, best).items():
        have = {r["seed"] for r in by_arm.get(arm, [])}
        lacking = [s for s in range(1, count + 1) if s not in have]
        if lacking:
            gaps.append(
                f"{arm} {len(have)}/{count} (seeds {', '.join(map(str, lacking))})"
                if have
                else f"{arm} 0/{count}"
            )
    best_text = (
        f"best arm so far by mean paired Δ: {best} (planned 5 seeds)"
        if best
        else "best arm not known yet (no paired seed)"
    )
    if not gaps:
        return f"**Missing:** nothing; every planned run is in ({best_text})."
    best_text = best_text[0].upper() + best_text[1:]
    return f"**Missing** (seeds done / planned): {'; '.join(gaps)}. {best_text}."


def _paired_cells(arm: str, count: int, values: Sequence[float], diffs: Sequence[float]) -> str:
    """A table row's first cells: arm, seeds, mean ± sd in %, Δ with its interval and the sign
    count (dashes for the baseline)."""
    base = arm == BASELINE
    return (
        f"| {arm} | {count} | {_mean_std(values, 100)} | {'-' if base else _interval(diffs)} | "
        f"{'-' if base else sign_count(diffs)} |"
    )


def regime_section(
    regime: str,
    rows: list[dict[str, Any]],
    convergence: Sequence[dict[str, Any]] = (),
    own: Sequence[dict[str, Any]] = (),
) -> list[str]:
    """The markdown lines of one regime (a planned-but-empty one says so); ``own`` are the
    regime's runs (current and earlier schedules) that its convergence table may read."""
    spec = REGIMES[regime]
    recipe = spec.get("recipe", "fashion_mnist_study")
    if not rows:
        arms = REGIME_ARMS.get(regime, ())
        return [
            f"## Regime `{regime}`: no runs yet",
            "",
            f"Planned: `recipes/{recipe}.yaml`, {spec['epochs']} epochs, "
            f"{_samples(spec['train_samples'])} training images; arms "
            f"{', '.join(arms)}; {_seed_plan(regime)} ({_planned_total(regime)} runs).",
            "",
        ]
    by_arm = group(rows)
    metric = metric_of(rows)
    key, train_key = f"test_{metric}", f"train_{metric}"
    label = "mAP" if metric == "mAP" else "top-1"
    diffs = arm_diffs(by_arm, key)
    best = best_arm(regime, diffs)
    arms = arm_order(regime, set(by_arm))
    first = rows[0]
    epochs = sorted({r["epochs"] for r in rows})
    lines = [
        f"## Regime `{regime}`: `recipes/{recipe}.yaml`, {first['train_samples']} training "
        f"images, {', '.join(map(str, epochs))} epochs",
        "",
        f"Test {label} on the {first['test_samples']} test images, in %, mean ± sample sd over "
        "seeds; Δ = arm minus the baseline of the same seed, in points, mean and 95% paired-t "
        f"interval (t quantile for n−1 df); cost = mean minutes of training / of the whole run "
        "(training plus scoring), over the runs trained in one go on one thread (a run resumed "
        "after an interruption is left out: its clocks cover only the rest; so is a run on "
        "more threads, whose minutes do not compare).",
        "",
        f"| arm | seeds | test {label} | Δ {label} [95% CI] | sign | verdict | train {label} | "
        "cost (min) |",
        "| --- | ---: | ---: | ---: | --- | --- | ---: | ---: |",
    ]
    for arm in arms:
        arm_rows = by_arm[arm]
        d = diffs.get(arm, [])
        whole = [r for r in arm_rows if _uncosted(r) is None]
        cost = (
            f"{_fmt(_mean(whole, 'train_wall_s'), 1 / 60, 1)} / "
            f"{_fmt(_mean(whole, 'wall_s'), 1 / 60, 1)}"
        )
        lines.append(
            _paired_cells(arm, len(arm_rows), _values(arm_rows, key), d)
            + f" {'-' if arm == BASELINE else verdict(d)} | "
            f"{_mean_std(_values(arm_rows, train_key), 100)} | {cost} |"
        )
    if any(r.get("siou_last") is not None for r in rows):
        lines += [
            "",
            "Maps (A_px, means over seeds; inner / last layer): sIoU (lower = target and "
            "confusing class more separated); `zero T` / `zero C` = % of target / "
            "confusing-class maps that are all zero; pointing = % of images whose target-map "
            "peak lies in the target's box; energy = share of the target map inside the box; "
            "`C energy` = share of the confusing-class map inside the target's box (last layer).",
            "",
            "| arm | sIoU | zero T % | zero C % | pointing % | energy | C energy last |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for arm in arms:
            r = by_arm[arm]
            lines.append(
                f"| {arm} | {_pair(r, 'siou')} | {_pair(r, 'zero_target', 100, 1)} | "
                f"{_pair(r, 'zero_confusing', 100, 1)} | {_pair(r, 'pointing', 100, 1)} | "
                f"{_pair(r, 'energy')} | {_fmt(_mean(r, 'confusing_energy_last'))} |"
            )
    lines += localisation_diffs(by_arm, arms)
    seeds = sorted({r["seed"] for r in rows})
    lines += [
        "",
        f"Per-seed test {label} (%):",
        "",
        "| arm | " + " | ".join(f"seed {s}" for s in seeds) + " |",
        "| --- |" + " ---: |" * len(seeds),
    ]
    for arm in arms:
        values = {r["seed"]: r.get(key) for r in by_arm[arm]}
        cells = [f"{values[s] * 100:.2f}" if values.get(s) is not None else "-" for s in seeds]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    lines += ["", *last_evals(by_arm.get(BASELINE, []), label)]
    lines += convergence_table(regime, convergence, own=own)
    lines += [missing(regime, by_arm, best), ""]
    return lines


LOCALISATION_DIFFS = (  # key, column, scale
    ("pointing_last", "Δ pointing last (points)", 100.0),
    ("energy_last", "Δ energy last (x 100)", 100.0),
    ("confusing_energy_last", "Δ C energy last (x 100)", 100.0),
)


def localisation_diffs(by_arm: dict[str, list[dict[str, Any]]], arms: Sequence[str]) -> list[str]:
    """Paired per-seed differences of the last layer's localisation metrics to the baseline
    (mean and 95% paired-t interval): does the supervision move the target's map onto the
    object? No lines for data without boxes."""
    base = by_arm.get(BASELINE, [])
    if not any(r.get("pointing_last") is not None for r in base) or set(arms) <= {BASELINE}:
        return []
    lines = [
        "",
        "Localisation against the baseline of the same seed (last layer; mean and 95% paired-t "
        "interval; higher pointing and energy = the target's map more on the object, lower C "
        "energy = the confusing class's map more off it):",
        "",
        "| arm | " + " | ".join(column for _, column, _ in LOCALISATION_DIFFS) + " |",
        "| --- |" + " ---: |" * len(LOCALISATION_DIFFS),
    ]
    for arm in arms:
        if arm == BASELINE:
            continue
        rows = [r for r in by_arm[arm] if r.get("pointing_last") is not None]
        cells = [
            _interval(paired_differences(rows, base, key), scale)
            for key, _, scale in LOCALISATION_DIFFS
        ]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return lines


def last_evals(base: Sequence[dict[str, Any]], label: str) -> list[str]:
    """The baseline's last evaluation epochs per seed (has it stopped rising?)."""
    curves = [(r["seed"], r.get("eval_curve") or []) for r in base]
    curves = [(s, c) for s, c in curves if c]
    if not curves:
        return ["No baseline evaluation curve yet.", ""]
    lines = [
        f"Baseline, last {LAST_EVALS} per-epoch evaluations ({label} in %, on the trainer's "
        "evaluation subset), and the change over them in points:",
        "",
        "| seed | epochs | last evaluations | change |",
        "| ---: | ---: | --- | ---: |",
    ]
    for seed, curve in curves:
        tail = [v for _, v in curve[-LAST_EVALS:]]
        lines.append(
            f"| {seed} | {len(curve)} | {', '.join(f'{v * 100:.2f}' for v in tail)} | "
            f"{(tail[-1] - tail[0]) * 100:+.2f} |"
        )
    return lines + [""]


def _uncosted(row: dict[str, Any]) -> str | None:
    """Why ``row``'s clocks are no single-thread cost of a whole run (None when they are): a
    resumed run's clocks cover only what ran after the resume, and minutes on more threads do
    not compare with the single-thread runs."""
    if row.get("resumed_from_epoch"):
        return f"resumed at epoch {row['resumed_from_epoch']}"
    threads = re.search(r"(\d+) thread", row.get("device", ""))
    if threads and int(threads.group(1)) > 1:
        return f"{threads.group(1)} threads"
    return None


def convergence_table(
    regime: str, records: Sequence[dict[str, Any]], own: Sequence[dict[str, Any]] = ()
) -> list[str]:
    """The seed-1 baseline of ``regime`` at each epoch budget of its probes (no lines when
    it has none), with the regime's own seed-1 baselines from ``own`` (its current and earlier
    schedules' runs) at budgets no probe ran, so a probe reads against the regime's runs."""

    def seed1(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            r for r in rows if r["regime"] == regime and r["arm"] == BASELINE and r["seed"] == 1
        ]

    probes = seed1(records)
    if not probes:
        return []
    budgets = {r["epochs"] for r in probes}
    runs = sorted(
        probes + [r for r in seed1(own) if r["epochs"] not in budgets], key=lambda r: r["epochs"]
    )
    metric = "mAP" if "test_mAP" in runs[0] else "top1"
    label = "mAP" if metric == "mAP" else "top-1"
    lines = [
        f"Convergence of the seed-1 baseline (`{regime}`; the probes, each a full run scored "
        f"on the whole test set; {label} in %):",
        "",
        f"| epochs | file | test {label} | train {label} | last evaluations | min per run |",
        "| ---: | --- | ---: | ---: | --- | ---: |",
    ]
    for r in runs:
        tail = ", ".join(f"{v * 100:.2f}" for _, v in (r.get("eval_curve") or [])[-LAST_EVALS:])
        why = _uncosted(r)
        cost = f"- ({why})" if why else _fmt(r.get("wall_s"), 1 / 60, 1)
        lines.append(
            f"| {r['epochs']} | `{r['_source']}` | {_fmt(r.get(f'test_{metric}'), 100, 2)} | "
            f"{_fmt(r.get(f'train_{metric}'), 100, 2)} | {tail or '-'} | {cost} |"
        )
    steps = [
        f"{(b[f'test_{metric}'] - a[f'test_{metric}']) * 100:+.2f} points from {a['epochs']} "
        f"to {b['epochs']} epochs"
        for a, b in zip(runs, runs[1:], strict=False)
    ]
    if steps:
        lines += ["", f"Test {label} changes by {'; '.join(steps)}."]
    return lines + [""]


def _samples(count: int | None) -> str:
    return "all" if count is None else str(count)


def _planned_total(regime: str) -> int:
    """Runs ``make study-v2`` plans in ``regime`` (the main arms' 5 seeds, the minor arms')."""
    return sum(planned_seeds(regime, None).values())


def _planned_done(records: Sequence[dict[str, Any]]) -> int:
    """How many of ``make study-v2``'s planned runs ``records`` hold (not the cost variants
    or a best arm's extra seeds), so that it counts what the runner's ``--dry-run`` counts."""
    plans = {regime: planned_seeds(regime, None) for regime in V2_REGIMES}
    return len(
        {
            (r["regime"], r["arm"], r["seed"])
            for r in records
            if r["seed"] <= plans.get(r["regime"], {}).get(r["arm"], 0)
        }
    )


def _minor_seeds(regime: str) -> str:
    """Seeds of a minor arm (not in ``MAIN_V2_ARMS``) of ``regime``; '-' when it has none."""
    if all(a in MAIN_V2_ARMS for a in REGIME_ARMS.get(regime, ())):
        return "-"
    return str(minor_seeds(regime))


def _seed_plan(regime: str) -> str:
    """The seed rule of ``regime`` in words."""
    minor = _minor_seeds(regime)
    text = f"{PLANNED_SEEDS_TOP} seeds for {' and '.join(MAIN_V2_ARMS)} and the best arm"
    return text if minor == "-" else f"{text}, {minor} for each other arm"


def commands(records: Sequence[dict[str, Any]], results: Path) -> list[str]:
    """How the data and this report are made; the extra seeds name the best arm so far."""
    out = _rel(results)
    lines = [
        "## How the data and this report are made",
        "",
        "```sh",
        "make study-v2   # the whole plan below, both cores, resumable, then this report:",
        f"python benchmarks/study_fashion_mnist.py --regimes {' '.join(V2_REGIMES)} "
        f"--seeds 1 2 3 4 5 --out {out} --shard 0/2 &",
        f"python benchmarks/study_fashion_mnist.py --regimes {' '.join(V2_REGIMES)} "
        f"--seeds 1 2 3 4 5 --out {out} --shard 1/2",
        "# (5 seeds for the baseline and softmax_px, each regime's minor-arm seeds for the rest)",
        "python benchmarks/study_fashion_mnist.py --regimes clutter "
        f"--arms softmax_px_every4 softmax_px_f0.25 --seeds 1 2 3 --out {out}",
        "# one regime, chosen seeds:",
        f"python benchmarks/study_fashion_mnist.py --regimes clutter --seeds 1 2 3 --out {out}",
    ]
    for regime in V2_REGIMES:
        by_arm = group([r for r in records if r["regime"] == regime])
        metric = metric_of([r for rows in by_arm.values() for r in rows])
        best = best_arm(regime, arm_diffs(by_arm, f"test_{metric}"))
        if best and best not in MAIN_V2_ARMS:  # the plan gives it fewer seeds; the best gets 5
            extra = " ".join(map(str, range(minor_seeds(regime) + 1, PLANNED_SEEDS_TOP + 1)))
            lines.append(
                f"python benchmarks/study_fashion_mnist.py --regimes {regime} --arms {best} "
                f"--seeds {extra} --out {out}  # {regime}'s best arm so far"
            )
    lines += [
        "# the clutter convergence probes (seed-1 baseline, 40 and 80 epochs) and the earlier",
        "# 20-epoch runs, each in its own runs dir (the run names are the main runs'):",
        "python benchmarks/study_fashion_mnist.py --regimes clutter --arms baseline --seeds 1 "
        "--set schedule.epochs=40 --runs-dir runs/probe40 "
        "--out benchmarks/study/probe_clutter_epochs.jsonl",
        "python benchmarks/study_fashion_mnist.py --regimes clutter --arms baseline --seeds 1 "
        "--set schedule.epochs=80 --runs-dir runs/probe80 "
        "--out benchmarks/study/probe_clutter_epochs80.jsonl",
        "python benchmarks/study_fashion_mnist.py --regimes clutter --seeds 1 "
        "--set schedule.epochs=20 --runs-dir runs/clutter20 "
        "--out benchmarks/study/results_v2_clutter20.jsonl",
        "# the multi probes (seed-1 baseline at 20, 40 and 80 epochs; 80 is the regime's):",
        "python benchmarks/study_fashion_mnist.py --regimes multi --arms baseline --seeds 1 "
        "--set schedule.epochs=E --runs-dir runs/probe_multiE "
        "--out benchmarks/study/probe_multi_epochsE.jsonl",
        "# the transfer probes (seed-1 baseline at 4, 12, 24 and 48 epochs; 24 is the regime's,",
        "# its record reused as the regime's seed-1 baseline) and the earlier 12-epoch runs:",
        "python benchmarks/study_fashion_mnist.py --regimes transfer --arms baseline --seeds 1 "
        "--set schedule.epochs=E --runs-dir runs/probe_transferE "
        "--out benchmarks/study/probe_transfer_epochsE.jsonl",
        "python benchmarks/study_fashion_mnist.py --regimes transfer --seeds 1 2 3 4 5 "
        "--set schedule.epochs=12 --runs-dir runs/transfer12 "
        "--out benchmarks/study/results_v2_transfer12.jsonl",
        "# the full probes (seed-1 baseline at 30 and 60 epochs, 60 on two threads; 60 is the",
        "# regime's, its record reused as the regime's seed-1 baseline) and the earlier 15- and",
        "# 30-epoch runs:",
        "python benchmarks/study_fashion_mnist.py --regimes full --arms baseline --seeds 1 "
        "--set schedule.epochs=E --runs-dir runs/probe_fullE "
        "--out benchmarks/study/probe_full_epochsE.jsonl",
        "python benchmarks/study_fashion_mnist.py --regimes full --seeds 1 2 3 "
        "--set schedule.epochs=15 --runs-dir runs/full15 "
        "--out benchmarks/study/results_v2_full15.jsonl",
        "python benchmarks/study_fashion_mnist.py --regimes full --seeds 1 2 3 4 5 "
        "--set schedule.epochs=30 --runs-dir runs/full30 "
        "--out benchmarks/study/results_v2_full30.jsonl",
        "# this report (--check: exit 1 when STUDY_V2.md is stale):",
        "python benchmarks/study_report_v2.py [--check]",
        "```",
        "",
    ]
    return lines


def render(
    records: list[dict[str, Any]],
    convergence: Sequence[dict[str, Any]] = (),
    results: Path = RESULTS,
    sources: Sequence[Path] = CONVERGENCE,
    earlier: Sequence[dict[str, Any]] = (),
) -> str:
    """The whole of STUDY_V2.md for ``records`` (and the convergence records and the records of
    ``EARLIER``'s files, each with its ``_source`` file name)."""
    records = [{**r, "_source": Path(results).name} for r in records if r["regime"] in V2_REGIMES]
    devices = sorted({r["device"] for r in records}) or ["-"]
    revisions = sorted({r["git"] for r in records}) or ["-"]
    dates = sorted({r["date"] for r in records}) or ["-"]
    planned = sum(_planned_total(r) for r in V2_REGIMES)
    done = _planned_done(records)
    progress = (
        f"all {planned} planned runs are in."
        if done == planned
        else f"the study is still running: {done} of {planned} planned runs are in."
    )
    lines = [
        "# Study v2: discriminative attention on clutter, multiple objects, transfer and full "
        "Fashion-MNIST (issue 12)",
        "",
        f"Generated by `python benchmarks/study_report_v2.py` from `{_rel(results)}` "
        f"({len(records)} runs) and the convergence files "
        + ", ".join(f"`{_rel(p)}`" for p in sources)
        + f" ({len(convergence)} runs)"
        + "".join(
            f", and the earlier `{regime}` runs in "
            + ", ".join(
                f"`{_rel(path)}` ({sum(e['_source'] == path.name for e in earlier)})"
                for path in paths
            )
            for regime, paths in EARLIER.items()
        )
        + f"; do not edit by hand; {progress}",
        "",
        f"Devices: {'; '.join(devices)}. Revisions: {', '.join(revisions)}. "
        f"Dates: {', '.join(dates)}.",
        "",
        "| regime | recipe | training images | epochs | arms | minor-arm seeds "
        "| runs in / planned |",
        "| --- | --- | ---: | ---: | --- | ---: | ---: |",
    ]
    for regime in V2_REGIMES:
        spec = REGIMES[regime]
        count = sum(r["regime"] == regime for r in records)
        lines.append(
            f"| {regime} | `{spec.get('recipe', 'fashion_mnist_study')}` | "
            f"{_samples(spec['train_samples'])} | {spec['epochs']} | "
            f"{', '.join(REGIME_ARMS.get(regime, ()))} | {_minor_seeds(regime)} | "
            f"{count} / {_planned_total(regime)} |"
        )
    lines += [
        "",
        f"Seeds: {PLANNED_SEEDS_TOP} for {' and '.join(MAIN_V2_ARMS)} and the best arm; a "
        "minor arm (paper_px, paper_ch, softmax_ch) as the table says. Multi and transfer cost "
        "2-5x a clutter run, so their minor arms run one "
        "seed (the issue's budget rule: shrink the minor arms' seeds, never the training); in "
        "clutter those arms moved every localisation metric the same way with intervals clear "
        "of zero.",
    ]
    arms = [a for a in ARMS if any(a in REGIME_ARMS.get(r, ()) for r in V2_REGIMES)]
    arms += [a for a in ARMS if a not in arms and any(r["arm"] == a for r in records)]
    lines += ["", "| arm | what differs from the baseline |", "| --- | --- |"]
    lines += [f"| {arm} | {ARM_NOTES.get(arm, '-')} |" for arm in arms]
    lines.append("")
    for regime in V2_REGIMES:
        rows = [r for r in records if r["regime"] == regime]
        before = [r for r in earlier if r["regime"] == regime]
        lines += regime_section(regime, rows, convergence, own=[*rows, *before])
        lines += earlier_section(regime, before)
        lines += cheaper_section(records, regime, f"test_{metric_of(rows)}")
    lines += commands(records, results)
    return "\n".join(lines)


def earlier_section(regime: str, rows: Sequence[dict[str, Any]]) -> list[str]:
    """The paired comparisons of ``regime``'s runs at earlier schedules that had not converged
    (``EARLIER``, one table per file, shortest first): what the shorter training said, kept
    for the record (no lines without)."""
    lines: list[str] = []
    for path in EARLIER.get(regime, ()):
        mine = [r for r in rows if r["_source"] == path.name]
        if mine:
            lines += _earlier_table(regime, mine, path)
    return lines


def _earlier_table(regime: str, rows: Sequence[dict[str, Any]], path: Path) -> list[str]:
    """One earlier schedule's paired table: ``rows`` all come from ``path``."""
    by_arm = group(rows)
    metric = metric_of(rows)
    label = "mAP" if metric == "mAP" else "top-1"
    diffs = arm_diffs(by_arm, f"test_{metric}")
    epochs = ", ".join(map(str, sorted({r["epochs"] for r in rows})))
    lines = [
        f"Earlier runs at {epochs} epochs (`{_rel(path)}`): that schedule had not "
        f"converged (the probes above), so they are kept apart and are not in the verdict. Test "
        f"{label} in %, Δ in points as above:",
        "",
        f"| arm | seeds | test {label} | Δ {label} [95% CI] | sign |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for arm in arm_order(regime, set(by_arm)):
        values = _values(by_arm[arm], f"test_{metric}")
        lines.append(_paired_cells(arm, len(values), values, diffs.get(arm, [])))
    return lines + [""]


def read_convergence(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """The records of the convergence files that exist, each tagged with its file name."""
    return [
        {**row, "_source": Path(path).name} for path in paths for row in read_results(Path(path))
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument(
        "--convergence",
        type=Path,
        nargs="*",
        default=list(CONVERGENCE),
        help="the convergence probes (default: every regime's probe files)",
    )
    parser.add_argument("--out", type=Path, default=REPORT)
    parser.add_argument("--check", action="store_true", help="compare with --out, write nothing")
    args = parser.parse_args(argv)
    text = render(
        read_results(args.results),
        read_convergence(args.convergence),
        results=args.results,
        sources=args.convergence,
        earlier=read_convergence([path for paths in EARLIER.values() for path in paths]),
    )
    return write_or_check(args.out, text, args.results, args.check)


if __name__ == "__main__":
    sys.exit(main())
