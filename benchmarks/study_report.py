"""Write ``benchmarks/STUDY.md`` from the study's JSON lines (no hand-typed numbers).

    python benchmarks/study_report.py [--results benchmarks/study/results.jsonl]
                                      [--out benchmarks/STUDY.md] [--check]

``--check`` exits 1 when the file on disk differs from what the results give (the test suite
runs it). Everything below the title is computed here from the records: per regime and arm the
mean and sample standard deviation over seeds, the paired per-seed differences to the baseline
(same seed, same data subset, same initialisation), and a verdict whose sign must hold in every
seed.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "study" / "results.jsonl"
REPORT = HERE / "STUDY.md"
PANELS = HERE / "study" / "panels"
sys.path.insert(0, str(HERE))
from study_fashion_mnist import ARM_NOTES, ARMS, REGIMES  # noqa: E402

BASELINE = "baseline"


def read_results(path: Path) -> list[dict[str, Any]]:
    """The records of ``path``; a later record of the same (regime, arm, seed) wins.

    A record's ``paused_s`` (seconds its process was stopped with SIGSTOP while it ran, added
    by hand with the pause measured) is taken off its ``wall_s`` and ``train_wall_s``."""
    records: dict[tuple[str, str, int], dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            paused = row.get("paused_s", 0.0)
            for key in ("wall_s", "train_wall_s") if paused else ():
                if key in row:
                    row[key] = round(row[key] - paused, 1)
            records[(row["regime"], row["arm"], row["seed"])] = row
    return list(records.values())


def _mean_std(values: Sequence[float], scale: float = 1.0, digits: int = 2) -> str:
    if not values:
        return "-"
    mean = statistics.fmean(values) * scale
    if len(values) < 2:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values) * scale:.{digits}f}"


def _mean(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return statistics.fmean(values) if values else None


def _fmt(value: float | None, scale: float = 1.0, digits: int = 3) -> str:
    return "-" if value is None else f"{value * scale:.{digits}f}"


def paired_differences(rows: list[dict[str, Any]], base: list[dict[str, Any]], key: str):
    """Per-seed ``row[key] - baseline[key]`` over the seeds both have, in seed order."""
    by_seed = {r["seed"]: r[key] for r in base}
    return [
        r[key] - by_seed[r["seed"]]
        for r in sorted(rows, key=lambda r: r["seed"])
        if r["seed"] in by_seed
    ]


def verdict(diffs: Sequence[float]) -> str:
    """``better``/``worse`` only when every seed agrees (and there are >= 3), else ``mixed``."""
    if len(diffs) < 3:
        return f"too few seeds ({len(diffs)})"
    # One-sided sign test: the chance that n seeds all share a sign when the arm does nothing.
    p = f"sign test p = {0.5 ** len(diffs):.3g}"
    if all(d > 0 for d in diffs):
        return f"better in every seed ({p})"
    if all(d < 0 for d in diffs):
        return f"worse in every seed ({p})"
    return "mixed signs"


# Two-sided 95% quantiles of Student's t, t_{0.975}(df), df = 1..30.
T975 = (
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
    2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
    2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
)  # fmt: skip


def t_quantile(df: int) -> float:
    """t_{0.975}(df): the table up to 30 degrees of freedom, a Cornish-Fisher expansion above
    (within 1e-4 there)."""
    if df < 1:
        raise ValueError(f"df must be >= 1, got {df}")
    if df <= len(T975):
        return T975[df - 1]
    z = statistics.NormalDist().inv_cdf(0.975)
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def paired_interval(diffs: Sequence[float]) -> tuple[float, float] | None:
    """(mean, half-width of the 95% paired-t interval) of ``diffs``; None under two seeds."""
    if len(diffs) < 2:
        return None
    half = t_quantile(len(diffs) - 1) * statistics.stdev(diffs) / math.sqrt(len(diffs))
    return statistics.fmean(diffs), half


def sign_count(diffs: Sequence[float]) -> str:
    """``"2/3 seeds better"`` (strictly better than the baseline of the same seed)."""
    return f"{sum(d > 0 for d in diffs)}/{len(diffs)} seeds better" if diffs else "-"


# Issue 15: softmax_px with the attention terms on a quarter of the steps or of each batch,
# beside softmax_px itself (every step, the whole batch).
CHEAPER_ARMS = ("softmax_px_every4", "softmax_px_f0.25")
CHEAPER_REFERENCE = "softmax_px"


def _interval(diffs: Sequence[float], scale: float = 100.0) -> str:
    """``+1.23 [+0.10, +2.36]`` (95% paired t), one seed's value, or ``-``."""
    if not diffs:
        return "-"
    interval = paired_interval(diffs)
    if interval is None:
        return f"{diffs[0] * scale:+.2f} (one seed)"
    mean, half = interval
    return f"{mean * scale:+.2f} [{(mean - half) * scale:+.2f}, {(mean + half) * scale:+.2f}]"


