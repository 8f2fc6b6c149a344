"""ESS cross-scan / cross-merge dispatcher (SPEC 2.2): validation, Triton on CUDA, PyTorch elsewhere."""
from __future__ import annotations

import os

import torch

from .torch_ref import SCAN_K, cross_merge_torch, cross_scan_torch


def _check_mode(mode: str) -> int:
    if mode not in SCAN_K:
        raise ValueError(f"mode must be one of {sorted(SCAN_K)}, got {mode!r}")
    return SCAN_K[mode]


def _pick(x: torch.Tensor, impl: str | None, fn: str) -> str:
    if impl is None:
        return "triton" if x.is_cuda else "torch"
    if impl not in ("torch", "triton"):
        raise ValueError(f"{fn}: impl must be 'torch', 'triton' or None, got {impl!r}")
    if impl == "triton" and not (x.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"):
        raise ValueError(f"{fn}: impl='triton' needs CUDA tensors (or TRITON_INTERPRET=1 set before import)")
    return impl


def cross_scan(x: torch.Tensor, mode: str = "K2", reverse: bool = False, *, impl: str | None = None) -> torch.Tensor:
    """ESS scan: x [B, C, H, W] -> [B*K, H*W, C] (ordering [B, K, T, C]); K = SCAN_K[mode]."""
    _check_mode(mode)
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"cross_scan: x must be a [B, C, H, W] tensor, got {getattr(x, 'shape', type(x))}")
    if not x.is_floating_point():
        raise ValueError(f"cross_scan: x must be floating point, got {x.dtype}")
    if _pick(x, impl, "cross_scan") == "triton":
        from .triton_kernels import cross_scan_triton

        return cross_scan_triton(x, mode, reverse)
    return cross_scan_torch(x, mode, reverse)


def cross_merge(y: torch.Tensor, hw: tuple[int, int], mode: str = "K2", reverse: bool = False, *,
                impl: str | None = None) -> torch.Tensor:
    """ESS merge, the adjoint of cross_scan: y [B*K, H*W, C] -> [B, C, H, W], SUMMED over the K scans."""
    K = _check_mode(mode)
    if not isinstance(y, torch.Tensor) or y.dim() != 3:
        raise ValueError(f"cross_merge: y must be a [B*K, H*W, C] tensor, got {getattr(y, 'shape', type(y))}")
    if not y.is_floating_point():
        raise ValueError(f"cross_merge: y must be floating point, got {y.dtype}")
    try:
        H, W = (int(s) for s in hw)
    except (TypeError, ValueError):
        raise ValueError(f"cross_merge: hw must be a pair (H, W), got {hw!r}") from None
    if H < 1 or W < 1 or y.shape[1] != H * W:
        raise ValueError(f"cross_merge: y has {y.shape[1]} tokens but hw={hw!r} gives {H * W}")
    if y.shape[0] % K:
        raise ValueError(f"cross_merge: y batch {y.shape[0]} is not a multiple of K={K} for mode {mode}")
    if _pick(y, impl, "cross_merge") == "triton":
        from .triton_kernels import cross_merge_triton

        return cross_merge_triton(y, (H, W), mode, reverse)
    return cross_merge_torch(y, (H, W), mode, reverse)
