"""ESS cross-scan / cross-merge (main paper sec. 3.4)."""
from .function import cross_merge, cross_scan
from .torch_ref import SCAN_K, cross_merge_torch, cross_scan_torch

__all__ = ["SCAN_K", "cross_scan", "cross_merge", "cross_scan_torch", "cross_merge_torch"]
