"""CPU Bi-WKV (Eq. 2) as float64-state linear recurrences in C (``cpu_kernel.c``), loaded with ctypes.

The C source is compiled on first use with the system C compiler (``cc -O3 -march=native``, no PyTorch
headers, about a second) into a per-user cache keyed by the source, the flags and the CPU. Without a
compiler (or with ``RWKVFUSION_CPU_KERNEL=0``) :func:`available` is False and callers use the chunked
PyTorch path. Work is split over ``torch.get_num_threads()`` Python threads (ctypes releases the GIL).

Tensors are ``[B, T, C]`` or ``[B, T1, T2, C]`` (sequence index ``t = t1*T2 + t2``) with unit channel
stride: a column-major scan of a channels-last image ``x [B, H, W, C]`` is ``x.transpose(1, 2)``, read in
place. Outputs take the input's strides, so that scan's output is already in pixel order.
"""
from __future__ import annotations

import ctypes
import os
import threading
from pathlib import Path

import torch

from ..cbuild import build
from ..cthreads import SplitRunner

_SRC = Path(__file__).with_name("cpu_kernel.c")
_BODY = Path(__file__).with_name("cpu_kernel_body.h")
_EXP = Path(__file__).parent.parent / "simd_exp.h"
FP32_W_LIMIT = 50.0                        # float32 outputs hold the reverse states up to this max|w|
_CB = 16                                   # channels per work item (CB in cpu_kernel.c)
_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_tried = False
_run_items = SplitRunner("bi_wkv")


def _build() -> ctypes.CDLL | None:
    # 512-bit vectors for gcc's auto-vectorised float64 recurrences: the backward runs ~25% faster than with the
    # default 256-bit preference (fwd+bwd at T=256^2, C=64: 44 vs 57 ms on the 2-core AVX-512 CPU here)
    lib = build("bi_wkv_cpu", _SRC, (_BODY, _EXP), native_flags=("-mprefer-vector-width=512",))
    if lib is None:
        return None
    i64, p = ctypes.c_int64, ctypes.c_void_p
    for sfx in ("f32", "f64"):
        getattr(lib, f"bi_wkv_fwd_{sfx}").argtypes = [p] * 7 + [i64] * 9
        getattr(lib, f"bi_wkv_fwd_{sfx}").restype = None
        getattr(lib, f"bi_wkv_bwd_{sfx}").argtypes = [p] * 12 + [i64] * 9
        getattr(lib, f"bi_wkv_bwd_{sfx}").restype = None
    return lib


def library() -> ctypes.CDLL | None:
    """The compiled kernel library, building it on first call; None when it cannot be built."""
    global _lib, _tried
    if not _tried:
        with _lock:
            if not _tried:
                if os.environ.get("RWKVFUSION_CPU_KERNEL", "1") != "0":
                    _lib = _build()
                _tried = True
    return _lib


@torch.compiler.assume_constant_result
def available() -> bool:
    """True when the C kernel is built (or can be built) on this machine.

    A constant for ``torch.compile``: Dynamo calls it once while tracing instead of tracing the build lock
    (which would break the graph at every spatial mix).
    """
    return library() is not None


def _as4d(x: torch.Tensor) -> torch.Tensor:
    return x.unsqueeze(2) if x.dim() == 3 else x


def _dense_channels_last(x: torch.Tensor) -> bool:
    return (x.stride(-1) == 1 or x.shape[-1] == 1) and torch._prims_common.is_non_overlapping_and_dense_or_false(x)


