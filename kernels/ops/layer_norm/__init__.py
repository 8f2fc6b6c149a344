"""LayerNorm for CPU inference (C kernel, optionally fused with SiLU, the BRWKV modulation or a spatial mix's scan merge); see :mod:`.cpu`."""
from .cpu import (
                  layer_norm,
                  layer_norm_silu,
                  merge_gate,
                  merge_usable,
                  modulated_layer_norm,
                  modulated_usable,
                  usable,
)

__all__ = ["layer_norm", "layer_norm_silu", "merge_gate", "merge_usable", "modulated_layer_norm", "modulated_usable",
           "usable"]
