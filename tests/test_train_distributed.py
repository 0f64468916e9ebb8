"""Real processes: a 2-process CPU DDP run equals a 1-process run (the attention double
backward under DDP; with train-mode BN, a 1-process run accumulating the same micro-batches),
two 2-process runs are bit-identical, and a run killed with SIGKILL mid-epoch resumes to the
same weights."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from support import make_imagefolder, tiny_recipe, write_recipe

from discatt_timm.config import ModelConfig
from discatt_timm.recipes import load_recipe, read_recipe
from discatt_timm.rundir import latest_checkpoint
from discatt_timm.training import TrainerState, build_model, train

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}"
    env.setdefault("OMP_NUM_THREADS", "1")  # two processes on a small CPU
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model.safetensors"))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    # 4 classes x 10 = 40 training images: 5 steps of 8 per epoch
    return make_imagefolder(tmp_path_factory.mktemp("dist"), classes=4, per_class=(10, 4), size=16)


def test_two_cpu_processes_equal_one(data_dir, tmp_path):
    recipe = write_recipe(
        tmp_path / "tiny.yaml",
        tiny_recipe(
            data_dir,
            tmp_path / "runs",
            schedule={"epochs": 1},
            checkpoint={"every_epoch": False},
            # channel attention: a random tiny net has nearly dead pixel maps, whose max-
            # normalisation amplifies float reassociation noise (splitting a batch over
            # processes or accumulation steps alike); the double backward is the same
            attention={"method": "channel"},
        ),
    )
    # `accelerate launch --cpu --num_processes 2` starts ONE process; this starts two (gloo):
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(_free_port()),
        "-m", "discatt_timm.train", "--recipe", str(recipe), "--set", "name=ddp",
    ]  # fmt: skip
    env = _env() | {"ACCELERATE_USE_CPU": "1"}
    done = subprocess.run(
        command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    ddp_metrics = (tmp_path / "runs" / "ddp" / "metrics.json").read_text()
    assert '"num_processes": 2' in ddp_metrics

    single = train(load_recipe(recipe, ["name=single"]))
    assert single.metrics["num_processes"] == 1 and single.global_step == 5
    a, b = _weights(tmp_path / "runs" / "ddp"), _weights(single.run_dir)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-5, msg=key)


def _launch_two(recipe: Path, name: str, cwd: Path) -> Path:
    """Train ``recipe`` on 2 CPU processes (gloo); its run directory."""
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(_free_port()),
        "-m", "discatt_timm.train", "--recipe", str(recipe), "--set", f"name={name}",
    ]  # fmt: skip
    env = _env() | {"ACCELERATE_USE_CPU": "1"}
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return Path(read_recipe(recipe)["output_dir"]) / name


def _is_bn_buffer(key: str) -> bool:
    return key.endswith(("running_mean", "running_var", "num_batches_tracked"))


@pytest.fixture(scope="module")
def train_mode_bn(data_dir, tmp_path_factory):
    """The stronger setting: BatchNorm in TRAIN mode (batch statistics per process and micro-
    batch), softmax-normalised pixel maps, 2 epochs (the sampler's epoch and the per-epoch
    augmentation), an epoch checkpoint in between; one 2-process run of it, shared."""
    tmp = tmp_path_factory.mktemp("train_bn")
    recipe = write_recipe(
        tmp / "tiny.yaml",
        tiny_recipe(
            data_dir,
            tmp / "runs",
            model={"bn_eval": False},
            attention={"method": "pixel", "normalize": "softmax"},
            schedule={"epochs": 2},
            checkpoint={"every_epoch": True, "keep_last": 1},
            eval={"attention": False},
        ),
    )
    return recipe, _launch_two(recipe, "ddp", tmp)


def test_two_processes_equal_one_accumulating_their_micro_batches(data_dir, train_mode_bn):
    """With train-mode BN, 2 processes x 4 samples are 1 process accumulating 2 micro-batches
    of 4 (not 1 process x 8): ``split_batches`` gives rank r samples [4r, 4r + 4) of each
    seeded global batch of 8, and the accumulating run's micro-batches 2k, 2k+1 of 4 are the
    same halves of the same permutation (the seedable sampler permutes the dataset, whatever
    the batch size); DDP's mean of the two gradients is accumulation's sum of halved losses."""
    recipe, ddp_run = train_mode_bn
    metrics = json.loads((ddp_run / "metrics.json").read_text())
    assert metrics["num_processes"] == 2 and metrics["global_step"] == 10  # 2 x 40 / 8
    accumulated = train(
        load_recipe(
            recipe,
            ["name=accumulated", "data.batch_size=4", "accelerate.gradient_accumulation_steps=2"],
        )
    )
    assert accumulated.metrics["num_processes"] == 1
    assert accumulated.global_step == 10 and accumulated.epochs_done == 2
    ddp, acc = _weights(ddp_run), _weights(accumulated.run_dir)
    assert ddp.keys() == acc.keys()
    params = [k for k in ddp if not _is_bn_buffer(k)]
    assert len(params) > 50
    for key in params:  # measured: bit-identical (max difference 0.0)
        torch.testing.assert_close(ddp[key], acc[key], rtol=0, atol=1e-5, msg=key)

    # BN's running statistics cannot match: DDP broadcasts rank 0's buffers before every
    # forward (no SyncBatchNorm), so the exported ones follow rank 0's half-batches only, one
    # update per step, while the accumulating run updates them on every micro-batch.
    for key in (k for k in ddp if k.endswith("num_batches_tracked")):
        assert (int(ddp[key]), int(acc[key])) == (10, 20), key

    torch.manual_seed(0)  # the trainer's starting weights (set_seed(cfg.seed), then the model)
    init = build_model(ModelConfig(name="cifar_resnet20"), num_classes=4).state_dict()
    moved = max(float((ddp[k] - init[k]).abs().max()) for k in params)
    assert moved > 1e-3  # it trained (measured ~0.017)

    # the oracle matters: 1 process x 8 normalises over all 8 samples, and differs
    large = train(load_recipe(recipe, ["name=large"]))
    assert large.global_step == 10
    b = _weights(large.run_dir)
    assert max(float((ddp[k] - b[k]).abs().max()) for k in params) > 1e-3  # measured ~0.01


def test_two_processes_twice_are_bit_identical(train_mode_bn, tmp_path):
    """Everything the 2-process run exports, BN's running statistics included (which no
    1-process run reproduces), is the same in a second launch of the same recipe."""
    recipe, first = train_mode_bn
    second = _launch_two(recipe, "ddp_again", tmp_path)
    a, b = _weights(first), _weights(second)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert json.loads((second / "metrics.json").read_text())["global_step"] == 10


def test_kill_9_mid_epoch_then_resume_equals_an_uninterrupted_run(data_dir, tmp_path):
    recipe = write_recipe(
        tmp_path / "tiny.yaml",
        tiny_recipe(
            data_dir,
            tmp_path / "runs",
            schedule={"epochs": 2},
            # step checkpoints only (every 2 steps of 5 per epoch): every one is mid-epoch
            checkpoint={"every_epoch": False, "every_n_steps": 2, "keep_last": 5},
        ),
    )
    reference = train(load_recipe(recipe, ["name=uninterrupted"]))
    assert reference.global_step == 10

    run = tmp_path / "runs" / "killed"
    command = [
        sys.executable,
        "-m",
        "discatt_timm.train",
        "--recipe",
        str(recipe),
        "--set",
        "name=killed",
    ]
    process = subprocess.Popen(
        command, env=_env(), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 240
    while latest_checkpoint(run) is None and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    stderr = process.stderr.read().decode() if process.stderr else ""
    assert process.returncode == -signal.SIGKILL, stderr[-2000:]
    assert not (run / "metrics.json").exists()  # it really died before the end
    checkpoint = latest_checkpoint(run)
    assert checkpoint is not None
    state = TrainerState.read(checkpoint / "trainer_state.json")
    assert 0 < state.batch < 5 and state.global_step < 10  # resumes inside an epoch

    resumed = subprocess.run(
        [*command, "--resume"],
        env=_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from {checkpoint}" in resumed.stdout
    a, b = _weights(run), _weights(reference.run_dir)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


EPOCH_SCRIPT = """
import json, sys
from pathlib import Path
from discatt_timm.config import ModelConfig
from discatt_timm.recipes import load_recipe, read_recipe
from discatt_timm.training.builders import make_accelerator
from discatt_timm.training.loop import setup, start_epoch

