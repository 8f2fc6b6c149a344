"""The per-token elementwise parts of the blocks, in one place, and their regional compilation.

Between the GEMMs, LayerNorms and Bi-WKV scans the blocks run chains of elementwise operations over
[B, H, W, C] activations (modulation, gated residuals, the channel-mix and scan-merge gates). On CPU these
are bound by memory traffic: eager PyTorch makes one pass over memory per operation, forward and
backward. ``compile_regions(model)`` replaces them, in every module of the model, by ``torch.compile``d
versions (Inductor fuses each chain into one loop, forward and backward), while the GEMMs, the LayerNorm
kernels and the Bi-WKV kernel stay eager. Measured on the 2-core CPU (bench speed section) the whole VIF
training step and forward then run as fast as eager, where compiling the whole model made training slower
(Inductor's LayerNorm backward over 32-channel tokens is slower than eager's; README, "Kernels and benchmarks");
each region alone runs 1.3-2x faster than eager on large tensors, below ``MIN_COMPILED_NUMEL`` it runs eager.

Modules hold the functions as ``self.pw`` (``EAGER`` by default): no global switch is read in forward.
Every function computes exactly the expression in its docstring, in that order, in eager mode.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fusion.model.layers import channel_mul

__all__ = ["EAGER", "compiled", "compile_regions", "COMPILE_MODES", "compile_model"]

COMPILE_MODES = ("regional", "full")


def modulate(h: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``(1 + scale) * h + shift``; h, scale, shift [..., C]."""
    return (1 + scale) * h + shift


def gated_residual(t: torch.Tensor, gate: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``t + gate * y``; t, gate, y [..., C]."""
    return t + gate * y


class SquaredReLU(torch.autograd.Function):
    """relu(k)^2 with one saved tensor and one backward product: d/dk = 2 relu(k) (0 where k <= 0).

    The same values and gradients as ``torch.relu(k).square()`` (whose backward is a pow backward and a
    threshold backward over the hidden activations); k [..., hidden].
    """

    @staticmethod
    def forward(ctx, k: torch.Tensor) -> torch.Tensor:
        r = torch.relu(k)
        ctx.save_for_backward(r)
        return r * r

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:
        (r,) = ctx.saved_tensors
        return g * (2.0 * r)


def squared_relu(k: torch.Tensor) -> torch.Tensor:
    """``relu(k)^2`` (channel mix hidden activation), k [..., hidden]."""
    return SquaredReLU.apply(k)


def _squared_relu_traced(k: torch.Tensor) -> torch.Tensor:
    return torch.relu(k).square()        # what Inductor fuses (forward and backward)


def receptance_gate(r: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``sigmoid(r) * v`` (channel mix output), r, v [..., C]."""
    return torch.sigmoid(r) * v


def merge_gate(y: torch.Tensor, yc: torch.Tensor, g: torch.Tensor, scale: float, silu: bool) -> torch.Tensor:
    """``(y + yc) * scale * act(g)``, act = SiLU or sigmoid: the merge of the row and column scans of a spatial
    mix (``SpatialMix.merge_scale``) and its output gate; y, yc, g [..., C]."""
    return (y + yc) * scale * (F.silu(g) if silu else torch.sigmoid(g))


def gate_sum(f: torch.Tensor, modal: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """``f * g + modal * g`` (MFM channel gate, main paper sec. 3.5); f, modal [B, C, H, W] channels-last,
    g [B, C, 1, 1] (products on the token view: ``channel_mul``)."""
    return channel_mul(f, g) + channel_mul(modal, g)


_FUNCTIONS = {"modulate": modulate, "gated_residual": gated_residual, "squared_relu": squared_relu,
              "receptance_gate": receptance_gate, "merge_gate": merge_gate,
              "gate_sum": gate_sum}
EAGER = SimpleNamespace(**_FUNCTIONS)
_TRACED = {**_FUNCTIONS, "squared_relu": _squared_relu_traced}


# below this many elements (first argument) a region runs eager: a compiled call costs ~0.1-0.3 ms of guards
# and autograd wrapping, more than it saves on small tensors (the U-net's deep levels, the text tokens)
MIN_COMPILED_NUMEL = 1 << 18


def _by_size(eager: Callable[..., torch.Tensor], fused: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    @functools.wraps(eager)
    def run(x: torch.Tensor, *args: Any) -> torch.Tensor:
        return (fused if x.numel() >= MIN_COMPILED_NUMEL else eager)(x, *args)
    return run


@functools.cache
def compiled() -> SimpleNamespace:
    """The same functions through ``torch.compile`` for large tensors (dynamic shapes: one compilation serves
    every level and batch; compiled on first call). Shared by all modules and models of the process."""
    return SimpleNamespace(**{n: _by_size(_FUNCTIONS[n], torch.compile(f, dynamic=True)) for n, f in _TRACED.items()})


def compile_regions(model: nn.Module) -> nn.Module:
    """Use the compiled elementwise regions in every module of ``model`` that has them (in place; returns it)."""
    fns = compiled()
    for m in model.modules():
        if hasattr(m, "pw"):
            m.pw = fns
    return model


def compile_model(model: nn.Module, mode: str = "regional") -> nn.Module:
    """``regional``: :func:`compile_regions` (the default of every ``--compile`` option); ``full``: the
    whole forward through ``torch.compile`` (``module.compile()``, fixed shapes). In place; returns the model."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile mode {mode!r} not in {COMPILE_MODES}")
    if mode == "regional":
        return compile_regions(model)
    model.compile(dynamic=False)
    return model