# Cost of a training step of each arm against the baseline's, measured interleaved on one
# machine with the study's model and batch (cifar_resnet20 @ 32 px, batch 64; RESULTS.md
# section 5: `step_overhead.py --threads 1 --cases cifar_resnet20 --every 4 --fraction 0.25`).
STEP_COST = {
    BASELINE: 1.0,
    "softmax_px": 1.834,
    "softmax_px_every4": 1.193,
    "softmax_px_f0.25": 1.232,
}


def cheaper_section(
    records: list[dict[str, Any]], regime: str, key: str = "test_top1"
) -> list[str]:
    """Markdown lines comparing the cheaper softmax_px arms of ``regime`` with the baseline
    and with softmax_px (paired over the seeds both have), with their maps' sIoU, all-zero
    confusing maps and minutes per run (and the dates, since minutes compare only on one
    machine); no lines when none of those arms ran there."""
    rows = [r for r in records if r["regime"] == regime]
    by_arm: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_arm.setdefault(row["arm"], []).append(row)
    cheaper = [a for a in CHEAPER_ARMS if a in by_arm]
    if not cheaper:
        return []
    base, full = by_arm.get(BASELINE, []), by_arm.get(CHEAPER_REFERENCE, [])
    metric = "mAP" if key == "test_mAP" else "top-1"
    lines = [
        f"### Regime `{regime}`: softmax_px at a quarter of its extra cost (issue 15)",
        "",
        f"Δ = test {metric} in points, arm minus baseline (or minus softmax_px, every step and "
        "the whole batch) of the same seed: mean and 95% paired-t interval; sign = seeds "
        "better than the baseline; sIoU and zero C at the last layer; minutes per run with "
        "the dates they ran (minutes compare only on one machine); step cost = a training "
        "step's time against the baseline's, measured interleaved on one machine with the "
        "study's model and batch (cifar_resnet20 @ 32 px, batch 64; `benchmarks/RESULTS.md` "
        "section 5).",
        "",
        f"| arm | seeds | Δ {metric} vs baseline | sign | Δ vs softmax_px | sIoU last | "
        "zero C last (%) | step cost | min per run | dates |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for arm in [BASELINE, CHEAPER_REFERENCE, *cheaper]:
        arm_rows = sorted(by_arm.get(arm, []), key=lambda r: r["seed"])
        if not arm_rows:
            continue
        to_base = [] if arm == BASELINE else paired_differences(arm_rows, base, key)
        to_full = paired_differences(arm_rows, full, key) if arm in cheaper else []
        lines.append(
            f"| {arm} | {len(arm_rows)} | {_interval(to_base)} | "
            f"{sign_count(to_base) if arm != BASELINE else '-'} | {_interval(to_full)} | "
            f"{_fmt(_mean(arm_rows, 'siou_last'))} | "
            f"{_fmt(_mean(arm_rows, 'zero_confusing_last'), 100, 1)} | "
            f"{STEP_COST[arm]:.2f}x | {_fmt(_mean(arm_rows, 'wall_s'), 1 / 60, 1)} | "
            f"{', '.join(sorted({r['date'] for r in arm_rows}))} |"
        )
    lines.append("")
    return lines


def _arm_order(arms: set[str]) -> list[str]:
    return [a for a in ARMS if a in arms]


def regime_table(regime: str, rows: list[dict[str, Any]]) -> tuple[list[str], dict[str, Any]]:
    """Markdown lines of one regime and the per-arm paired top-1 differences (points)."""
    by_arm: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_arm.setdefault(row["arm"], []).append(row)
    base = by_arm.get(BASELINE, [])
    first = rows[0]
    lines = [
        f"## Regime `{regime}`: {first['train_samples']} training images, {first['epochs']} epochs",
        "",
        f"Test top-1 on the {first['test_samples']} test images, in %; Δ = arm minus baseline "
        "of the same seed (mean ± std over seeds); `4 conf.` = error in % on T-shirt/top, "
        "Pullover, Coat and Shirt; sIoU and L_ac of A_px maps (lower = more separated / "
        "more consistent); `zero C` = % of confusing-class maps that are all zero at the "
        "inner / last layer.",
        "",
        "| arm | seeds | test top-1 | Δ top-1 (paired) | sign | train top-1 | 4 conf. error | "
        "sIoU inner | sIoU last | L_ac | zero C inner / last | min per run |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    summary: dict[str, Any] = {}
    for arm in _arm_order(set(by_arm)):
        arm_rows = sorted(by_arm[arm], key=lambda r: r["seed"])
        diffs = [] if arm == BASELINE else paired_differences(arm_rows, base, "test_top1")
        summary[arm] = {"diffs": diffs, "rows": arm_rows}
        zero = f"{_fmt(_mean(arm_rows, 'zero_confusing_inner'), 100, 1)} / " + _fmt(
            _mean(arm_rows, "zero_confusing_last"), 100, 1
        )
        lines.append(
            f"| {arm} | {len(arm_rows)} | {_mean_std([r['test_top1'] for r in arm_rows], 100)} | "
            f"{_mean_std(diffs, 100) if diffs else '-'} | "
            f"{verdict(diffs) if arm != BASELINE else '-'} | "
            f"{_mean_std([r['train_top1'] for r in arm_rows], 100)} | "
            f"{_fmt(_mean(arm_rows, 'confused_error'), 100, 2)} | "
            f"{_fmt(_mean(arm_rows, 'siou_inner'))} | {_fmt(_mean(arm_rows, 'siou_last'))} | "
            f"{_fmt(_mean(arm_rows, 'consistency'))} | {zero} | "
            f"{_fmt(_mean(arm_rows, 'wall_s'), 1 / 60, 1)} |"
        )
    lines += ["", "Per-seed test top-1 (%):", ""]
    seeds = sorted({r["seed"] for r in rows})
    lines += [
        "| arm | " + " | ".join(f"seed {s}" for s in seeds) + " |",
        "| --- |" + " ---: |" * len(seeds),
    ]
    for arm in _arm_order(set(by_arm)):
        values = {r["seed"]: r["test_top1"] for r in by_arm[arm]}
        cells = [f"{values[s] * 100:.2f}" if s in values else "-" for s in seeds]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    lines.append("")
    return lines, summary


def findings(summaries: dict[str, dict[str, Any]]) -> list[str]:
    """Plain sentences computed from the summaries: one per arm and regime, then the maps."""
    lines = ["## What the evidence shows", ""]
    for regime, summary in summaries.items():
        for arm, info in summary.items():
            diffs = info["diffs"]
            if arm == BASELINE or not diffs:
                continue
            better = sum(d > 0 for d in diffs)
            lines.append(
                f"- `{regime}`, {arm}: {statistics.fmean(diffs) * 100:+.2f} points of test top-1 "
                f"against the baseline (paired, {better} of {len(diffs)} seeds better): "
                f"{verdict(diffs)}."
            )
    lines.append("")
    for regime, summary in summaries.items():
        base = summary.get(BASELINE)
        if base is None:
            continue
        train, test = _mean(base["rows"], "train_top1"), _mean(base["rows"], "test_top1")
        lines.append(
            f"- `{regime}`: the baseline reaches {_fmt(train, 100, 2)}% top-1 on its training "
            f"images and {_fmt(test, 100, 2)}% on the test set (gap "
            f"{_fmt(train - test, 100, 2)} points)."
        )
        zero_base = _mean(base["rows"], "zero_confusing_last")
        siou_base = _mean(base["rows"], "siou_last")
        parts = []
        for arm in ("paper_px", "paper_ch", "softmax_px"):
            if arm in summary:
                rows = summary[arm]["rows"]
                parts.append(
                    f"{arm} {_fmt(_mean(rows, 'siou_last'))} with "
                    f"{_fmt(_mean(rows, 'zero_confusing_last'), 100, 1)}% all-zero maps"
                )
        if parts:
            lines.append(
                f"- `{regime}`: last-layer sIoU of A_px maps: baseline {_fmt(siou_base)} with "
                f"{_fmt(zero_base, 100, 1)}% all-zero confusing-class maps; "
                + "; ".join(parts)
                + "."
            )
    lines.append("")
    return lines


def render(records: list[dict[str, Any]], panels: Sequence[Path] = ()) -> str:
    """The whole of STUDY.md for ``records`` (and the panel images, relative to benchmarks/)."""
    regimes = [r for r in REGIMES if any(row["regime"] == r for row in records)]
    devices = sorted({row["device"] for row in records})
    revisions = sorted({row["git"] for row in records})
    dates = sorted({row["date"] for row in records})
    lines = [
        "# Study: does discriminative attention help on Fashion-MNIST? (issue 7)",
        "",
        "Generated by `python benchmarks/study_report.py` from "
        f"`benchmarks/study/results.jsonl` ({len(records)} runs); do not edit by hand. The runs: "
        "`make study` (the main comparison and the variants, `python "
        "benchmarks/study_fashion_mnist.py --shard 0/2` and `--shard 1/2` on the two cores, "
        "then the extra seeds and arms listed in the Makefile; resumable).",
        "",
        "Setup: `recipes/fashion_mnist_study.yaml` (cifar_resnet20 with one input channel, from "
        "scratch; SGD momentum 0.9, lr 0.1, one warm-up epoch then cosine; batch 64; "
        "pad-crop + flip), the training subset is the same for every seed (seed 0 subset), the "
        "seed sets initialisation, order and augmentation; each run is scored on the full "
        "test split with pixel maps A_px for every arm.",
        "",
        f"Device: {'; '.join(devices)}. Revisions: {', '.join(revisions)}. "
        f"Dates: {', '.join(dates)}.",
        "",
        "| arm | what differs from the baseline |",
        "| --- | --- |",
    ]
    arms = _arm_order({row["arm"] for row in records})
    lines += [f"| {arm} | {ARM_NOTES[arm]} |" for arm in arms]
    lines.append("")
    summaries = {}
    for regime in regimes:
        table, summaries[regime] = regime_table(
            regime, [row for row in records if row["regime"] == regime]
        )
        lines += table
        lines += cheaper_section(records, regime)
    lines += findings(summaries)
    if panels:
        lines += [
            "## Where the arms disagree",
            "",
            "Test images on which the baseline and paper_px (regime `short`, seed 1) disagree; "
            "rows: each model at the inner and the last layer, A_px maps of its top-3 classes "
            "(true class framed). Made by `python benchmarks/study_fashion_mnist.py --panels`.",
            "",
        ]
        lines += [f"![{p.stem}]({p.as_posix()})" for p in panels]
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--out", type=Path, default=REPORT)
    parser.add_argument("--check", action="store_true", help="compare with --out, write nothing")
    args = parser.parse_args(argv)
    panel_dir = args.out.parent / "study" / "panels"
    panels = sorted(p.relative_to(args.out.parent) for p in panel_dir.glob("*.png"))
    return write_or_check(
        args.out, render(read_results(args.results), panels), args.results, args.check
    )


def write_or_check(out: Path, text: str, results: Path, check: bool) -> int:
    """Write ``text`` to ``out``, or with ``check`` only compare (1 when it differs)."""
    if check:
        same = out.is_file() and out.read_text() == text
        print(f"{out}: {'up to date' if same else 'differs from ' + str(results)}")
        return 0 if same else 1
    out.write_text(text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
