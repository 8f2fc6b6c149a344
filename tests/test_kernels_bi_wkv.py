"""Bi-WKV (Eq. 2): O(T) PyTorch path and Triton kernels (interpreter) vs the float64 naive reference."""
from __future__ import annotations

import math

import pytest
import torch

from rwkvfusion_kernels import bi_wkv
from rwkvfusion_kernels.ops.bi_wkv import bi_wkv_naive, bi_wkv_torch


def _inputs(B, T, C, *, seed=0, dtype=torch.float32, wmax=20.0, umax=3.0, kmax=5.0, grad=False):
    g = torch.Generator().manual_seed(seed)
    k = (torch.rand(B, T, C, generator=g) * 2 - 1) * kmax
    v = torch.randn(B, T, C, generator=g)
    w = (torch.rand(C, generator=g) * 2 - 1) * wmax
    u = (torch.rand(C, generator=g) * 2 - 1) * umax
    out = [x.to(dtype) for x in (k, v, w, u)]
    if grad:
        out = [x.requires_grad_() for x in out]
    return out


def _rel(y, ref):
    y, ref = y.detach().double(), ref.detach().double()
    return float((y - ref).abs().max() / ref.abs().max())


def test_naive_matches_hand_computed_case():
    # T = 3, one channel, written out term by term from Eq. 2 (u not divided by T).
    k = torch.tensor([[[0.1], [-0.4], [0.7]]], dtype=torch.float64)
    v = torch.tensor([[[1.0], [2.0], [-3.0]]], dtype=torch.float64)
    w = torch.tensor([0.9], dtype=torch.float64)
    u = torch.tensor([0.3], dtype=torch.float64)
    T = 3
    y = []
    for t in range(T):
        num = den = 0.0
        for i in range(T):
            wt = math.exp(float(u) + float(k[0, i, 0])) if i == t else \
                math.exp(-(abs(t - i) - 1) / T * float(w) + float(k[0, i, 0]))
            num += wt * float(v[0, i, 0])
            den += wt
        y.append(num / den)
    ref = torch.tensor(y, dtype=torch.float64)
    assert torch.allclose(bi_wkv_naive(k, v, w, u)[0, :, 0], ref, atol=1e-14)
    assert torch.allclose(bi_wkv(k, v, w, u, impl="naive")[0, :, 0], ref, atol=1e-14)
    assert torch.allclose(bi_wkv(k, v, w, u)[0, :, 0], ref, atol=1e-12)     # float64 PyTorch path


@pytest.mark.parametrize("T", [1, 2, 3, 17, 256])
@pytest.mark.parametrize("C", [1, 5, 64])
def test_torch_path_matches_naive(T, C):
    k, v, w, u = _inputs(2, T, C, seed=T * 100 + C)
    y = bi_wkv(k, v, w, u, impl="torch")
    assert y.dtype == torch.float32 and y.shape == k.shape
    assert _rel(y, bi_wkv_naive(k, v, w, u)) <= 1e-5


