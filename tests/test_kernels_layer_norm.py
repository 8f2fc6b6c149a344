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


def _modulation_reference(x, w, b, proj):
    """float64 h = LN(x), m = SiLU(h) proj^T, z = (1 + m_scale) h + m_shift, gate = m_gate."""
    C = x.shape[-1]
    h = F.layer_norm(x.double(), (C,), w.double(), b.double(), 1e-5)
    m = F.linear(F.silu(h), proj.double())
    return (1 + m[:, :C]) * h + m[:, C:2 * C], m[:, 2 * C:]


@needs_kernel
@pytest.mark.parametrize("C", [16, 32, 48, 64])
@pytest.mark.parametrize("rows", [2049, 4096])
def test_modulated_layer_norm_matches_float64(C, rows):
    g = torch.Generator().manual_seed(C + rows)
    x = torch.randn(rows, C, generator=g) * 3 + 1
    w, b = torch.randn(C, generator=g), torch.randn(C, generator=g)
    proj = torch.randn(3 * C, C, generator=g) * 0.3
    z_ref, g_ref = _modulation_reference(x, w, b, proj)
    with torch.inference_mode():
        assert cpu.modulated_usable(x, w, b, proj)
        z, gate = torch.full_like(x, float("nan")), torch.full_like(x, float("nan"))
        cpu.modulated_layer_norm(x, w, b, 1e-5, proj, z, gate)
        z_only, g_only = torch.full_like(x, float("nan")), torch.full_like(x, float("nan"))
        cpu.modulated_layer_norm(x, w, b, 1e-5, proj, z_only, None)
        cpu.modulated_layer_norm(x, w, b, 1e-5, proj, None, g_only)
    assert float((z.double() - z_ref).abs().max()) <= 2e-6 * float(z_ref.abs().max())
    assert float((gate.double() - g_ref).abs().max()) <= 2e-6 * float(g_ref.abs().max())
    assert torch.equal(z_only, z) and torch.equal(g_only, gate)


def test_modulated_layer_norm_applies_only_to_float32_inference():
    x, w, b, proj = torch.randn(4096, 32), torch.ones(32), torch.zeros(32), torch.randn(96, 32)
    with torch.inference_mode():
        assert not cpu.modulated_usable(x, w, b, proj[:64])                 # not (scale, shift, gate) rows
        assert not cpu.modulated_usable(x.double(), w, b, proj)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not cpu.modulated_usable(x, w, b, proj)
    assert not cpu.modulated_usable(x, w, b, proj.requires_grad_())          # autograd: PyTorch's operations


@needs_kernel
def test_brwkv_inference_path_equals_autograd_path_with_and_without_the_kept_gate():
    from fusion.model.block import BRWKVLayer

    torch.manual_seed(0)
    layer = BRWKVLayer(32, 2, layer_id=1, n_layers=3).eval()
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.1 * torch.randn_like(p))
    t = torch.randn(1, 64, 80, 32)
    with torch.enable_grad():                  # the autograd path of forward (PyTorch operations throughout)
        ref = layer(t.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)).detach()
    with torch.no_grad():
        kept = layer._forward_no_grad(t.clone())                         # gate kept, one chunk
        recomputed = layer._forward_no_grad(t.clone(), chunk=1000, keep_gate=0)   # gate recomputed, 6 chunks
    ref = ref.permute(0, 2, 3, 1)
    scale = float(ref.abs().max())
    assert float((kept - ref).abs().max()) <= 1e-5 * scale
    assert float((recomputed - kept).abs().max()) <= 1e-6 * scale


@needs_kernel
@pytest.mark.parametrize("C", [16, 32, 64])
@pytest.mark.parametrize("silu", [True, False])
def test_merge_gate_matches_float64(C, silu):
    g = torch.Generator().manual_seed(C)
    y, yc, gl = (torch.randn(2500, C, generator=g) * 3 + 1 for _ in range(3))
    w, b = torch.randn(C, generator=g), torch.randn(C, generator=g)
    d = [t.double() for t in (y, yc, gl)]
    ln = [F.layer_norm(t, (C,), w.double(), b.double(), 1e-5) for t in d[:2]]
    act = F.silu(d[2]) if silu else torch.sigmoid(d[2])
    ref = (ln[0] + ln[1]) * 0.5 * act
    with torch.inference_mode():
        assert cpu.merge_usable(y, yc, gl, w, b)
        out = cpu.merge_gate(y, yc, gl, w, b, 1e-5, 0.5, silu)
    assert out.data_ptr() == y.data_ptr()                                   # written into y
    assert float((out.double() - ref).abs().max()) <= 2e-6 * float(ref.abs().max())