cfg = load_recipe(sys.argv[1], ["name=" + sys.argv[2]])
run_dir = Path(cfg.output_dir) / cfg.name
accelerator = make_accelerator(cfg, run_dir)
run = setup(cfg, accelerator, run_dir, resume=False)
seen = {}
for epoch in (0, 1, 2):
    run.state.epoch = epoch
    start_epoch(run)
    x, _ = run.data.train[3]  # the same sample, augmented as this process would
    seen[epoch] = [run.data.train.epoch, float(x.sum()), float((x * x).sum())]
out = Path(sys.argv[3]) / f"rank{accelerator.process_index}.json"
out.write_text(json.dumps(seen))
"""


def test_every_process_augments_each_epoch_anew(data_dir, tmp_path):
    """Accelerate's set_epoch did not reach the dataset with 2 processes: epoch 0's crops
    and flips came back every epoch. Now each process's dataset follows the epoch, and a
    sample's augmentation equals the one-process run's for the same (epoch, index)."""
    recipe = write_recipe(
        tmp_path / "tiny.yaml", tiny_recipe(data_dir, tmp_path / "runs", schedule={"epochs": 3})
    )
    script = tmp_path / "epochs.py"
    script.write_text(EPOCH_SCRIPT)
    (tmp_path / "two").mkdir()
    (tmp_path / "one").mkdir()
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(_free_port()),
        str(script), str(recipe), "two", str(tmp_path / "two"),
    ]  # fmt: skip
    env = _env() | {"ACCELERATE_USE_CPU": "1"}
    done = subprocess.run(
        command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    single = subprocess.run(
        [sys.executable, str(script), str(recipe), "one", str(tmp_path / "one")],
        env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert single.returncode == 0, single.stderr[-3000:]
    one = json.loads((tmp_path / "one" / "rank0.json").read_text())
    for rank in (0, 1):
        two = json.loads((tmp_path / "two" / f"rank{rank}.json").read_text())
        assert [two[e][0] for e in ("0", "1", "2")] == [0, 1, 2]  # the dataset's epoch
        assert two == one  # the same augmentation as one process, epoch by epoch
    sums = [one[e][1:] for e in ("0", "1", "2")]
    assert len({tuple(s) for s in sums}) == 3  # each epoch augments anew