def _like(x: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """x as ``dtype`` with exactly ``ref``'s strides (a copy only when needed)."""
    if x.dtype == dtype and x.stride() == ref.stride():
        return x
    out = torch.empty_like(ref, dtype=dtype)
    out.copy_(x)
    return out


def _max_k(k4: torch.Tensor) -> torch.Tensor:
    """max of k over the sequence per (batch, channel), float64 [B, C] (the kernel forms exp(k - max))."""
    return k4.amax(dim=(1, 2)).double().contiguous()


def _geometry(x4: torch.Tensor) -> tuple[int, ...]:
    B, T1, T2, C = x4.shape
    return B, T1, T2, C, x4.stride(0), x4.stride(1), x4.stride(2)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for float32/bfloat16/float16 inputs, float64 for float64."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _kernel_dtype(dt: torch.dtype, w: torch.Tensor) -> torch.dtype:
    # w lives on the CPU here: reading it is no device synchronisation
    if dt == torch.float32 and float(w.detach().abs().max()) > FP32_W_LIMIT:
        return torch.float64
    return dt


def forward(k: torch.Tensor, v: torch.Tensor, w: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, D) of Eq. 2 in the compute dtype (float32, or float64 for float64 inputs), strides of ``k``.

    k, v: [B, T, C] or [B, T1, T2, C]; w, u: [C]. D is the denominator, kept for the backward.
    """
    lib = library()
    assert lib is not None, "bi_wkv CPU kernel unavailable"
    dt = compute_dtype(k.dtype)
    kdt = _kernel_dtype(dt, w)
    y = torch.empty_like(k, dtype=dt)
    ref = y if _dense_channels_last(y) and kdt == dt else torch.empty(k.shape, dtype=kdt)  # else: contiguous
    y4 = _as4d(ref)
    k4 = _like(_as4d(k.detach()), y4, kdt)
    m = _max_k(k4)                                                        # exact rescaling: y is a ratio
    v4 = _like(_as4d(v.detach()), y4, kdt)
    D4 = torch.empty_like(y4)
    wd, ud = w.detach().double().contiguous(), u.detach().double().contiguous()
    B, T1, T2, C, sb, s1, s2 = _geometry(y4)
    fn = lib.bi_wkv_fwd_f64 if kdt == torch.float64 else lib.bi_wkv_fwd_f32
    _run_items(fn, B * -(-C // _CB), (k4.data_ptr(), v4.data_ptr(), y4.data_ptr(), D4.data_ptr(), m.data_ptr(),
                                      wd.data_ptr(), ud.data_ptr(), B, T1, T2, C, sb, s1, s2))
    if ref is not y:
        y.copy_(ref)
        return y, _like(D4.view(ref.shape), y, dt)
    return y, D4.view(y.shape)


def backward(gy: torch.Tensor, k: torch.Tensor, v: torch.Tensor, w: torch.Tensor, u: torch.Tensor,
             y: torch.Tensor, D: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients (gk, gv, gw, gu) of Eq. 2 from the forward's (y, D) (compute dtype, strides of ``k``)."""
    lib = library()
    assert lib is not None, "bi_wkv CPU kernel unavailable"
    kdt = _kernel_dtype(y.dtype, w)
    ref = y if _dense_channels_last(y) and kdt == y.dtype else _like(y, torch.empty(y.shape, dtype=kdt), kdt)
    y4 = _as4d(ref)
    D4 = _as4d(_like(D, ref, kdt))
    k4 = _like(_as4d(k.detach()), y4, kdt)
    m = _max_k(k4)
    v4 = _like(_as4d(v.detach()), y4, kdt)
    g4 = _like(_as4d(gy), y4, kdt)
    gk4, gv4 = torch.empty_like(y4), torch.empty_like(y4)
    B, T1, T2, C, sb, s1, s2 = _geometry(y4)
    pu = torch.empty(B, C, dtype=torch.float64)
    pw = torch.empty(B, C, dtype=torch.float64)
    wd, ud = w.detach().double().contiguous(), u.detach().double().contiguous()
    fn = lib.bi_wkv_bwd_f64 if kdt == torch.float64 else lib.bi_wkv_bwd_f32
    _run_items(fn, B * -(-C // _CB), (k4.data_ptr(), v4.data_ptr(), y4.data_ptr(), D4.data_ptr(), g4.data_ptr(),
                                      gk4.data_ptr(), gv4.data_ptr(), m.data_ptr(), wd.data_ptr(), ud.data_ptr(),
                                      pu.data_ptr(), pw.data_ptr(), B, T1, T2, C, sb, s1, s2))
    T = T1 * T2
    gw = (-pw.sum(0) / T).to(w.dtype)
    gu = (torch.exp(ud) * pu.sum(0)).to(u.dtype)
    gk, gv = gk4.view(ref.shape), gv4.view(ref.shape)
    gk, gv = _like(gk, torch.empty_like(k), k.dtype), _like(gv, torch.empty_like(v), v.dtype)
    return gk, gv, gw, gu
