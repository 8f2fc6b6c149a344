"""CPU LayerNorm kernel (C, inference) vs torch.nn.functional.layer_norm; when it applies; the model's use."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fusion.model.layers import layer_norm, layer_norm_silu
from rwkvfusion_kernels.ops.layer_norm import cpu

needs_kernel = pytest.mark.skipif(cpu.library() is None or cpu._VEC == 0,
                                  reason="LayerNorm C kernel not built or no vector path (no AVX-512)")


@needs_kernel
@pytest.mark.parametrize("C", [16, 32, 48, 64])
@pytest.mark.parametrize("threads", [1, 2])
def test_matches_torch(C, threads):
    g = torch.Generator().manual_seed(C)
    x = torch.randn(3, 1500, C, generator=g) * 4 + 2
    w, b = torch.randn(C, generator=g), torch.randn(C, generator=g)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            assert cpu.usable(x, w, b)
            ref = F.layer_norm(x, (C,), w, b, 1e-5)
            y = cpu.layer_norm(x, w, b, 1e-5)
            h, s = cpu.layer_norm_silu(x, w, b, 1e-5)
    finally:
        torch.set_num_threads(old)
    scale = float(ref.abs().max())
    assert float((y - ref).abs().max()) <= 1e-6 * scale
    assert torch.equal(h, y)
    assert float((s - F.silu(ref)).abs().max()) <= 1e-6 * scale


def test_falls_back_where_it_does_not_apply():
    w, b = torch.ones(32, requires_grad=True), torch.zeros(32, requires_grad=True)
    x = torch.randn(4096, 32)
    assert not cpu.usable(x, w, b)                          # autograd needs the graph
    with torch.no_grad():
        assert not cpu.usable(x.double(), w.double(), b.double())
        assert not cpu.usable(x[:, :16], w[:16], b[:16])   # rows not dense
        assert not cpu.usable(x[:100], w, b)               # too few rows to pay off
        assert not cpu.usable(torch.randn(4096, 24), torch.ones(24), torch.zeros(24)) or cpu._VEC == 8


def test_model_helpers_equal_the_modules_with_and_without_autograd():
    ln = torch.nn.LayerNorm(32)
    with torch.no_grad():
        ln.weight.uniform_(0.5, 1.5)
        ln.bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, 64, 64, 32)
    ref = ln(x).detach()
    with torch.no_grad():
        h, s = layer_norm_silu(x, ln)
        assert float((layer_norm(x, ln) - ref).abs().max()) <= 1e-5
        assert float((h - ref).abs().max()) <= 1e-5 and float((s - F.silu(ref)).abs().max()) <= 1e-5
    y = layer_norm(x.requires_grad_(), ln)
    assert y.requires_grad                                  # the autograd path (F.layer_norm)
    y.sum().backward()
    assert ln.weight.grad is not None


@needs_kernel
def test_bfloat16_under_autocast_matches_torch():
    g = torch.Generator().manual_seed(3)
    x = (torch.randn(4096, 32, generator=g) * 3 + 1).bfloat16()
    w, b = torch.randn(32, generator=g), torch.randn(32, generator=g)
    assert not cpu.usable(x, w, b)                          # bf16 only where autocast normalises it
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert cpu.usable(x, w, b)
        ref = F.layer_norm(x, (32,), w, b, 1e-5)
        h, s = cpu.layer_norm_silu(x, w, b, 1e-5)
    assert h.dtype == ref.dtype == torch.bfloat16
    exact = F.layer_norm(x.float(), (32,), w, b, 1e-5)
    tol = 2 ** -7 * float(exact.abs().max())                # one bfloat16 rounding
    assert float((h.float() - exact).abs().max()) <= tol
    assert float((s.float() - F.silu(exact)).abs().max()) <= tol


@needs_kernel
def test_in_place_equals_out_of_place():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 3000, 32, generator=g)
    w, b = torch.randn(32, generator=g), torch.randn(32, generator=g)
    with torch.inference_mode():
        y = cpu.layer_norm(x, w, b, 1e-5)
        z = x.clone()
        out = cpu.layer_norm(z, w, b, 1e-5, inplace=True)
    assert out.data_ptr() == z.data_ptr() and torch.equal(out, y)
