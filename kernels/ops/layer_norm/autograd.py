"""LayerNorm over the last axis, optionally with SiLU of the result, for CPU training: the C forward and
backward of ``cpu_kernel.c`` (``layer_norm_train_fwd_f32`` / ``_bwd_f32``) as an autograd function.

PyTorch's CPU LayerNorm and its backward spend most of their time per row when the normalised axis is short
(C = 32..64 here), and SiLU after it costs two more passes (forward and backward); here a row is held in
vector registers, the SiLU derivative is folded into the LayerNorm backward, and the weight and bias
gradients are summed per block of rows (float32 in a block, float64 across blocks).
``layer_norm_train(x, weight, bias, eps, silu)`` -> h, or (h, SiLU(h)); x [..., C] float32 contiguous.
:func:`usable` says when it applies; callers use ``F.layer_norm`` (and ``F.silu``) otherwise.
"""
from __future__ import annotations

import torch

from . import cpu

LN_BLOCK = 1024                   # rows per work item (LN_BLOCK in cpu_kernel.c)


def usable(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None) -> bool:
    """float32 rows outside autocast with float32 affine parameters that the vector path takes
    (:func:`cpu.vector_rows`, any row count)."""
    return (x.dtype == torch.float32 and not torch.is_autocast_enabled("cpu") and cpu.affine_f32(weight, bias)
            and cpu.vector_rows(x, 1))


def _rows(t: torch.Tensor | None, N: int, C: int) -> torch.Tensor | None:
    return None if t is None else t.reshape(N, C).contiguous()


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


class LayerNormTrain(torch.autograd.Function):
    """(x, weight, bias, eps, silu) -> h, or (h, SiLU(h)) when ``silu``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float, silu: bool):
        lib = cpu.library()
        C = x.shape[-1]
        N = x.numel() // C
        xr = x.detach().reshape(N, C)
        w, b = weight.detach().contiguous(), bias.detach().contiguous()
        h = torch.empty_like(xr)
        s = torch.empty_like(xr) if silu else None
        mean, rstd = xr.new_empty(N), xr.new_empty(N)
        cpu._run(lib.layer_norm_train_fwd_f32, -(-N // LN_BLOCK),     # noqa: SLF001
                 (xr.data_ptr(), h.data_ptr(), _ptr(s), mean.data_ptr(), rstd.data_ptr(), w.data_ptr(), b.data_ptr(),
                  N, C, float(eps)), cpu.SPLIT_ROWS // LN_BLOCK)
        ctx.save_for_backward(xr, mean, rstd, w, b)
        ctx.shape, ctx.silu = x.shape, silu
        if silu:
            return h.view(x.shape), s.view(x.shape)
        return h.view(x.shape)

    @staticmethod
    def backward(ctx, gh: torch.Tensor | None, gs: torch.Tensor | None = None):
        xr, mean, rstd, w, b = ctx.saved_tensors
        N, C = xr.shape
        gh, gs = _rows(gh, N, C), _rows(gs, N, C)
        gx = torch.empty_like(xr)
        nblk = -(-N // LN_BLOCK)
        gwp = torch.empty(nblk, C, dtype=torch.float64)
        gbp = torch.empty(nblk, C, dtype=torch.float64)
        lib = cpu.library()
        cpu._run(lib.layer_norm_train_bwd_f32, nblk,                  # noqa: SLF001
                 (xr.data_ptr(), mean.data_ptr(), rstd.data_ptr(), w.data_ptr(), b.data_ptr(), _ptr(gh), _ptr(gs),
                  gx.data_ptr(), gwp.data_ptr(), gbp.data_ptr(), N, C), cpu.SPLIT_ROWS_MODULATED // LN_BLOCK)
        return gx.view(ctx.shape), gwp.sum(0).float(), gbp.sum(0).float(), None, None


def layer_norm_train(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float, silu: bool = False):
    """h = LayerNorm(x) over the last axis (and SiLU(h) when ``silu``), differentiable; see :func:`usable`."""
    return LayerNormTrain.apply(x, weight, bias, eps, silu)
