"""Shared fixtures: small timm models with fixed random weights, built once per session."""

from __future__ import annotations

import functools

import pytest
import timm
import torch

import discatt_timm  # noqa: F401  (registers cifar_resnet*)

# Input sizes that keep every family cheap on 2 CPU cores while leaving inner maps > 1x1.
MODEL_INPUT = {
    "resnet18": 64,
    "convnext_atto": 64,
    "efficientnet_b0": 64,
    "regnety_002": 64,
    "vgg11": 64,
    "cifar_resnet20": 32,
}


@functools.cache
def _model(name: str, num_classes: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, num_classes=num_classes).eval()


@pytest.fixture
def make_model():
    """``make_model(name, num_classes=10)``: a cached eval-mode model (do not mutate it)."""

    def make(name: str, num_classes: int = 10) -> torch.nn.Module:
        return _model(name, num_classes)

    return make


def batch(size: int, n: int = 4, channels: int = 3, seed: int = 0) -> torch.Tensor:
    """A fixed random input batch ``n x channels x size x size``."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, channels, size, size, generator=generator)


@pytest.fixture
def one_thread():
    """Run a test on one intra-op thread (restored after): tiny models gain nothing from two,
    and on a shared 2-core machine two spinning OpenMP threads can be many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
