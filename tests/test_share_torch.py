"""CI's plain-install check shares the test venv's torch with a fresh venv (.ci/share_torch.py)."""

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _share_torch():
    spec = importlib.util.spec_from_file_location("share_torch", ROOT / ".ci" / "share_torch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_torch_stack_is_torch_torchvision_and_what_they_need_recursively():
    names = {dist.metadata["Name"].lower() for dist in _share_torch().required_distributions()}
    # sympy is torch's requirement, mpmath sympy's, pillow torchvision's.
    assert {"torch", "torchvision", "sympy", "mpmath", "pillow", "filelock"} <= names
    # What discatt-timm itself asks for stays out: pip must install it in the fresh venv.
    assert not names & {"timm", "accelerate", "datasets", "huggingface-hub", "safetensors"}


def test_a_fresh_venv_imports_the_shared_torch_and_nothing_else(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    shared = _share_torch().share(venv)
    probe = (
        "import importlib.util, torch, torchvision; "
        "print(torch.__file__); print(importlib.util.find_spec('timm') is None)"
    )
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe], capture_output=True, text=True, check=True
    )
    torch_file, no_timm = result.stdout.split()
    assert Path(torch_file).parent == shared / "torch"
    assert no_timm == "True"
