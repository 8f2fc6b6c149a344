"""Spatial-mix kernels : Bi-WKV (Eq. 2) and the ESS cross-scan, with Triton and exact PyTorch paths.

``from rwkvfusion_kernels import bi_wkv, cross_scan, cross_merge, SCAN_K``. Importing launches no kernel, so it works
on a CPU machine without TRITON_INTERPRET; the Triton modules are imported lazily on first use.
"""
from .ops.bi_wkv import bi_wkv
from .ops.cross_scan import SCAN_K, cross_merge, cross_scan

__all__ = ["bi_wkv", "cross_scan", "cross_merge", "SCAN_K"]
