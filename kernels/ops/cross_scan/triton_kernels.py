"""Triton ESS cross-scan / cross-merge (main paper sec. 3.4), each the other's backward.

Scan grid: (token blocks, channel blocks, B*K); each program gathers a [BLOCK_T, BLOCK_C] tile of the
sequence k of image b (channels contiguous on the store side). Merge grid: (pixel blocks, channel blocks, B);
each program sums the K sequences' tokens of its pixels in float32 (no atomics, deterministic).
Orders: k % 2 == 0 row-major, 1 column-major; k >= 2 reversed; ``reverse`` reverses everything again.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .torch_ref import SCAN_K

BLOCK_T = 64
BLOCK_C = 32
NUM_WARPS = 8             # ~100 registers per thread on sm_90 (ptxas report), vs ~165 with 4 warps


@triton.jit
def _token_of_pixel(p, H, W, k, REVERSE: tl.constexpr):
    """Index in scan k of pixel p = h*W + w (k % 2: row/column-major, k >= 2: reversed)."""
    T = H * W
    col = (p % W) * H + p // W
    tt = tl.where(k % 2 == 1, col, p)
    tt = tl.where(k >= 2, T - 1 - tt, tt)
    if REVERSE:
        tt = T - 1 - tt
    return tt


@triton.jit
def _pixel_of_token(t, H, W, k, REVERSE: tl.constexpr):
    """Pixel p = h*W + w read by token t of scan k (inverse of _token_of_pixel)."""
    T = H * W
    tt = t
    if REVERSE:
        tt = T - 1 - tt
    tt = tl.where(k >= 2, T - 1 - tt, tt)
    col = (tt % H) * W + tt // H                 # column-major token tt = w*H + h
    return tl.where(k % 2 == 1, col, tt)


@triton.jit
def _scan_kernel(x_ptr, y_ptr, C, H, W, K: tl.constexpr, REVERSE: tl.constexpr,
                 BT: tl.constexpr, BC: tl.constexpr):
    bk = tl.program_id(2).to(tl.int64)
    b = bk // K
    k = bk % K
    T = H * W
    t = tl.program_id(0).to(tl.int64) * BT + tl.arange(0, BT)[:, None]
    c = tl.program_id(1).to(tl.int64) * BC + tl.arange(0, BC)[None, :]
    msk = (t < T) & (c < C)
    p = _pixel_of_token(t, H, W, k, REVERSE)
    val = tl.load(x_ptr + b * C * T + c * T + p, mask=msk, other=0.0)
    tl.store(y_ptr + (bk * T + t) * C + c, val, mask=msk)


@triton.jit
def _merge_kernel(y_ptr, x_ptr, C, H, W, K: tl.constexpr, REVERSE: tl.constexpr,
                  BT: tl.constexpr, BC: tl.constexpr):
    b = tl.program_id(2).to(tl.int64)
    T = H * W
    p = tl.program_id(0).to(tl.int64) * BT + tl.arange(0, BT)[:, None]
    c = tl.program_id(1).to(tl.int64) * BC + tl.arange(0, BC)[None, :]
    msk = (p < T) & (c < C)
    acc = tl.zeros([BT, BC], tl.float32)
    for k in tl.static_range(K):
        kt = tl.zeros_like(p) + k                    # a tensor, so the order selection is a plain tl.where
        tt = _token_of_pixel(p, H, W, kt, REVERSE)
        acc += tl.load(y_ptr + ((b * K + k) * T + tt) * C + c, mask=msk, other=0.0).to(tl.float32)
    tl.store(x_ptr + b * C * T + c * T + p, acc.to(x_ptr.dtype.element_ty), mask=msk)


def _scan(x: torch.Tensor, K: int, reverse: bool) -> torch.Tensor:
    x = x.contiguous()
    B, C, H, W = x.shape
    y = torch.empty(B * K, H * W, C, device=x.device, dtype=x.dtype)
    grid = (triton.cdiv(H * W, BLOCK_T), triton.cdiv(C, BLOCK_C), B * K)
    _scan_kernel[grid](x, y, C, H, W, K=K, REVERSE=reverse, BT=BLOCK_T, BC=BLOCK_C, num_warps=NUM_WARPS)
    return y


def _merge(y: torch.Tensor, hw: tuple[int, int], K: int, reverse: bool) -> torch.Tensor:
    y = y.contiguous()
    H, W = hw
    BK, T, C = y.shape
    x = torch.empty(BK // K, C, H, W, device=y.device, dtype=y.dtype)
    grid = (triton.cdiv(T, BLOCK_T), triton.cdiv(C, BLOCK_C), BK // K)
    _merge_kernel[grid](y, x, C, H, W, K=K, REVERSE=reverse, BT=BLOCK_T, BC=BLOCK_C, num_warps=NUM_WARPS)
    return x


class CrossScanTriton(torch.autograd.Function):
    """cross_scan forward; its backward is the merge kernel (the adjoint)."""

    @staticmethod
    def forward(ctx, x, K: int, reverse: bool):
        ctx.meta = (x.shape[2], x.shape[3], K, reverse)
        return _scan(x, K, reverse)

    @staticmethod
    def backward(ctx, gy):
        H, W, K, reverse = ctx.meta
        return _merge(gy, (H, W), K, reverse), None, None


class CrossMergeTriton(torch.autograd.Function):
    """cross_merge forward; its backward is the scan kernel (the adjoint)."""

    @staticmethod
    def forward(ctx, y, hw, K: int, reverse: bool):
        ctx.meta = (K, reverse)
        return _merge(y, hw, K, reverse)

    @staticmethod
    def backward(ctx, gx):
        K, reverse = ctx.meta
        return _scan(gx, K, reverse), None, None, None


def cross_scan_triton(x: torch.Tensor, mode: str = "K2", reverse: bool = False) -> torch.Tensor:
    """[B, C, H, W] -> [B*K, H*W, C] with Triton."""
    return CrossScanTriton.apply(x, SCAN_K[mode], bool(reverse))


def cross_merge_triton(y: torch.Tensor, hw: tuple[int, int], mode: str = "K2", reverse: bool = False) -> torch.Tensor:
    """[B*K, H*W, C] -> [B, C, H, W] (sum over the K scans) with Triton."""
    return CrossMergeTriton.apply(y, tuple(hw), SCAN_K[mode], bool(reverse))
