"""benchmarks/gpu_check.py (issue 13): the device check's CPU path, ``--device cpu --quick``,
runs every section the GPU run runs, at tiny sizes, and writes its JSON."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
SECTIONS = (
    "a_device_equals_cpu",
    "b_mixed_precision_grads",
    "c_step_time",
    "d_pytorch_grad_cam",
    "e_train_resume",
)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One ``--device cpu --quick`` run on one thread, over an existing file (--overwrite)."""
    out = tmp_path_factory.mktemp("gpu_check") / "gpu_check.json"
    out.write_text("an older result\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    command = [sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--threads", "1"]
    done = subprocess.run(
        [*command, "--out", str(out), "--overwrite"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "total wall time" in done.stdout
    return json.loads(out.read_text())


def checks(result: dict, section: str) -> list[dict]:
    found = result["sections"][section]["checks"]
    assert found, section
    return found


def test_every_section_ran(quick_run):
    assert set(quick_run["sections"]) == set(SECTIONS)
    for name, section in quick_run["sections"].items():
        assert section["status"] in ("passed", "skipped"), (name, section.get("error"))
    assert quick_run["meta"]["quick"] and quick_run["meta"]["device"] == "cpu"


def test_device_maps_and_terms_equal_the_cpu(quick_run):
    for c in checks(quick_run, "a_device_equals_cpu"):
        assert c["pass"] and 0 <= c["value"] <= 1e-4  # CPU against CPU: 0


def test_mixed_precision_gradients_keep_the_fp32_direction(quick_run):
    found = checks(quick_run, "b_mixed_precision_grads")
    assert {c["check"].split()[-2] for c in found} == {"bf16", "fp16"}
    for c in found:
        assert c["pass"] and math.isfinite(c["value"]) and c["value"] >= 0.97, c
    for row in quick_run["sections"]["b_mixed_precision_grads"]["details"].values():
        assert row["fp32_finite"] and row["bf16"]["finite"] and row["fp16"]["finite"]


def test_step_times_are_ratios_to_the_plain_step(quick_run):
    details = quick_run["sections"]["c_step_time"]["details"]
    assert len(details) == 2
    for case in details.values():
        ratios = case["time_ratio"]
        assert ratios["plain"] == 1 and ratios["exact"] > 1 and ratios["detached"] > 0
        assert all(math.isfinite(v) and v > 0 for v in case["median_ms"].values())
        assert all(v is None for v in case["peak_mib"].values())  # CPU: no peak memory


def test_maps_equal_pytorch_grad_cam(quick_run):
    section = quick_run["sections"]["d_pytorch_grad_cam"]
    if importlib.util.find_spec("pytorch_grad_cam") is None:
        assert section["skipped"] == "skipped: pytorch-grad-cam not installed"
        pytest.skip("pytorch-grad-cam not installed")
    errors = [c for c in section["checks"] if "rel err" in c["check"]]
    assert len(errors) == 3 and all(c["pass"] and c["value"] <= 1e-3 for c in errors)
    assert all(row["speedup"] > 0 for row in section["details"].values())


def test_training_resumes_from_the_checkpoint_step(quick_run):
    assert all(c["pass"] for c in checks(quick_run, "e_train_resume"))
    details = quick_run["sections"]["e_train_resume"]["details"]
    assert details["resumed_step"] > details["first_step"] > 0
    assert details["steps_resumed"] == details["resumed_step"] - details["first_step"]
    assert details["metrics"]["mixed_precision"] == "bf16"


def test_an_existing_out_file_is_not_overwritten(tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    module = importlib.import_module("gpu_check")
    out = tmp_path / "gpu_check.json"
    out.write_text("keep me\n")
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--device", "cpu", "--quick", "--out", str(out)])
    assert exit_info.value.code == 2
    assert "--overwrite" in capsys.readouterr().err
    assert out.read_text() == "keep me\n"


def test_a_failed_section_is_recorded_and_the_others_still_run(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    module = importlib.import_module("gpu_check")

    def broken(*args):
        raise RuntimeError("CUDA out of memory\nsecond line")

    monkeypatch.setattr(module, "section_c", broken)
    monkeypatch.setitem(sys.modules, "pytorch_grad_cam", None)  # import fails: (d) skips
    out = tmp_path / "gpu_check.json"
    assert module.main(["--device", "cpu", "--quick", "--sections", "cd", "--out", str(out)]) == 1
    sections = json.loads(out.read_text())["sections"]
    assert sections["c_step_time"]["status"] == "failed"
    assert sections["c_step_time"]["error"] == "RuntimeError: CUDA out of memory"
    assert sections["d_pytorch_grad_cam"]["status"] == "skipped"
    assert sections["d_pytorch_grad_cam"]["skipped"] == "skipped: pytorch-grad-cam not installed"
    assert "total wall time" in capsys.readouterr().out
