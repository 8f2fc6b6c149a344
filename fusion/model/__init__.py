"""The RWKVFusion network: spatial/channel mix, BRWKV block, MFM, U-net, plain ablation, builder, FLOPs."""
from fusion.model.build import build_model, count_parameters
from fusion.model.flops import count_flops

__all__ = ["build_model", "count_parameters", "count_flops"]
