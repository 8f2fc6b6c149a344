"""Bi-WKV dispatcher (Eq. 2 of the paper): input validation, then the implementation for the device.

Implementations (``impl``):

* ``"cpu"``: float64-state recurrences in C (:mod:`.cpu`), registered as the ``torch.library`` custom ops
  ``rwkvfusion::bi_wkv_fwd`` / ``rwkvfusion::bi_wkv_bwd`` with fake (meta) kernels and autograd, so
  ``torch.compile`` traces through it without graph breaks. Reads ``[B, T1, T2, C]`` strided views in
  place (e.g. the column scan of a channels-last image). The default on CPU when a C compiler is present.
* ``"torch"``: the exact chunked O(T) PyTorch path (any device; the default on CPU without a compiler).
* ``"triton"``: the Triton kernels (the default on CUDA).
* ``"naive"``: the O(T^2) float64 reference (no autograd).

Value checks (finite w and u, ``|w| <= MAX_ABS_W``) read tensor values, i.e. synchronise with the device;
they run when ``validate=True`` (the default for direct calls) and are skipped while compiling. The model
calls with ``validate=False`` on every forward (its parameters are checked where they are loaded/trained).
"""
from __future__ import annotations

import math
import os

import torch

from . import cpu
from .naive import bi_wkv_naive
from .torch_ref import MAX_ABS_W, bi_wkv_torch

IMPLS = ("cpu", "torch", "triton", "naive")
_FLOAT_IN = (torch.float32, torch.bfloat16, torch.float16, torch.float64)
# analytic FLOPs of one output element (one token, one channel), forward: exp(k), e^k*v, two directions x
# (numerator, denominator) x (multiply by the decay, add), the bonus term (exp(u+k), times v, two adds), a division
WKV_FLOPS_PER_ELEMENT = 16


def _check_meta(k: torch.Tensor, v: torch.Tensor, w: torch.Tensor, u: torch.Tensor, seq_dims: int) -> None:
    """Shape/dtype/device checks (metadata only, no synchronisation). Raise ValueError naming the argument."""
    for name, x in (("k", k), ("v", v), ("w", w), ("u", u)):
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"bi_wkv: {name} must be a torch.Tensor, got {type(x).__name__}")
        if x.dtype not in _FLOAT_IN:
            raise ValueError(f"bi_wkv: {name} has dtype {x.dtype}; expected float32, bfloat16, float16 or float64")
    if k.dim() not in (3,) + ((4,) if seq_dims == 2 else ()):
        want = "[B, T, C] or [B, T1, T2, C]" if seq_dims == 2 else "[B, T, C]"
        raise ValueError(f"bi_wkv: k must be {want}, got shape {tuple(k.shape)}")
    C = k.shape[-1]
    if min(k.shape[1:]) < 1:
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


def check_values(w: torch.Tensor, u: torch.Tensor) -> None:
    """Finite w and u, ``max|w| <= MAX_ABS_W`` (exp(|w|) would overflow even in float64). Synchronises."""
    wmax = float(w.detach().abs().max())                   # NaN/inf propagate through the max
    if not math.isfinite(wmax):
        raise ValueError("bi_wkv: w contains non-finite values")
    if not bool(torch.isfinite(u.detach()).all()):
        raise ValueError("bi_wkv: u contains non-finite values")
    if wmax > MAX_ABS_W:
        raise ValueError(f"bi_wkv: w has |w| = {wmax:.3g} > {MAX_ABS_W:g}; exp(|w|) would overflow even in float64")


def _triton_usable(x: torch.Tensor) -> bool:
    return x.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"


def resolve_impl(x: torch.Tensor, impl: str | None) -> str:
    """The implementation ``bi_wkv(..., impl=impl)`` runs for tensors like ``x``."""
    if impl is None:
        if x.is_cuda:
            return "triton"
        return "cpu" if x.device.type == "cpu" and cpu.available() else "torch"
    if impl not in IMPLS:
        raise ValueError(f"bi_wkv: impl must be one of {IMPLS} or None, got {impl!r}")
    return impl


# ----------------------------------------------------------------------------- custom ops (CPU kernel)
@torch.library.custom_op("rwkvfusion::bi_wkv_fwd", mutates_args=(), device_types="cpu")
def bi_wkv_fwd(k: torch.Tensor, v: torch.Tensor, w: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, D): Eq. 2 and its denominator, float32 (float64 for float64 inputs), laid out like ``k``."""
    return cpu.forward(k, v, w, u)


@bi_wkv_fwd.register_fake
def _(k, v, w, u):
    dt = cpu.compute_dtype(k.dtype)
    return torch.empty_like(k, dtype=dt), torch.empty_like(k, dtype=dt)


@torch.library.custom_op("rwkvfusion::bi_wkv_bwd", mutates_args=(), device_types="cpu")
def bi_wkv_bwd(gy: torch.Tensor, k: torch.Tensor, v: torch.Tensor, w: torch.Tensor, u: torch.Tensor,
               y: torch.Tensor, D: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(gk, gv, gw, gu) of Eq. 2 from the forward's (y, D)."""
    return cpu.backward(gy, k, v, w, u, y, D)


