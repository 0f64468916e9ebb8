"""The building blocks of the CIFAR ResNets: the basic block, its two shortcuts, a stage."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["SHORTCUTS", "BasicBlock", "ShortcutA", "make_stage"]

SHORTCUTS = ("A", "B")


class ShortcutA(nn.Module):
    """Parameter-free shortcut (option A): spatial subsampling plus zero-padded new channels.

    ``(B, C_in, H, W) -> (B, C_out, ceil(H / stride), ceil(W / stride))``; the first ``C_in``
    output channels are the subsampled input, the remaining ``C_out - C_in`` are zeros.
    """

    def __init__(self, in_chs: int, out_chs: int, stride: int) -> None:
        super().__init__()
        if out_chs < in_chs:
            raise ValueError(f"ShortcutA cannot reduce channels ({in_chs} -> {out_chs})")
        self.in_chs = in_chs
        self.out_chs = out_chs
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.out_chs > self.in_chs:
            x = F.pad(x, (0, 0, 0, 0, 0, self.out_chs - self.in_chs))
        return x

    def extra_repr(self) -> str:
        return f"{self.in_chs}, {self.out_chs}, stride={self.stride}"


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN + shortcut, ReLU: ``(B, C_in, H, W) -> (B, C_out, H/s, W/s)``.

    ``downsample`` is ``None`` (identity) when the shape is unchanged, otherwise a
    :class:`ShortcutA` (option A) or a 1x1 conv + BN projection (option B). No operation modifies
    a tensor in place, so a block's output (a stage output) can be read after the forward.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int = 1,
        shortcut: str = "A",
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.conv1 = nn.Conv2d(in_chs, out_chs, 3, stride=stride, padding=1, bias=False, **dd)
        self.bn1 = nn.BatchNorm2d(out_chs, **dd)
        self.act1 = nn.ReLU(inplace=False)
        self.conv2 = nn.Conv2d(out_chs, out_chs, 3, stride=1, padding=1, bias=False, **dd)
        self.bn2 = nn.BatchNorm2d(out_chs, **dd)
        self.act2 = nn.ReLU(inplace=False)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_chs != out_chs:
            if shortcut == "A":
                self.downsample = ShortcutA(in_chs, out_chs, stride)
            elif shortcut == "B":
                self.downsample = nn.Sequential(
                    nn.Conv2d(in_chs, out_chs, 1, stride=stride, bias=False, **dd),
                    nn.BatchNorm2d(out_chs, **dd),
                )
            else:
                raise ValueError(f"shortcut must be one of {SHORTCUTS}, got {shortcut!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + shortcut)


def make_stage(
    in_chs: int,
    out_chs: int,
    depth: int,
    stride: int,
    shortcut: str,
    device: Any = None,
    dtype: Any = None,
) -> nn.Sequential:
    """``depth`` BasicBlocks; only the first one changes channels / resolution."""
    return nn.Sequential(
        *(
            BasicBlock(
                in_chs if i == 0 else out_chs,
                out_chs,
                stride if i == 0 else 1,
                shortcut=shortcut,
                device=device,
                dtype=dtype,
            )
            for i in range(depth)
        )
    )
