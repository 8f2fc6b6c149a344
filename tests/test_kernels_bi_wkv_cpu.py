"""CPU Bi-WKV kernel (C recurrences) vs the float64 naive reference of Eq. 2; custom-op plumbing."""
from __future__ import annotations

import pytest
import torch

from rwkvfusion_kernels import bi_wkv
from rwkvfusion_kernels.ops.bi_wkv import bi_wkv_naive, bi_wkv_torch, cpu

pytestmark = pytest.mark.skipif(not cpu.available(), reason="CPU Bi-WKV kernel not built (no C compiler)")


def _inputs(B, T, C, *, seed=0, dtype=torch.float32, wmax=20.0, umax=3.0, kmax=5.0):
    g = torch.Generator().manual_seed(seed)
    k = (torch.rand(B, T, C, generator=g) * 2 - 1) * kmax
    v = torch.randn(B, T, C, generator=g)
    w = (torch.rand(C, generator=g) * 2 - 1) * wmax
    u = (torch.rand(C, generator=g) * 2 - 1) * umax
    return [x.to(dtype) for x in (k, v, w, u)]


def _rel(y, ref):
    y, ref = y.detach().double(), ref.detach().double()
    return float((y - ref).abs().max() / ref.abs().max().clamp_min(1e-30))


@pytest.mark.parametrize("T", [1, 2, 3, 17, 100, 256])
@pytest.mark.parametrize("C", [1, 5, 16, 17, 37])
def test_cpu_forward_matches_naive(T, C):
    k, v, w, u = _inputs(2, T, C, seed=T * 1000 + C)
    y = bi_wkv(k, v, w, u, impl="cpu")
    assert y.dtype == torch.float32 and y.shape == k.shape
    assert _rel(y, bi_wkv_naive(k, v, w, u)) <= 1e-6


def test_cpu_float32_exp_wide_range_masked_keys_and_nan():
    # full 16-channel float32 blocks form exp(k - max k) in float32 (AVX-512): a wide k range (many terms
    # underflow), masked keys (-1e4: exactly no contribution) and a NaN key (its channel only turns NaN)
    k, v, w, u = _inputs(2, 200, 32, seed=11, kmax=60.0)
    k[:, ::7] = -1.0e4
    assert _rel(bi_wkv(k, v, w, u, impl="cpu"), bi_wkv_naive(k, v, w, u)) <= 1e-6
    k[0, 5, 3] = float("nan")
    y = bi_wkv(k, v, w, u, impl="cpu", validate=False)
    assert bool(y[0, :, 3].isnan().all())
    y[0, :, 3] = 0.0
    assert bool(y.isfinite().all())


@pytest.mark.parametrize("wmax", [60.0, 300.0])
def test_cpu_large_w_uses_float64_states_and_scratch(wmax):
    # beyond FP32_W_LIMIT the reverse states no longer fit float32 outputs: the float64 kernel takes over
    k, v, w, u = _inputs(1, 40, 9, seed=3, wmax=wmax)
    w[0], w[1] = wmax, -wmax
    assert _rel(bi_wkv(k, v, w, u, impl="cpu"), bi_wkv_naive(k, v, w, u)) <= 1e-6


def test_cpu_float64_is_exact_and_low_precision_inputs_keep_their_dtype():
    k, v, w, u = _inputs(3, 33, 7, seed=4, dtype=torch.float64)
    assert _rel(bi_wkv(k, v, w, u, impl="cpu"), bi_wkv_naive(k, v, w, u)) <= 1e-13
    for dt, tol in ((torch.bfloat16, 1e-2), (torch.float16, 2e-3)):
        y = bi_wkv(k.to(dt), v.to(dt), w.float(), u.float(), impl="cpu")
        assert y.dtype == dt
        assert _rel(y, bi_wkv_naive(k.to(dt), v.to(dt), w, u)) <= tol


