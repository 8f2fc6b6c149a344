"""Bi-WKV dispatcher (SPEC 2.1, Eq. 2): input validation, then Triton on CUDA, the O(T) PyTorch path elsewhere."""
from __future__ import annotations

import math
import os

import torch

from .naive import bi_wkv_naive
from .torch_ref import MAX_ABS_W, bi_wkv_torch

IMPLS = ("torch", "triton", "naive")
_FLOAT_IN = (torch.float32, torch.bfloat16, torch.float16, torch.float64)


def _check(k: torch.Tensor, v: torch.Tensor, w: torch.Tensor, u: torch.Tensor) -> None:
    """Raise ValueError naming the offending argument."""
    for name, x in (("k", k), ("v", v), ("w", w), ("u", u)):
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"bi_wkv: {name} must be a torch.Tensor, got {type(x).__name__}")
        if x.dtype not in _FLOAT_IN:
            raise ValueError(f"bi_wkv: {name} has dtype {x.dtype}; expected float32, bfloat16, float16 or float64")
    if k.dim() != 3:
        raise ValueError(f"bi_wkv: k must be [B, T, C], got shape {tuple(k.shape)}")
    B, T, C = k.shape
    if T < 1 or C < 1:
        raise ValueError(f"bi_wkv: k needs T >= 1 and C >= 1, got shape {tuple(k.shape)}")
    if v.shape != k.shape:
        raise ValueError(f"bi_wkv: v has shape {tuple(v.shape)} but k has {tuple(k.shape)}")
    for name, x in (("w", w), ("u", u)):
        if x.shape != (C,):
            raise ValueError(f"bi_wkv: {name} must have shape [C]=({C},), got {tuple(x.shape)}")
    if v.dtype != k.dtype:
        raise ValueError(f"bi_wkv: v has dtype {v.dtype} but k has {k.dtype}")
    if u.dtype != w.dtype:
        raise ValueError(f"bi_wkv: u has dtype {u.dtype} but w has {w.dtype}")
    for name, x in (("v", v), ("w", w), ("u", u)):
        if x.device != k.device:
            raise ValueError(f"bi_wkv: {name} is on {x.device} but k is on {k.device}")
    wmax = float(w.detach().abs().max())                   # NaN/inf propagate through the max
    if not math.isfinite(wmax):
        raise ValueError("bi_wkv: w contains non-finite values")
    if not bool(torch.isfinite(u.detach()).all()):
        raise ValueError("bi_wkv: u contains non-finite values")
    if wmax > MAX_ABS_W:
        raise ValueError(f"bi_wkv: w has |w| = {wmax:.3g} > {MAX_ABS_W:g}; exp(|w|) would overflow even in float64")


def _triton_usable(x: torch.Tensor) -> bool:
    return x.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"


def bi_wkv(k: torch.Tensor, v: torch.Tensor, w: torch.Tensor, u: torch.Tensor, *,
           impl: str | None = None) -> torch.Tensor:
    """Bi-WKV of seed 000 Eq. 2 (u NOT divided by T). k, v: [B, T, C]; w, u: [C] -> y [B, T, C].

    fp32/bf16/fp16 (and float64) inputs, float32 (or float64) accumulation, output in k's dtype.
    ``impl``: None picks "triton" for CUDA tensors and "torch" otherwise; "triton" on CPU tensors needs
    TRITON_INTERPRET=1 (tests); "naive" is the O(T^2) float64 reference (no autograd).
    """
    _check(k, v, w, u)
    if impl is None:
        impl = "triton" if k.is_cuda else "torch"
    if impl == "torch":
        return bi_wkv_torch(k, v, w, u)
    if impl == "triton":
        if not _triton_usable(k):
            raise ValueError("bi_wkv: impl='triton' needs CUDA tensors (or TRITON_INTERPRET=1 set before import)")
        from .triton_kernels import bi_wkv_triton

        return bi_wkv_triton(k, v, w, u)
    if impl == "naive":
        return bi_wkv_naive(k, v, w, u).to(k.dtype)
    raise ValueError(f"bi_wkv: impl must be one of {IMPLS} or None, got {impl!r}")
