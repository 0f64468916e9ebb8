"""The spread over a study's seeds, for a model card: per metric, the mean and sample standard
deviation of one arm and of its baseline arm, and their difference paired by seed.

A study file is JSON lines, one record per run, each with ``regime``, ``arm``, ``seed`` (an
integer) and metric keys as ``benchmarks/study`` writes them (``test_top1`` or ``test_mAP``,
``siou_inner``, ``pointing_last``, ...). A metric that is absent, ``null`` or NaN in a record is
not measured there. Every problem with the file is a one-line ``PublishError``. Standard library
only.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import PublishError, did_you_mean

__all__ = ["LOWER_IS_BETTER", "SEED_METRICS", "Spread", "SpreadRow", "Stat", "seed_spread"]

# study record key -> metrics.json key (the card names each as ``hub.METRICS`` does), card order
SEED_METRICS = {
    "test_top1": "top1",
    "test_top5": "top5",
    "test_mAP": "mAP",
    "test_roc_auc": "roc_auc",
    "siou_inner": "siou_inner",
    "siou_last": "siou_last",
    "consistency": "consistency",
    "pointing_inner": "pointing_inner",
    "pointing_last": "pointing_last",
    "energy_inner": "energy_inner",
    "energy_last": "energy_last",
    "confusing_energy_last": "confusing_energy_last",
}
# metrics.json keys where a smaller value is the better one (overlap, loss, the wrong class's
# energy in the box); higher is better for every other metric
LOWER_IS_BETTER = frozenset({"siou_inner", "siou_last", "consistency", "confusing_energy_last"})


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation of ``n`` values (``sd`` is ``None`` below two,
    ``mean`` is ``None`` for none)."""

    mean: float | None
    sd: float | None
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        """The statistics of ``values``."""
        mean = statistics.fmean(values) if values else None
        sd = statistics.stdev(values) if len(values) > 1 else None
        return cls(mean=mean, sd=sd, n=len(values))

    def __str__(self) -> str:
        """``0.8236 ± 0.0040 (3)``; ``0.8236 (1)`` for one value; ``—`` for none."""
        if self.mean is None:
            return "—"
        spread = f" ± {self.sd:.4f}" if self.sd is not None else ""
        return f"{self.mean:.4f}{spread} ({self.n})"


@dataclass(frozen=True)
class SpreadRow:
    """One metric (a ``metrics.json`` key) of the arm, its baseline arm and their difference."""

    key: str
    arm: Stat
    baseline: Stat
    difference: Stat  # arm minus baseline, over the seeds both measured
    better: int  # seeds (of ``difference.n``) on which the arm is strictly better

    @property
    def lower_is_better(self) -> bool:
        return self.key in LOWER_IS_BETTER


@dataclass(frozen=True)
class Spread:
    """The spread of one regime's arm and baseline arm over the seeds of a study file."""

    path: str
    regime: str
    arm: str
    baseline_arm: str
    arm_seeds: tuple[int, ...]
    baseline_seeds: tuple[int, ...]
    rows: tuple[SpreadRow, ...]

    def card_rows(self, names: Mapping[str, str]) -> list[dict[str, str]]:
        """The seed table's rows as the card prints them (``names``: metric key -> name)."""
        return [
            {
                "name": names.get(row.key, row.key),
                "better": "lower" if row.lower_is_better else "higher",
                "arm": str(row.arm),
                "baseline": str(row.baseline),
                "difference": str(row.difference),
                "better_in": f"{row.better} of {row.difference.n}" if row.difference.n else "—",
            }
            for row in self.rows
        ]


