"""The sole place in discatt_timm that touches timm internals (``timm.models._*``).

Every name re-exported here comes from a private timm module because timm does not export it
publicly (checked against timm 1.0.x). Keeping these imports in one file means a timm upgrade
that moves or renames one of them breaks here, loudly and in one spot, and
``tests/test_cifar_resnet.py`` checks each name is still importable.
"""

try:  # prefer a public export should timm ever add one
    from timm.models import feature_take_indices  # type: ignore[attr-defined]
except ImportError:  # timm <= 1.0.x: only in the private module
    from timm.models._features import feature_take_indices

__all__ = ["feature_take_indices"]
