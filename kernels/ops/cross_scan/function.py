"""ESS cross-scan / cross-merge dispatcher: validation, Triton on CUDA, PyTorch elsewhere.

Both run as the ``torch.library`` custom ops ``rwkvfusion::cross_scan`` / ``rwkvfusion::cross_merge`` (fake
kernels for tracing, autograd: each is the other's adjoint), so ``torch.compile`` sees one opaque op each.
Outputs are contiguous.
"""
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
    return torch.ops.rwkvfusion.cross_scan(x, mode, reverse, _pick(x, impl, "cross_scan"))


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
    return torch.ops.rwkvfusion.cross_merge(y, H, W, mode, reverse, _pick(y, impl, "cross_merge"))


# ----------------------------------------------------------------------------- custom ops
def _fresh(out: torch.Tensor, inp: torch.Tensor) -> torch.Tensor:
    """A contiguous result that shares no memory with the input (custom ops must not alias; K0 can)."""
    out = out.contiguous()
    return out.clone() if out.untyped_storage().data_ptr() == inp.untyped_storage().data_ptr() else out


@torch.library.custom_op("rwkvfusion::cross_scan", mutates_args=())
def _scan_op(x: torch.Tensor, mode: str, reverse: bool, impl: str) -> torch.Tensor:
    """[B, C, H, W] -> [B*K, H*W, C] (contiguous)."""
    if impl == "triton":
        from .triton_kernels import cross_scan_triton

        return _fresh(cross_scan_triton(x, mode, reverse), x)
    return _fresh(cross_scan_torch(x, mode, reverse), x)


@_scan_op.register_fake
def _(x, mode, reverse, impl):
    B, C, H, W = x.shape
    return x.new_empty(B * SCAN_K[mode], H * W, C)


@torch.library.custom_op("rwkvfusion::cross_merge", mutates_args=())
def _merge_op(y: torch.Tensor, H: int, W: int, mode: str, reverse: bool, impl: str) -> torch.Tensor:
    """[B*K, H*W, C] -> [B, C, H, W] (contiguous), summed over the K scans."""
    if impl == "triton":
        from .triton_kernels import cross_merge_triton

        return _fresh(cross_merge_triton(y, (H, W), mode, reverse), y)
    return _fresh(cross_merge_torch(y, (H, W), mode, reverse), y)


@_merge_op.register_fake
def _(y, H, W, mode, reverse, impl):
    return y.new_empty(y.shape[0] // SCAN_K[mode], y.shape[2], H, W)


def _scan_setup(ctx, inputs, output):
    x, mode, reverse, impl = inputs
    ctx.args = (x.shape[-2], x.shape[-1], mode, reverse, impl)


def _scan_backward(ctx, g):
    H, W, mode, reverse, impl = ctx.args
    return torch.ops.rwkvfusion.cross_merge(g.contiguous(), H, W, mode, reverse, impl), None, None, None


def _merge_setup(ctx, inputs, output):
    _, _, _, mode, reverse, impl = inputs
    ctx.args = (mode, reverse, impl)


def _merge_backward(ctx, g):
    mode, reverse, impl = ctx.args
    return torch.ops.rwkvfusion.cross_scan(g.contiguous(), mode, reverse, impl), None, None, None, None, None


_scan_op.register_autograd(_scan_backward, setup_context=_scan_setup)
_merge_op.register_autograd(_merge_backward, setup_context=_merge_setup)