def _read_records(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, record)`` of every non-blank line of the study file."""
    if not path.is_file():
        raise PublishError(f"--seeds {path} does not exist; give a study's JSON-lines results file")
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise PublishError(
                f"--seeds {path} is not JSON lines: line {number} is not JSON ({err.msg}); "
                "give one JSON object per line"
            ) from None
        if not isinstance(record, dict):
            raise PublishError(
                f"--seeds {path} is not JSON lines: line {number} is a "
                f"{type(record).__name__}, not a JSON object (one record per run)"
            )
        missing = [key for key in ("regime", "arm", "seed") if key not in record]
        if missing:
            raise PublishError(
                f"--seeds {path} line {number} has no {', '.join(missing)}; every record "
                "needs regime, arm and seed"
            )
        if not isinstance(record["seed"], int) or isinstance(record["seed"], bool):
            raise PublishError(
                f"--seeds {path} line {number}: seed must be an integer, got {record['seed']!r}"
            )
        records.append((number, record))
    if not records:
        raise PublishError(f"--seeds {path} holds no record; give a study's results file")
    return records


def _runs(
    records: list[tuple[int, dict[str, Any]]], path: Path, regime: str, arm: str, flag: str
) -> dict[int, dict[str, Any]]:
    """The records of ``regime``/``arm`` by seed; none, or one seed twice, is an error."""
    regimes = sorted({str(r["regime"]) for _, r in records})
    if regime not in regimes:
        raise PublishError(
            f"--seeds {path} has no record for --regime {regime!r}; it has regimes "
            f"{', '.join(regimes)}{did_you_mean(regime, regimes)}"
        )
    arms = sorted({str(r["arm"]) for _, r in records if r["regime"] == regime})
    if arm not in arms:
        raise PublishError(
            f"--seeds {path} has no record for {flag} {arm!r} in regime {regime!r}; it has "
            f"arms {', '.join(arms)}{did_you_mean(arm, arms)}"
        )
    runs: dict[int, dict[str, Any]] = {}
    lines: dict[int, int] = {}
    for number, record in records:
        if record["regime"] == regime and record["arm"] == arm:
            seed = record["seed"]
            if seed in runs:
                raise PublishError(
                    f"--seeds {path} lines {lines[seed]} and {number} are both seed {seed} of "
                    f"regime {regime!r}, arm {arm!r}; keep one record per run"
                )
            runs[seed], lines[seed] = record, number
    return runs


def _value(record: dict[str, Any], key: str) -> float | None:
    """The record's value of ``key`` when it is a finite number, else ``None``."""
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _row(
    record_key: str, arm: dict[int, dict[str, Any]], baseline: dict[int, dict[str, Any]]
) -> SpreadRow | None:
    """The row of one metric, ``None`` when neither arm measured it."""
    ours = {s: v for s, r in arm.items() if (v := _value(r, record_key)) is not None}
    theirs = {s: v for s, r in baseline.items() if (v := _value(r, record_key)) is not None}
    if not ours and not theirs:
        return None
    key = SEED_METRICS[record_key]
    differences = [ours[s] - theirs[s] for s in sorted(ours.keys() & theirs.keys())]
    sign = -1.0 if key in LOWER_IS_BETTER else 1.0
    return SpreadRow(
        key=key,
        arm=Stat.of(list(ours.values())),
        baseline=Stat.of(list(theirs.values())),
        difference=Stat.of(differences),
        better=sum(1 for d in differences if sign * d > 0),
    )


def seed_spread(
    path: str | Path | None,
    *,
    regime: str | None,
    arm: str | None,
    baseline_arm: str = "baseline",
) -> Spread | None:
    """The spread of ``arm`` and ``baseline_arm`` of ``regime`` over the seeds in ``path``.

    Args:
        path: a study's JSON-lines results file (one record per run); ``None``: no spread
            (then ``regime`` and ``arm`` must be ``None`` too).
        regime: the study regime the published model belongs to.
        arm: the published model's arm; ``baseline_arm``: its cross-entropy baseline's.

    Returns:
        A row per metric of ``SEED_METRICS`` that either arm measured, in that order.
    """
    if path is None:
        if regime is not None or arm is not None:
            raise PublishError(
                "regime and arm without seeds: give the study's file too (--seeds FILE.jsonl)"
            )
        return None
    if not regime or not arm:
        raise PublishError(
            f"--seeds {path} needs --regime and --arm (the study regime and arm of this model)"
        )
    if arm == baseline_arm:
        raise PublishError(
            f"--arm {arm!r} is the baseline arm itself; give this model's arm (or another "
            "--baseline-arm)"
        )
    records = _read_records(Path(path))
    ours = _runs(records, Path(path), regime, arm, "--arm")
    theirs = _runs(records, Path(path), regime, baseline_arm, "--baseline-arm")
    rows = (_row(key, ours, theirs) for key in SEED_METRICS)
    return Spread(
        path=str(path),
        regime=regime,
        arm=arm,
        baseline_arm=baseline_arm,
        arm_seeds=tuple(sorted(ours)),
        baseline_seeds=tuple(sorted(theirs)),
        rows=tuple(row for row in rows if row is not None),
    )