@pytest.mark.parametrize("C", [1, 5, 64])
def test_torch_path_matches_naive_long(C):
    # T = 4096 spans many chunks and blocks; channels are independent, so the O(T^2) reference is
    # evaluated on a few of them only (keeps the test fast for C = 64).
    T = 4096
    k, v, w, u = _inputs(1, T, C, seed=C)
    y = bi_wkv_torch(k, v, w, u, block=1024)           # several blocks -> exercises the carries
    idx = torch.tensor(sorted({0, C // 2, C - 1}))
    ref = bi_wkv_naive(k[..., idx], v[..., idx], w[idx], u[idx])
    assert _rel(y[..., idx], ref) <= 1e-5


@pytest.mark.parametrize("chunk,block", [(1, 1), (4, 8), (5, 10), (32, 4096)])
def test_chunk_geometry_does_not_change_result(chunk, block):
    k, v, w, u = _inputs(2, 23, 3, seed=1)
    ref = bi_wkv_naive(k, v, w, u)
    assert _rel(bi_wkv_torch(k, v, w, u, chunk=chunk, block=block), ref) <= 1e-5


@pytest.mark.parametrize("T,chunk,block", [(1, 32, 4096), (7, 32, 4096), (11, 4, 8), (13, 3, 3)])
def test_gradcheck_all_inputs(T, chunk, block):
    k, v, w, u = _inputs(2, T, 3, seed=T, dtype=torch.float64, wmax=8.0, grad=True)
    assert torch.autograd.gradcheck(lambda *a: bi_wkv_torch(*a, chunk=chunk, block=block), (k, v, w, u))


def test_gradients_match_naive_autograd_fp32():
    # fp32 custom backward vs autograd through a float64 dense Eq. 2 on a longer, multi-chunk sequence.
    B, T, C = 1, 200, 4
    k, v, w, u = _inputs(B, T, C, seed=3, grad=True)
    gy = torch.randn(B, T, C, generator=torch.Generator().manual_seed(9))
    bi_wkv_torch(k, v, w, u, chunk=16, block=64).backward(gy)
    kd, vd, wd, ud = (x.detach().double().requires_grad_() for x in (k, v, w, u))
    idx = torch.arange(T, dtype=torch.float64)
    dist = (idx[:, None] - idx[None, :]).abs()
    logw = torch.where(dist[..., None] == 0, ud.expand(T, T, C), -(dist[..., None] - 1) / T * wd)
    p = torch.exp(logw[None] + kd[:, None])                                  # [B, t, i, C]
    ((p * vd[:, None]).sum(2) / p.sum(2)).backward(gy.double())
    for got, ref in ((k, kd), (v, vd), (w, wd), (u, ud)):
        assert _rel(got.grad, ref.grad) <= 2e-5


@pytest.mark.parametrize("wsign", [1.0, -1.0])
def test_stable_at_abs_w_50(wsign):
    T, C = 777, 4
    k, v, _, u = _inputs(1, T, C, seed=5)
    w = torch.full((C,), 50.0 * wsign)
    y = bi_wkv(k, v, w, u, impl="torch")
    assert torch.isfinite(y).all()
    assert _rel(y, bi_wkv_naive(k, v, w, u)) <= 1e-5
    w.requires_grad_()
    bi_wkv(k, v, w, u, impl="torch").sum().backward()
    assert torch.isfinite(w.grad).all()


def test_beyond_fp32_limit_switches_to_float64_and_stays_exact():
    T, C = 300, 2
    k, v, _, u = _inputs(1, T, C, seed=6)
    w = torch.tensor([300.0, -300.0])
    y = bi_wkv(k, v, w, u, impl="torch")
    assert y.dtype == torch.float32
    assert _rel(y, bi_wkv_naive(k, v, w, u)) <= 1e-5


@pytest.mark.parametrize("dtype,tol", [(torch.bfloat16, 2e-2), (torch.float16, 2e-3)])
def test_low_precision_inputs_output_dtype(dtype, tol):
    k, v, w, u = _inputs(2, 50, 6, seed=7)
    y = bi_wkv(k.to(dtype), v.to(dtype), w, u, impl="torch")
    assert y.dtype == dtype
    ref = bi_wkv_naive(k.to(dtype), v.to(dtype), w, u)
    assert _rel(y, ref) <= tol


def test_bad_inputs_raise_value_error_naming_argument():
    k, v, w, u = _inputs(1, 8, 3)
    with pytest.raises(ValueError, match=r"\bv\b.*shape"):
        bi_wkv(k, v[:, :5], w, u)
    with pytest.raises(ValueError, match=r"\bw\b"):
        bi_wkv(k, v, w[:2], u)
    with pytest.raises(ValueError, match=r"\bu\b"):
        bi_wkv(k, v, w, u[None])
    with pytest.raises(ValueError, match=r"\bv\b.*dtype"):
        bi_wkv(k, v.double(), w, u)
    with pytest.raises(ValueError, match=r"\bu\b.*dtype"):
        bi_wkv(k, v, w, u.double())
    with pytest.raises(ValueError, match=r"\bk\b"):
        bi_wkv(k[0], v[0], w, u)
    with pytest.raises(ValueError, match=r"\bk\b.*dtype"):
        bi_wkv(k.long(), v.long(), w, u)
    with pytest.raises(ValueError, match=r"\bw\b.*non-finite"):
        bi_wkv(k, v, torch.tensor([0.0, float("nan"), 1.0]), u)
    with pytest.raises(ValueError, match=r"\bw\b.*non-finite"):
        bi_wkv(k, v, torch.tensor([0.0, float("inf"), 1.0]), u)
    with pytest.raises(ValueError, match=r"\bu\b.*non-finite"):
        bi_wkv(k, v, w, torch.tensor([0.0, float("nan"), 1.0]))
    with pytest.raises(ValueError, match=r"\bw\b"):
        bi_wkv(k, v, torch.full((3,), 1e4), u)
    with pytest.raises(ValueError, match="impl"):
        bi_wkv(k, v, w, u, impl="cuda")
    with pytest.raises(ValueError, match=r"\bv\b.*meta"):
        bi_wkv(k, v.to("meta"), w, u)


# ---- Triton kernels (through the interpreter on CPU; keep shapes small: ~1 ms per program step) ----

def _triton_vs_torch(B, T, C, dtype, block_t, block_c, seed, device="cpu"):
    """Triton on ``device`` (CUDA, or the interpreter on CPU) vs the PyTorch path on the CPU; CPU results."""
    from rwkvfusion_kernels.ops.bi_wkv.triton_kernels import bi_wkv_triton

    k, v, w, u = _inputs(B, T, C, seed=seed)
    k, v = k.to(dtype).requires_grad_(), v.to(dtype).requires_grad_()
    w, u = w.requires_grad_(), u.requires_grad_()
    gy = torch.randn(B, T, C, generator=torch.Generator().manual_seed(seed + 1)).to(dtype)
    dev = [x.detach().to(device).requires_grad_() for x in (k, v, w, u)]
    y = bi_wkv_triton(*dev, block_t, block_c)
    grads = [g.cpu() for g in torch.autograd.grad(y, dev, gy.to(device))]
    y_ref = bi_wkv_torch(k, v, w, u)
    ref = torch.autograd.grad(y_ref, (k, v, w, u), gy)
    return y.cpu(), y_ref, grads, ref


def test_triton_forward_backward_match_torch_fp32(triton_device):
    # odd shapes: 3 time chunks (last one ragged), channels masked inside the block, B = 2
    y, y_ref, grads, ref = _triton_vs_torch(2, 37, 13, torch.float32, 16, 16, seed=11, device=triton_device)
    assert y.dtype == torch.float32
    assert _rel(y, y_ref) <= 1e-5
    for name, g, r in zip("kvwu", grads, ref):
        assert _rel(g, r) <= 2e-5, name


def test_triton_bf16_inputs(triton_device):
    # bf16 in/out, fp32 inside: y is rounded once to bf16 (rel. 2^-8 per element), so the documented
    # tolerance is 1e-2 of max|y|; gradients come back in bf16 as well (same tolerance; w/u in fp32).
    y, y_ref, grads, ref = _triton_vs_torch(1, 20, 20, torch.bfloat16, 8, 16, seed=12, device=triton_device)
    assert y.dtype == torch.bfloat16 and grads[0].dtype == torch.bfloat16
    assert _rel(y, y_ref) <= 1e-2
    for name, g, r in zip("kvwu", grads, ref):
        assert _rel(g, r) <= 1e-2, name


def test_triton_dispatch_single_token_and_large_w_fallback(triton_device):
    d = triton_device
    k, v, w, u = _inputs(1, 1, 3, seed=13)
    got = bi_wkv(k.to(d), v.to(d), w.to(d), u.to(d), impl="triton").cpu()
    assert torch.allclose(got, v)                                        # T = 1: y = v exactly
    k, v, _, u = _inputs(1, 9, 3, seed=14)
    w = torch.tensor([80.0, -80.0, 1.0])                                 # beyond fp32 range -> float64 path
    got = bi_wkv(k.to(d), v.to(d), w.to(d), u.to(d), impl="triton").cpu()
    assert _rel(got, bi_wkv_naive(k, v, w, u)) <= 1e-5
    if d == "cuda":                                                      # the default on CUDA is Triton
        assert _rel(bi_wkv(k.to(d), v.to(d), torch.tensor([1.0, 2.0, 3.0], device=d), u.to(d)).cpu(),
                    bi_wkv_naive(k, v, torch.tensor([1.0, 2.0, 3.0]), u)) <= 1e-5


def test_triton_stable_at_abs_w_50_on_short_sequence(triton_device):
    # T < BLOCK_T: padded rows must not form r^d beyond the sequence (would overflow for w < 0)
    from rwkvfusion_kernels.ops.bi_wkv.triton_kernels import bi_wkv_triton

    d = triton_device
    k, v, _, u = _inputs(1, 5, 4, seed=15)
    w = torch.tensor([50.0, -50.0, 49.0, -49.0])
    kt, wt = k.to(d).requires_grad_(), w.to(d).requires_grad_()
    y = bi_wkv_triton(kt, v.to(d), wt, u.to(d), 16, 16)
    assert _rel(y.cpu(), bi_wkv_naive(k, v, w, u)) <= 1e-5
    gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(16))
    gk, gw = (g.cpu() for g in torch.autograd.grad(y, (kt, wt), gy.to(d)))
    kd, wd = k.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    gk_ref, gw_ref = torch.autograd.grad(bi_wkv_torch(kd, v.double(), wd, u.double()), (kd, wd), gy.double())
    assert _rel(gk, gk_ref) <= 1e-4
    # |w|/T = 10 per step: dL/dw is a difference of nearly equal fp32 terms (the fp32 PyTorch path
    # shows the same ~1e-3 relative error), hence the loose bound here
    assert torch.isfinite(gw).all() and _rel(gw, gw_ref) <= 1e-2


@pytest.mark.parametrize("block_t", [None, 64])
def test_triton_default_tiles_and_longer_forward_chunks(block_t, triton_device):
    # default tiles (T = 70: three ragged chunks); block_t = 64 gives forward chunks of 64 and
    # backward chunks of BLOCK_T_BWD = 32 (the backward's chunking is independent of the forward's)
    from rwkvfusion_kernels.ops.bi_wkv.triton_kernels import BLOCK_C, BLOCK_T

    y, y_ref, grads, ref = _triton_vs_torch(1, 70, 5, torch.float32, block_t or BLOCK_T, BLOCK_C, seed=17,
                                            device=triton_device)
    assert _rel(y, y_ref) <= 1e-5
    for name, g, r in zip("kvwu", grads, ref):
        assert _rel(g, r) <= 2e-5, name
