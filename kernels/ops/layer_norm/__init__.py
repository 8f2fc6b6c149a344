"""LayerNorm for CPU inference (C kernel, optionally fused with SiLU or with the BRWKV modulation); see :mod:`.cpu`."""
from .cpu import layer_norm, layer_norm_silu, modulated_layer_norm, modulated_usable, usable

__all__ = ["layer_norm", "layer_norm_silu", "modulated_layer_norm", "modulated_usable", "usable"]