@needs_kernel
@pytest.mark.parametrize("mode", ["K2", "K4"])
@pytest.mark.parametrize("gate", ["silu", "receptance"])
def test_spatial_mix_fused_merge_equals_scan_merge(mode, gate):
    import copy

    from fusion.model.spatial_mix import SpatialMix

    torch.manual_seed(0)
    sm = SpatialMix(32, 1, 3, scan_mode=mode, gate=gate).eval()
    with torch.no_grad():
        sm.decay.uniform_(-3, 3)
        sm.ln_out.weight.normal_()
        sm.ln_out.bias.normal_()
    ref = copy.deepcopy(sm)
    ref.fast = False                                    # literal cross_scan / Bi-WKV / cross_merge
    x = torch.randn(1, 48, 70, 32)
    with torch.no_grad():
        y, _ = sm(x, reverse=True)
        y_ref, _ = ref(x, reverse=True)
    assert float((y - y_ref).abs().max()) <= 1e-5 * float(y_ref.abs().max())


@needs_kernel
@pytest.mark.parametrize("hidden, C", [(64, 32), (32, 16), (128, 64)])
def test_channel_act_matches_float64(hidden, C):
    g = torch.Generator().manual_seed(hidden)
    kr, gate = torch.randn(2100, hidden + C, generator=g) * 3, torch.randn(2100, C, generator=g)
    with torch.inference_mode():
        assert cpu.channel_act_usable(kr, gate)
        h, rg = cpu.channel_act(kr, gate)
    d = kr.double()
    assert torch.equal(h, torch.relu(kr[:, :hidden]) ** 2)
    assert float((rg.double() - torch.sigmoid(d[:, hidden:]) * gate.double()).abs().max()) <= 1e-6


@needs_kernel
@pytest.mark.parametrize("C", [32, 80])
def test_gelu_tanh_matches_float64_in_place(C):
    g = torch.Generator().manual_seed(C)
    x = torch.randn(2100, C, generator=g) * 4
    x[0, :4] = torch.tensor([float("nan"), 100.0, -100.0, 0.0])
    ref = F.gelu(x.double(), approximate="tanh")
    with torch.inference_mode():
        assert cpu.gelu_usable(x) and not cpu.gelu_usable(x[:100]) and not cpu.gelu_usable(x.double())
        y = x.clone()
        assert cpu.gelu_tanh_(y) is y
    assert bool(y[0, 0].isnan()) and float(y[0, 1]) == 100.0
    assert float((y[1:].double() - ref[1:]).abs().max()) <= 1e-6
    assert float((y[0, 2:].double() - ref[0, 2:]).abs().max()) <= 1e-6 and abs(float(y[0, 2])) <= 1e-30
    assert not cpu.gelu_usable(x.requires_grad_())


@needs_kernel
@pytest.mark.parametrize("slope", [0.2, 0.01])
def test_conv_leaky_relu_equals_the_unfused_layers(slope):
    from fusion.model.layers import channels_last, conv_leaky_relu

    g = torch.Generator().manual_seed(1)
    x = channels_last(torch.randn(2, 6, 13, 17, generator=g))
    for conv in (torch.nn.Conv2d(6, 5, 3, padding=1), torch.nn.Conv2d(6, 4, 1, bias=False),
                 torch.nn.Conv2d(6, 6, 3, padding=1, groups=6)):
        ref = F.leaky_relu(conv(x), slope)
        with torch.inference_mode():
            y = conv_leaky_relu(conv, x, slope)
        assert y.shape == ref.shape and float((y - ref).abs().max()) <= 1e-5
        assert torch.equal(conv_leaky_relu(conv, x, slope), ref)       # with autograd: the module and F