@bi_wkv_bwd.register_fake
def _(gy, k, v, w, u, y, D):
    return torch.empty_like(k), torch.empty_like(v), torch.empty_like(w), torch.empty_like(u)


def _setup_context(ctx, inputs, output):
    k, v, w, u = inputs
    y, D = output
    ctx.mark_non_differentiable(D)
    ctx.save_for_backward(k, v, w, u, y, D)


def _backward(ctx, gy, _gD):
    k, v, w, u, y, D = ctx.saved_tensors
    if gy is None:
        gy = torch.zeros_like(y)
    return tuple(torch.ops.rwkvfusion.bi_wkv_bwd(gy, k, v, w, u, y, D))


bi_wkv_fwd.register_autograd(_backward, setup_context=_setup_context)


def _flops_fwd(k_shape, *args, out_shape=None, **kwargs) -> int:
    return WKV_FLOPS_PER_ELEMENT * math.prod(k_shape)


def _flops_bwd(gy_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * WKV_FLOPS_PER_ELEMENT * math.prod(gy_shape)


try:  # torch.utils.flop_counter counts the opaque op analytically (it cannot see inside)
    from torch.utils.flop_counter import register_flop_formula

    register_flop_formula(torch.ops.rwkvfusion.bi_wkv_fwd)(_flops_fwd)
    register_flop_formula(torch.ops.rwkvfusion.bi_wkv_bwd)(_flops_bwd)
except (ImportError, RuntimeError):  # pragma: no cover - older torch
    pass


# ----------------------------------------------------------------------------- public entry point
def bi_wkv(k: torch.Tensor, v: torch.Tensor, w: torch.Tensor, u: torch.Tensor, *,
           impl: str | None = None, validate: bool = True) -> torch.Tensor:
    """Bi-WKV of Eq. 2 (u NOT divided by T). k, v: [B, T, C]; w, u: [C] -> y [B, T, C].

    With ``impl="cpu"`` (the CPU default when the C kernel builds) k and v may also be [B, T1, T2, C]
    strided views, the sequence being ``t = t1*T2 + t2``; y then has k's shape and strides.
    fp32/bf16/fp16 (and float64) inputs, float32 (or float64) accumulation, output in k's dtype.
    ``impl``: None picks "triton" for CUDA tensors, "cpu" (else "torch") on CPU; "triton" on CPU tensors
    needs TRITON_INTERPRET=1 (tests); "naive" is the O(T^2) float64 reference (no autograd).
    ``validate``: also check values (finite, |w| bound); this reads w and u, a device synchronisation.
    """
    if impl is not None and impl not in IMPLS:
        raise ValueError(f"bi_wkv: impl must be one of {IMPLS} or None, got {impl!r}")
    _check_meta(k, v, w, u, seq_dims=2 if impl in (None, "cpu") else 1)
    impl = resolve_impl(k, impl)
    if impl == "cpu" and k.device.type != "cpu":
        raise ValueError(f"bi_wkv: impl='cpu' needs CPU tensors, got {k.device}")
    if validate and not torch.compiler.is_compiling():
        check_values(w, u)
    if impl == "cpu":
        if not cpu.available():
            raise ValueError("bi_wkv: impl='cpu' needs the C kernel (no C compiler found, or RWKVFUSION_CPU_KERNEL=0)")
        y, _ = torch.ops.rwkvfusion.bi_wkv_fwd(k, v, w, u)
        return y if y.dtype == k.dtype else y.to(k.dtype)
    if k.dim() == 4:                                      # the other paths take [B, T, C]
        B, T1, T2, C = k.shape
        return bi_wkv(k.reshape(B, T1 * T2, C), v.reshape(B, T1 * T2, C), w, u, impl=impl,
                      validate=False).view(B, T1, T2, C)
    if impl == "torch":
        return bi_wkv_torch(k, v, w, u)
    if impl == "triton":
        if not _triton_usable(k):
            raise ValueError("bi_wkv: impl='triton' needs CUDA tensors (or TRITON_INTERPRET=1 set before import)")
        from .triton_kernels import bi_wkv_triton

        return bi_wkv_triton(k, v, w, u)
    return bi_wkv_naive(k, v, w, u).to(k.dtype)
