"""LayerNorm for CPU inference (C kernel, optionally fused with SiLU); see :mod:`.cpu`."""
from .cpu import layer_norm, layer_norm_silu, usable

__all__ = ["layer_norm", "layer_norm_silu", "usable"]