@needs_kernel
def test_channel_mix_gated_rows_equal_the_module():
    from fusion.model.channel_mix import ChannelMix

    torch.manual_seed(0)
    cm = ChannelMix(32, 2).eval()
    x, gate = torch.randn(3000, 32), torch.randn(3000, 32)
    with torch.no_grad():
        v, rg = cm.gated_rows(x, gate)                        # the C kernel (3000 rows)
        v_small, rg_small = cm.gated_rows(x[:100], gate[:100])  # PyTorch operations (too few rows)
    with torch.enable_grad():
        ref = (gate * cm(x)).detach()
    assert float((rg * v - ref).abs().max()) <= 1e-6 * float(ref.abs().max())
    assert float((rg_small * v_small - ref[:100]).abs().max()) <= 1e-6 * float(ref.abs().max())


@needs_kernel
@pytest.mark.parametrize("C", [16, 32, 64])
@pytest.mark.parametrize("silu, which", [(False, "h"), (True, "h"), (True, "s"), (True, "both")])
def test_training_layer_norm_matches_float64_autograd(C, silu, which):
    from rwkvfusion_kernels.ops.layer_norm import autograd as ln_train

    g = torch.Generator().manual_seed(C)
    x = (torch.randn(2, 1250, C, generator=g) * 3 + 1).requires_grad_()   # 2500 rows: 3 blocks, one partial
    w = torch.randn(C, generator=g).requires_grad_()
    b = torch.randn(C, generator=g).requires_grad_()
    gh, gs = torch.randn(2, 1250, C, generator=g), torch.randn(2, 1250, C, generator=g)
    xd, wd, bd = (t.detach().double().requires_grad_() for t in (x, w, b))
    hd = F.layer_norm(xd, (C,), wd, bd, 1e-5)
    assert ln_train.usable(x, w, b)
    out = ln_train.layer_norm_train(x, w, b, 1e-5, silu=silu)
    h, s = out if silu else (out, None)
    assert float((h.double() - hd).abs().max()) <= 2e-6 * float(hd.abs().max())
    if silu:
        assert float((s.double() - F.silu(hd)).abs().max()) <= 2e-6 * float(hd.abs().max())
    if which == "h":
        loss, loss_d = (h * gh).sum(), (hd * gh.double()).sum()
    elif which == "s":
        loss, loss_d = (s * gs).sum(), (F.silu(hd) * gs.double()).sum()
    else:
        loss, loss_d = (h * gh).sum() + (s * gs).sum(), (hd * gh.double()).sum() + (F.silu(hd) * gs.double()).sum()
    grads = torch.autograd.grad(loss, (x, w, b))
    refs = torch.autograd.grad(loss_d, (xd, wd, bd))
    for name, got, ref in zip("xwb", grads, refs):
        assert float((got.double() - ref).abs().max()) <= 1e-5 * float(ref.abs().max()), name


def test_training_layer_norm_falls_back_where_it_does_not_apply():
    from rwkvfusion_kernels.ops.layer_norm import autograd as ln_train

    w, b = torch.ones(32), torch.zeros(32)
    assert not ln_train.usable(torch.randn(64, 32).double(), w, b)
    assert not ln_train.usable(torch.randn(32, 64).t(), w, b)              # not contiguous
    assert not ln_train.usable(torch.randn(64, 24), torch.ones(24), torch.zeros(24))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not ln_train.usable(torch.randn(64, 32), w, b)


@needs_kernel
def test_training_gradients_with_and_without_the_layer_norm_kernel(monkeypatch):
    from rwkvfusion_kernels.ops.layer_norm import autograd as ln_train
    from tests.speed_fixture import assert_same_gradients, case_inputs, seeded_model, without_drop_path

    fast = without_drop_path(seeded_model("vif").train())
    fast(**case_inputs("vif", True)).square().mean().backward()
    monkeypatch.setattr(ln_train, "usable", lambda *a: False)        # PyTorch's LayerNorm throughout
    ref = without_drop_path(seeded_model("vif").train())
    ref(**case_inputs("vif", True)).square().mean().backward()
    assert_same_gradients(fast, ref)
