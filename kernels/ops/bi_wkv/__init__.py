"""Bi-WKV spatial mixing (Eq. 2): naive O(T^2) reference, exact O(T) PyTorch path, Triton kernels."""
from .function import IMPLS, WKV_FLOPS_PER_ELEMENT, bi_wkv, check_values, resolve_impl
from .naive import bi_wkv_naive
from .torch_ref import FP32_W_LIMIT, MAX_ABS_W, BiWKVTorch, bi_wkv_torch

__all__ = ["IMPLS", "WKV_FLOPS_PER_ELEMENT", "bi_wkv", "check_values", "resolve_impl", "bi_wkv_naive", "bi_wkv_torch", "BiWKVTorch", "FP32_W_LIMIT", "MAX_ABS_W"]
