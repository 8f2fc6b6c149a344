"""LayerNorm for CPU inference (C kernel), optionally fused with SiLU, the BRWKV modulation, a spatial mix's
scan merge or the channel-mix activations, and the tanh GELU; see :mod:`.cpu`."""
from .cpu import (
    channel_act,
    channel_act_usable,
    gelu_tanh_,
    gelu_usable,
    layer_norm,
    layer_norm_silu,
    merge_gate,
    merge_usable,
    modulated_layer_norm,
    modulated_usable,
    usable,
)

__all__ = ["channel_act", "channel_act_usable", "gelu_tanh_", "gelu_usable", "layer_norm", "layer_norm_silu", "merge_gate", "merge_usable",
           "modulated_layer_norm", "modulated_usable", "usable"]