def test_cpu_reads_strided_column_scans_in_place():
    # [B, H, W, C] channels-last tokens; the column-major sequence t = w*H + h is the (1, 2) transpose
    g = torch.Generator().manual_seed(5)
    B, H, W, C = 2, 7, 11, 20
    k, v = torch.randn(B, H, W, C, generator=g), torch.randn(B, H, W, C, generator=g)
    w, u = torch.rand(C, generator=g) * 4 - 2, torch.rand(C, generator=g)
    y = bi_wkv(k.transpose(1, 2), v.transpose(1, 2), w, u, impl="cpu")
    assert y.shape == (B, W, H, C) and y.transpose(1, 2).is_contiguous()      # output in pixel order
    ref = bi_wkv_naive(k.transpose(1, 2).reshape(B, W * H, C), v.transpose(1, 2).reshape(B, W * H, C), w, u)
    assert _rel(y.reshape(B, W * H, C), ref) <= 1e-6
    # channels not contiguous (a dense permuted layout, as cross_scan returns): copied first, same result
    kp, vp = k.permute(0, 3, 1, 2).contiguous().flatten(2).transpose(1, 2), v.permute(0, 3, 1, 2).contiguous()
    vp = vp.flatten(2).transpose(1, 2)
    assert kp.stride(-1) != 1
    yp = bi_wkv(kp, vp, w, u, impl="cpu")
    assert _rel(yp, bi_wkv_naive(kp, vp, w, u)) <= 1e-6
    kg, vg, wg, ug = (x.detach().double().requires_grad_() for x in (kp, vp, w, u))
    assert torch.autograd.gradcheck(lambda *a: bi_wkv(*a, impl="cpu"), (kg[:, :9, :4], vg[:, :9, :4],
                                    wg[:4].detach().requires_grad_(), ug[:4].detach().requires_grad_()))
    # a non-dense view (every other channel) is copied first, same result
    ks, vs = k[..., ::2], v[..., ::2]
    ys = bi_wkv(ks, vs, w[::2].contiguous(), u[::2].contiguous(), impl="cpu")
    refs = bi_wkv_naive(ks.reshape(B, H * W, C // 2), vs.reshape(B, H * W, C // 2), w[::2], u[::2])
    assert _rel(ys.reshape(B, H * W, C // 2), refs) <= 1e-6


@pytest.mark.parametrize("shape", [(1, 1, 3), (2, 5, 3), (1, 9, 17)])
def test_cpu_gradcheck(shape):
    k, v, w, u = _inputs(*shape, seed=6, dtype=torch.float64, wmax=4.0)
    args = [x.requires_grad_() for x in (k, v, w, u)]
    assert torch.autograd.gradcheck(lambda *a: bi_wkv(*a, impl="cpu"), args, eps=1e-6, atol=1e-8, rtol=1e-6)


def test_cpu_gradcheck_strided_4d():
    g = torch.Generator().manual_seed(7)
    k = torch.randn(1, 3, 4, 5, dtype=torch.float64, generator=g)
    v = torch.randn(1, 3, 4, 5, dtype=torch.float64, generator=g)
    w = torch.randn(5, dtype=torch.float64, generator=g)
    u = torch.randn(5, dtype=torch.float64, generator=g)
    args = [x.requires_grad_() for x in (k, v, w, u)]
    fn = lambda k, v, w, u: bi_wkv(k.transpose(1, 2), v.transpose(1, 2), w, u, impl="cpu")  # noqa: E731
    assert torch.autograd.gradcheck(fn, args, eps=1e-6, atol=1e-8, rtol=1e-6)


def test_cpu_fp32_gradients_match_float64_torch_path():
    k, v, w, u = _inputs(2, 300, 20, seed=8)
    gy = torch.randn(k.shape, generator=torch.Generator().manual_seed(9))
    a = [x.clone().requires_grad_() for x in (k, v, w, u)]
    grads = torch.autograd.grad(bi_wkv(*a, impl="cpu"), a, gy)
    d = [x.double().requires_grad_() for x in (k, v, w, u)]
    ref = torch.autograd.grad(bi_wkv_torch(*d), d, gy.double())
    for name, g, r in zip("kvwu", grads, ref):
        assert g.dtype == torch.float32
        assert _rel(g, r) <= 1e-5, name


def test_cpu_linear_in_T():
    # O(T): the same per-token work at every length (a few thousand tokens vs 4x more)
    import time

    def cost(T):
        k, v, w, u = _inputs(1, T, 32, seed=10)
        bi_wkv(k, v, w, u, impl="cpu")
        t0 = time.process_time()
        for _ in range(3):
            bi_wkv(k, v, w, u, impl="cpu")
        return time.process_time() - t0

    assert cost(4 * 16384) < 12 * max(cost(16384), 1e-3)


def test_custom_ops_opcheck_fake_kernels_and_autograd():
    k, v, w, u = _inputs(2, 13, 6, seed=11)
    args = (k.requires_grad_(), v.requires_grad_(), w.requires_grad_(), u.requires_grad_())
    torch.library.opcheck(torch.ops.rwkvfusion.bi_wkv_fwd.default, args)
    y, D = torch.ops.rwkvfusion.bi_wkv_fwd(*[a.detach() for a in args])
    gy = torch.randn(y.shape)
    torch.library.opcheck(torch.ops.rwkvfusion.bi_wkv_bwd.default, (gy, k.detach(), v.detach(), w.detach(),
                                                                    u.detach(), y, D))
    with torch._subclasses.fake_tensor.FakeTensorMode():      # the fake kernel keeps a transposed layout
        kf = torch.empty(1, 4, 5, 8).transpose(1, 2)
        yf, _ = torch.ops.rwkvfusion.bi_wkv_fwd(kf, kf, torch.empty(8), torch.empty(8))
        assert yf.shape == kf.shape and yf.stride() == kf.stride()


def test_compiles_without_graph_breaks():
    k, v, w, u = _inputs(1, 24, 8, seed=12)

    def f(k, v, w, u):
        return bi_wkv(k, v, w, u, validate=False).sin().sum()

    torch._dynamo.reset()
    cf = torch.compile(f, backend="aot_eager", fullgraph=True)
    a = [x.clone().requires_grad_() for x in (k, v, w, u)]
    b = [x.clone().requires_grad_() for x in (k, v, w, u)]
    out, ref = cf(*a), f(*b)
    assert torch.allclose(out, ref)
    out.backward()
    ref.backward()
    for x, y in zip(a, b):
        assert torch.allclose(x.grad, y.grad, rtol=1e-5, atol=1e-6)


def test_flop_counter_sees_the_op_by_its_formula():
    from torch.utils.flop_counter import FlopCounterMode

    from rwkvfusion_kernels.ops.bi_wkv import WKV_FLOPS_PER_ELEMENT

    k, v, w, u = _inputs(2, 10, 4, seed=13)
    with FlopCounterMode(display=False) as fc:
        bi_wkv(k, v, w, u, impl="cpu")
    assert fc.get_total_flops() == WKV_FLOPS_PER_ELEMENT * k.numel()


def test_validate_flag_skips_value_checks():
    k, v, w, u = _inputs(1, 8, 3)
    bad = torch.tensor([0.0, float("nan"), 1.0])
    with pytest.raises(ValueError, match="non-finite"):
        bi_wkv(k, v, bad, u, impl="cpu")
    bi_wkv(k, v, bad, u, impl="cpu", validate=False)           # no synchronisation, no check


def test_build_falls_back_when_the_extra_native_flags_are_rejected(tmp_path, monkeypatch):
    from rwkvfusion_kernels.ops import cbuild

    monkeypatch.setenv("RWKVFUSION_KERNEL_CACHE", str(tmp_path / "cache"))
    src = tmp_path / "one.c"
    src.write_text("int one(void) { return 1; }\n")
    lib = cbuild.build("one", src, native_flags=("-fno-such-compiler-flag-xyz",))
    assert lib is not None and lib.one() == 1
    built = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(built) == 1                         # the rejected flag set left nothing behind
