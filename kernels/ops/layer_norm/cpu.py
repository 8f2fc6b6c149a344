"""CPU LayerNorm (optionally with SiLU of the result) over the last axis, in C (``cpu_kernel.c``), for
inference: no autograd, float32, dense rows. PyTorch's CPU LayerNorm spends most of its time per row when the
normalised axis is short (C = 32..64 channels here); this kernel holds a row in vector registers.

``layer_norm(x, weight, bias, eps)`` -> y; ``layer_norm_silu(...)`` -> (y, SiLU(y)). x [..., C] with the
last axis contiguous and rows dense; y (and SiLU(y)) are new contiguous [..., C] tensors of x's dtype. Rows are split over
``torch.get_num_threads()`` Python threads (ctypes releases the GIL). :func:`usable` says when it applies;
otherwise callers use ``torch.nn.functional.layer_norm``.
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
_EXP = Path(__file__).parent.parent / "simd_exp.h"
MIN_ROWS = 2048                                # below this PyTorch's kernel is as fast (call overhead)
# rows per thread below which a call runs on one thread: handing work to a pool thread costs ~0.1-0.2 ms here,
# the time of ~15k LayerNorm rows (a 2-thread split of 16k rows measured slower than one thread)
SPLIT_ROWS = 16384
SPLIT_ROWS_MODULATED = 4096                    # the fused modulation does ~4x the work per row
_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_tried = False
_run = SplitRunner("layer_norm")
_VEC = 0                                       # the library's vector width (C % _VEC == 0, C <= 4 * _VEC)


def library() -> ctypes.CDLL | None:
    """The compiled library (built on first call), None without a C compiler or with RWKVFUSION_CPU_KERNEL=0."""
    global _lib, _tried
    if _tried:
        return _lib
    with _lock:
        if not _tried:
            if os.environ.get("RWKVFUSION_CPU_KERNEL", "1") != "0":
                lib = build("layer_norm_cpu", _SRC, (_EXP,))
                if lib is not None:
                    p, i64 = ctypes.c_void_p, ctypes.c_int64
                    for fn in (lib.layer_norm_f32, lib.layer_norm_bf16):
                        fn.argtypes = [p] * 5 + [i64, ctypes.c_float, i64, i64]
                        fn.restype = None
                    lib.modulated_layer_norm_f32.argtypes = [p] * 6 + [i64, ctypes.c_float, i64, i64]
                    lib.modulated_layer_norm_f32.restype = None
                    lib.merge_gate_f32.argtypes = [p] * 6 + [i64, ctypes.c_float, ctypes.c_float, ctypes.c_int, i64, i64]
                    lib.merge_gate_f32.restype = None
                    lib.channel_act_f32.argtypes = [p] * 4 + [i64] * 4
                    lib.channel_act_f32.restype = None
                    lib.gelu_tanh_f32.argtypes = [p, i64, i64, i64]
                    lib.gelu_tanh_f32.restype = None
                    lib.layer_norm_train_fwd_f32.argtypes = [p] * 7 + [i64, i64, ctypes.c_float, i64, i64]
                    lib.layer_norm_train_fwd_f32.restype = None
                    lib.layer_norm_train_bwd_f32.argtypes = [p] * 10 + [i64] * 4
                    lib.layer_norm_train_bwd_f32.restype = None
                    lib.layer_norm_vector_width.restype = ctypes.c_int
                    global _VEC
                    _VEC = int(lib.layer_norm_vector_width())
                _lib = lib
            _tried = True
    return _lib


def vector_rows(x: torch.Tensor, min_rows: int = MIN_ROWS, *, any_width: bool = False) -> bool:
    """x holds dense CPU rows [..., C] the vector path of this build takes (AVX-512: C a multiple of 16 and, unless
    ``any_width``, at most 64, held in registers), at least ``min_rows`` of them, outside tracing, with the
    library built. The scalar fallback of the C file is no faster than PyTorch, so it is never chosen."""
    if torch.compiler.is_compiling() or x.device.type != "cpu" or x.dim() < 2 or not x.is_contiguous():
        return False
    C = x.shape[-1]
    if x.numel() // max(1, C) < min_rows or library() is None:
        return False
    return _VEC > 0 and C % _VEC == 0 and (any_width or C <= 4 * _VEC)


def affine_f32(weight: torch.Tensor | None, bias: torch.Tensor | None) -> bool:
    """Both LayerNorm parameters present and float32."""
    return weight is not None and bias is not None and weight.dtype == bias.dtype == torch.float32


def usable(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None) -> bool:
    """True when the C kernel computes this LayerNorm: CPU float32 (or bfloat16 under CPU autocast: float32
    arithmetic, bfloat16 outputs, as PyTorch's there), no autograd needed, affine float32 parameters and
    :func:`vector_rows` (enough rows to pay off)."""
    if x.dtype != torch.float32 and not (x.dtype == torch.bfloat16 and torch.is_autocast_enabled("cpu")):
        return False
    if not affine_f32(weight, bias):
        return False
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad or bias.requires_grad):
        return False
    return vector_rows(x)


def _call(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float, silu: bool,
          inplace: bool = False):
    lib = library()
    assert lib is not None, "layer_norm CPU kernel unavailable"
    C = x.shape[-1]
    x = x.detach()
    w, b = weight.detach().contiguous(), bias.detach().contiguous()
    # in place is safe: a row is read into registers before it is written
    y = x if inplace else torch.empty(x.shape, dtype=x.dtype)
    s = torch.empty(x.shape, dtype=x.dtype) if silu else None
    fn = lib.layer_norm_bf16 if x.dtype == torch.bfloat16 else lib.layer_norm_f32
    _run(fn, x.numel() // C, (x.data_ptr(), y.data_ptr(), s.data_ptr() if s is not None else None,
                              w.data_ptr(), b.data_ptr(), C, float(eps)), SPLIT_ROWS)
    return y, s


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float, *,
               inplace: bool = False) -> torch.Tensor:
    """``F.layer_norm(x, (C,), weight, bias, eps)`` for x [..., C] (see :func:`usable`); ``inplace``
    overwrites x with the result (no second [..., C] buffer)."""
    return _call(x, weight, bias, eps, False, inplace)[0]


def layer_norm_silu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                    eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(h, SiLU(h)) with h = ``F.layer_norm(x, (C,), weight, bias, eps)`` for x [..., C], one pass."""
    y, s = _call(x, weight, bias, eps, True)
    assert s is not None
    return y, s


def modulated_usable(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, proj: torch.Tensor) -> bool:
    """:func:`usable` for float32 x outside autocast, with a float32 modulation weight ``proj`` [3C, C]."""
    C = x.shape[-1]
    return (x.dtype == torch.float32 and not torch.is_autocast_enabled("cpu") and proj.dtype == torch.float32
            and tuple(proj.shape) == (3 * C, C) and not (torch.is_grad_enabled() and proj.requires_grad)
            and usable(x, weight, bias))


def modulated_layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float, proj: torch.Tensor,
                         z: torch.Tensor | None, gate: torch.Tensor | None) -> None:
    """The modulation of a BRWKV half-layer in one pass over x [N, C] (see :func:`modulated_usable`):
    h = LN(x), (scale, shift, gate) = SiLU(h) proj^T split in three, ``z = (1 + scale) * h + shift``.
    Writes z and gate into the given contiguous float32 [N, C] tensors (None: not computed)."""
    lib = library()
    assert lib is not None, "layer_norm CPU kernel unavailable"
    N, C = x.shape
    for name, t in (("z", z), ("gate", gate)):
        assert t is None or (t.shape == x.shape and t.dtype == torch.float32 and t.is_contiguous()), name
    w, b = weight.detach().contiguous(), bias.detach().contiguous()
    pt = proj.detach().t().contiguous()                        # [C, 3C]
    _run(lib.modulated_layer_norm_f32, N, (x.data_ptr(), z.data_ptr() if z is not None else None,
                                           gate.data_ptr() if gate is not None else None, w.data_ptr(), b.data_ptr(),
                                           pt.data_ptr(), C, float(eps)), SPLIT_ROWS_MODULATED)


