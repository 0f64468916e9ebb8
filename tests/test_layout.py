"""The package's layout follows its pipeline: small modules and functions, no import cycles,
light core imports, one home for each shared piece of logic (docs/architecture.md)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import discatt_timm

PACKAGE = Path(discatt_timm.__file__).resolve().parent
ROOT = PACKAGE.parent
MODULES = sorted(PACKAGE.rglob("*.py"))
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80


def _name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def test_no_module_is_over_400_lines():
    sizes = {_name(p): len(p.read_text().splitlines()) for p in MODULES}
    assert len(sizes) > 30
    assert {m: n for m, n in sizes.items() if n > MAX_MODULE_LINES} == {}


def test_no_function_is_over_80_lines():
    long = {}
    for path in MODULES:
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{_name(path)}.{node.name}"] = lines
    assert long == {}


def _imports(path: Path) -> set[str]:
    """Package modules ``path`` imports, at the top or inside functions (lazy imports count)."""
    module = _name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            candidates = [target] + [f"{target}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        known = {_name(p) for p in MODULES}
        found |= {c for c in candidates if c in known and c not in ("discatt_timm", module)}
    return found


def test_the_import_graph_has_no_cycles():
    """Every import edge between the package's modules (the root re-exports are left out: they
    are the package's table of contents) points down the pipeline."""
    graph = {_name(p): _imports(p) for p in MODULES if _name(p) != "discatt_timm"}
    assert sum(len(edges) for edges in graph.values()) > 50
    state: dict[str, str] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for child in sorted(graph.get(node, ())):
            if child.startswith(node + "."):
                continue  # a package importing its own modules
            if state.get(child) == "open":
                cycles.append(stack[stack.index(child) :] + [child] if child in stack else [child])
            elif child not in state:
                visit(child, [*stack, child])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


@pytest.mark.parametrize("heavy", ["matplotlib", "accelerate", "datasets"])
def test_core_imports_stay_light(heavy):
    code = (
        "import sys; import discatt_timm.attention, discatt_timm.losses, discatt_timm.layers; "
        f"print({heavy!r} in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", f"importing the core loads {heavy}"


def test_one_home_for_close_matches_and_layer_names():
    """difflib only in ``errors`` (close-match suggestions); ``'last'``/``'inner'`` resolved
    only by ``layers.resolve_layer(s)``; state dicts read only by ``loading``."""
    sources = {_name(p): p.read_text() for p in MODULES}
    assert [m for m, s in sources.items() if "difflib" in s] == ["discatt_timm.errors"]
    assert [m for m, s in sources.items() if "def resolve_layer" in s] == ["discatt_timm.layers"]
    readers = [m for m, s in sources.items() if "torch.load(" in s or "safe_open(" in s]
    assert readers == ["discatt_timm.loading"]
    assert [m for m, s in sources.items() if "silently stops the gradient all-reduce" in s] == [
        "discatt_timm.config.training"
    ]


def test_helper_modules_are_not_test_modules():
    for path in (ROOT / "tests").glob("test_*.py"):
        names = {n.name for n in ast.walk(_tree(path)) if isinstance(n, ast.FunctionDef)}
        assert any(name.startswith("test_") for name in names), f"{path.name} holds no test"


def test_the_root_re_exports_the_entry_points():
    import importlib

    from discatt_timm import loading, training

    explain_module = importlib.import_module("discatt_timm.explain")
    assert discatt_timm.train is training.train
    assert discatt_timm.load_model is loading.load_model
    assert discatt_timm.explain is explain_module.explain  # the function; the module importable
    assert discatt_timm.TrainConfig is discatt_timm.config.TrainConfig


def test_python_m_discatt_timm_train_is_the_launcher():
    """``accelerate launch -m discatt_timm.train`` runs the trainer's command line."""
    out = subprocess.run(
        [sys.executable, "-m", "discatt_timm.train", "--help"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    assert out.stdout.startswith("usage: python -m discatt_timm.train") and "--recipe" in out.stdout
    assert out.stderr == ""  # no runpy warning about a module imported twice


def test_the_datasets_floor_is_the_version_the_package_needs():
    """Was datasets>=2.19, but ``datasets.List`` (the boxes column, tables.py) exists from 4.0."""
    import datasets
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    floor = next(d for d in deps if d.startswith("datasets"))
    assert floor == "datasets>=4.0"
    assert hasattr(datasets, "List") and int(datasets.__version__.split(".")[0]) >= 4
    trackers = {"tensorboard", "wandb", "mlflow", "comet_ml", "aim", "clearml", "dvclive"}
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert trackers <= set(extras["optional-dependencies"])  # a recipe's tracker has its extra
