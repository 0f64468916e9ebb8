"""Architectures this package registers into timm (importing registers them)."""

from .cifar_resnet import CifarResNet

__all__ = ["CifarResNet"]
