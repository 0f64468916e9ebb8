"""The zoo: supervised variants this project trained, as timm pretrained tags.

``manifest`` reads ``manifest.yaml`` and registers each variant with timm (importing
``discatt_timm`` does it); ``check`` verifies the entries (``discatt hub check``).
"""

from .manifest import MANIFEST, NAME_PATTERN, Variant, load_manifest, register_variants

__all__ = ["MANIFEST", "NAME_PATTERN", "Variant", "load_manifest", "register_variants"]