def merge_gate(y: torch.Tensor, yc: torch.Tensor, gl: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
               eps: float, scale: float, silu: bool) -> torch.Tensor:
    """``(LN(y) + LN(yc)) * scale * act(gl)`` (act = SiLU or sigmoid) for float32 rows y, yc, gl [N, C] in one
    pass, written into y (returned): the scan merge and output gate of a spatial mix. Applies where
    ``usable(y, weight, bias)`` holds for all three (dense float32 rows, outside autocast)."""
    lib = library()
    assert lib is not None, "layer_norm CPU kernel unavailable"
    N, C = y.shape
    w, b = weight.detach().contiguous(), bias.detach().contiguous()
    _run(lib.merge_gate_f32, N, (y.data_ptr(), yc.data_ptr(), gl.data_ptr(), y.data_ptr(), w.data_ptr(), b.data_ptr(),
                                 C, float(eps), float(scale), int(silu)), SPLIT_ROWS)
    return y


def merge_usable(y: torch.Tensor, yc: torch.Tensor, gl: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> bool:
    """When :func:`merge_gate` applies: float32 outside autocast, equal shapes, each :func:`usable`."""
    return (not torch.is_autocast_enabled("cpu") and y.shape == yc.shape == gl.shape
            and all(t.dtype == torch.float32 and usable(t, weight, bias) for t in (y, yc, gl)))


def _f32_inference(x: torch.Tensor) -> bool:
    """x is float32 outside CPU autocast and needs no autograd (the float32-only elementwise kernels)."""
    return (x.dtype == torch.float32 and not torch.is_autocast_enabled("cpu")
            and not (torch.is_grad_enabled() and x.requires_grad))


def channel_act_usable(kr: torch.Tensor, gate: torch.Tensor) -> bool:
    """When :func:`channel_act` applies: dense float32 rows outside autograd and autocast, widths the vector
    path takes (multiples of its width), enough rows."""
    return (kr.dim() == 2 and gate.dim() == 2 and kr.shape[0] == gate.shape[0] and kr.shape[1] > gate.shape[1]
            and all(_f32_inference(t) and vector_rows(t, any_width=True) for t in (kr, gate)))


def channel_act(kr: torch.Tensor, gate: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(relu(kr[:, :Hd])^2, sigmoid(kr[:, Hd:]) * gate) for kr [N, Hd + C] and gate [N, C], one pass (see
    :func:`channel_act_usable`): the channel mix's hidden activation and its receptance times the layer gate."""
    lib = library()
    assert lib is not None, "layer_norm CPU kernel unavailable"
    N, C = gate.shape
    Hd = kr.shape[1] - C
    hidden, rg = kr.new_empty(N, Hd), kr.new_empty(N, C)
    _run(lib.channel_act_f32, N, (kr.data_ptr(), gate.data_ptr(), hidden.data_ptr(), rg.data_ptr(), Hd, C),
         SPLIT_ROWS)
    return hidden, rg


def gelu_usable(x: torch.Tensor) -> bool:
    """When :func:`gelu_tanh_` applies: dense float32 rows outside autograd and autocast that the vector path takes."""
    return _f32_inference(x) and vector_rows(x, any_width=True)


def gelu_tanh_(x: torch.Tensor) -> torch.Tensor:
    """``F.gelu(x, approximate="tanh")`` written into x (returned), for x [..., C] (see :func:`gelu_usable`)."""
    lib = library()
    assert lib is not None, "layer_norm CPU kernel unavailable"
    C = x.shape[-1]
    _run(lib.gelu_tanh_f32, x.numel() // C, (x.data_ptr(), C), SPLIT_ROWS)
    return x
