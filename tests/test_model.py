"""RWKVFusion network: registry, shapes/range/padding, gradients, guidance reaching the output, size, FLOPs."""
from __future__ import annotations

import io

import pytest
import torch

from fusion import build_model
from fusion.config import TASKS, TaskConfig, get_config
from fusion.model import count_flops, count_parameters
from fusion.model.layers import drop_path_schedule
from fusion.model.spatial_mix import SpatialMix, init_decay_bonus


def _inputs(cfg: TaskConfig, B: int, H: int, W: int, *, L: int = 6, seed: int = 0, text: bool = True,
            mask: bool = True) -> dict:
    g = torch.Generator().manual_seed(seed)
    kw: dict = dict(a=torch.rand(B, cfg.model.a_channels, H, W, generator=g),
                    b=torch.rand(B, cfg.model.b_channels, H, W, generator=g))
    if text and cfg.guidance.use_text:
        kw["text"] = torch.randn(B, L, cfg.guidance.text_dim, generator=g)
        tm = torch.ones(B, L, dtype=torch.bool)
        tm[-1, L // 2:] = False  # the last sample's caption is shorter (padded)
        kw["text_mask"] = tm
    if mask and cfg.guidance.mask_kind != "none":
        if cfg.guidance.mask_kind == "onehot":
            kw["mask"] = torch.randint(0, cfg.guidance.mask_classes, (B, H, W), generator=g)
        else:
            kw["mask"] = (torch.rand(B, cfg.guidance.mask_channels, H, W, generator=g) > 0.5).float()
    return kw


def _set_lambda(model: torch.nn.Module, value: float) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".lam"):
                p.fill_(value)


def _trained_like(model: torch.nn.Module, seed: int = 0) -> None:
    """Re-draw every Linear weight with std 1/sqrt(fan_in): the default init (std 0.02) makes
    the text tokens tiny next to their position embedding, so at init the text's effect is ~1e-6."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.Linear):
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=g) / mod.weight.shape[1] ** 0.5)


def _small(task: str, **kw) -> torch.nn.Module:
    """Paper config; hmif with 16 bands to keep the test fast (band count only changes the 1x1/3x3 I/O convs)."""
    if task == "hmif":
        kw.setdefault("bands", 16)
    return build_model(task, **kw)


# ----------------------------------------------------------------------------- registry
def test_registry_holds_table1():
    assert TASKS == ("vif", "mif", "mef", "mff", "pan", "hmif")
    drop = {"vif": 0.2, "mif": 0.3, "mef": 0.1, "mff": 0.1, "hmif": 0.2, "pan": 0.2}
    batch = {"vif": 10, "mif": 12, "mef": 12, "mff": 12, "hmif": 64, "pan": 64}
    epochs = {"vif": 200, "mif": 50, "mef": 50, "mff": 50, "hmif": 800, "pan": 800}
    for t in TASKS:
        c = get_config(t)
        assert c.model.base_channels == 32 and c.model.mid_layers == 1
        assert c.model.drop_path == drop[t] and c.optim.batch_size == batch[t] and c.optim.epochs == epochs[t]
        assert (c.optim.lr, c.optim.betas, c.optim.weight_decay, c.optim.min_lr) == (1e-3, (0.95, 0.99), 1e-6, 1e-5)
        assert c.guidance.text_dim == (1024 if t in ("vif", "mif") else 512)
        assert set(c.model.ffn_ratios) == {2}
    assert get_config("mef").model.enc_layers == (2, 1) and get_config("mef").model.dec_layers == (2, 1)
    assert get_config("pan").model.chan_upscales == (2, 1, 1) and get_config("hmif").model.enc_layers == (2, 1, 1)
    assert get_config("pan").loss.pan_lambda == 0.1 and get_config("vif").loss.eta == (10.0, 2.0, 20.0)
    assert get_config("mef").guidance.mask_classes == 20 and get_config("mif").guidance.mask_channels == 2
    assert get_config("pan", bands=4).model.a_channels == 4 == get_config("pan", bands=4).model.out_channels


def test_config_serialisation_and_errors():
    c = get_config("mef", text_drop=0.25, scan_mode="K4")
    assert TaskConfig.from_dict(c.to_dict()) == c
    assert TaskConfig.from_yaml(c.to_yaml()) == c
    with pytest.raises(ValueError, match="unknown TaskConfig field"):
        get_config("vif", not_a_field=1)
    with pytest.raises(ValueError, match="unknown task"):
        get_config("sr")
    with pytest.raises(ValueError, match="enc_layers"):
        get_config("vif", enc_layers=(1, 1, 1))
    with pytest.raises(ValueError, match="unknown keys"):
        TaskConfig.from_dict({**c.to_dict(), "bogus": 1})


def test_init_schedules():
    w, u = init_decay_bonus(1, 0, 1)  # C = 1 and L = 1 guards
    assert torch.isfinite(w).all() and torch.isfinite(u).all()
    w, u = init_decay_bonus(5, 2, 3)  # last layer: exponent 1.4
    assert torch.allclose(w, -0.3 + torch.linspace(0, 1, 5) ** 1.4, atol=1e-6)
    n = torch.arange(5.0)
    assert torch.allclose(u, (1 - n / 4) + 0.1 * (((n + 1) % 3) - 1), atol=1e-6)
    assert drop_path_schedule(5, 0.2) == pytest.approx([0.0, 0.1, 0.2, 0.1, 0.0])
    assert drop_path_schedule(4, 0.2) == pytest.approx([0.0, 0.2, 0.2, 0.0])
    assert drop_path_schedule(1, 0.3) == [0.0]


# ----------------------------------------------------------------------------- shapes, range, padding
@pytest.mark.parametrize("task", TASKS)
def test_forward_shape_and_range(task):
    torch.manual_seed(0)
    m = _small(task)
    cfg = m.cfg
    for (H, W) in ((64, 80), (37, 53)):
        kw = _inputs(cfg, 2, H, W)
        m.train()
        y_train = m(**kw)
        m.eval()
        with torch.no_grad():
            y = m(**kw)
        assert y.shape == (2, cfg.model.out_channels, H, W) == y_train.shape
        assert torch.isfinite(y).all() and y.min() >= 0 and y.max() <= 1
        assert y_train.min() >= 0 and y_train.max() <= 1
    # runs without text and without mask ("Proposed*")
    with torch.no_grad():
        y = m(**_inputs(cfg, 1, 21, 30, text=False, mask=False))
    assert y.shape == (1, cfg.model.out_channels, 21, 30)


def test_padding_is_cropped_back_exactly():
    m = build_model("vif").eval()
    kw = _inputs(m.cfg, 1, 37, 53)
    pad = lambda x: torch.nn.functional.pad(x, (0, 3, 0, 3), mode="reflect")  # noqa: E731  37x53 -> 40x56
    kw_p = dict(kw, a=pad(kw["a"]), b=pad(kw["b"]), mask=torch.nn.functional.pad(kw["mask"], (0, 3, 0, 3), mode="replicate"))
    with torch.no_grad():
        y, y_p = m(**kw), m(**kw_p)
    torch.testing.assert_close(y, y_p[..., :37, :53], rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("task", ["vif", "mif", "mef", "hmif"])
def test_backward_reaches_every_parameter(task):
    torch.manual_seed(0)
    m = _small(task, drop_path=0.0)
    _set_lambda(m, 0.5)
    m.train()
    y = m(**_inputs(m.cfg, 2, 32, 40))
    (y * torch.randn_like(y)).sum().backward()
    bad = [n for n, p in m.named_parameters() if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all())]
    assert not bad, f"missing or non-finite gradients: {bad}"
    zero = [n for n, p in m.named_parameters() if p.requires_grad and p.grad.abs().max() == 0]
    assert not zero, f"parameters with an all-zero gradient (unused?): {zero}"


def test_source_weight_head_starts_at_the_average_and_learns_both_channels():
    torch.manual_seed(0)
    m = build_model("vif", fusion_base="weights", drop_path=0.0)
    assert m.head.out_channels == 2
    kw = _inputs(m.cfg, 2, 32, 40)
    m.eval()
    with torch.no_grad():
        y = m(**kw)
    torch.testing.assert_close(y, 0.5 * (kw["a"] + kw["b"]), rtol=0, atol=1e-6)  # zero head: w = 1/2, residual 0
    with torch.no_grad():  # a large weight logit selects A, a negative one B
        m.head.bias.copy_(torch.tensor([30.0, 0.0]))
        torch.testing.assert_close(m(**kw), kw["a"], rtol=0, atol=1e-6)
        m.head.bias.copy_(torch.tensor([-30.0, 0.0]))
        torch.testing.assert_close(m(**kw), kw["b"], rtol=0, atol=1e-6)
        m.head.bias.zero_()
    m.train()
    m(**kw).sum().backward()
    assert m.head.weight.grad[0].abs().sum() > 0 and m.head.weight.grad[1].abs().sum() > 0
    with pytest.raises(ValueError, match="fusion_base='weights'"):
        get_config("pan", fusion_base="weights")


def test_select_head_is_a_convex_mix_of_the_sources():
    torch.manual_seed(0)
    m = build_model("vif", fusion_base="select", drop_path=0.0)
    assert m.head.out_channels == 1                      # the weight logit only, no residual channel
    kw = _inputs(m.cfg, 2, 24, 36)
    m.eval()
    with torch.no_grad():
        torch.testing.assert_close(m(**kw), 0.5 * (kw["a"] + kw["b"]), rtol=0, atol=1e-6)
        torch.nn.init.normal_(m.head.weight, std=1.0)    # any logits: every pixel between its two sources
        y = m(**kw)
    lo, hi = torch.minimum(kw["a"], kw["b"]), torch.maximum(kw["a"], kw["b"])
    assert bool(((y >= lo - 1e-6) & (y <= hi + 1e-6)).all())
    with pytest.raises(ValueError, match="fusion_base='select'"):
        get_config("pan", fusion_base="select")


def test_backward_with_drop_path_and_default_lambda_is_finite():
    torch.manual_seed(1)
    m = build_model("mef", drop_path=0.5)
    y = m(**_inputs(m.cfg, 3, 24, 24))
    y.mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)
    assert all(p.grad is not None for p in m.parameters())


# ----------------------------------------------------------------------------- guidance reaches the output
def test_text_and_mask_reach_the_output():
    torch.manual_seed(0)
    m = build_model("vif").eval()
    _set_lambda(m, 1.0)
    _trained_like(m)
    kw = _inputs(m.cfg, 2, 40, 48)
    with torch.no_grad():
        y = m(**kw)
        y_text = m(**dict(kw, text=kw["text"] + torch.randn_like(kw["text"])))
        y_mask = m(**dict(kw, mask=1.0 - kw["mask"]))
        # padded tokens (text_mask False) do not take part: changing their content changes nothing
        t2 = kw["text"].clone()
        t2[-1, kw["text_mask"][-1].logical_not()] = 123.0
        y_pad = m(**dict(kw, text=t2))
    assert (y - y_text).abs().max() > 1e-4
    assert (y - y_mask).abs().max() > 1e-4
    torch.testing.assert_close(y, y_pad, rtol=0, atol=1e-6)


def test_lambda_zero_hides_text():
    m = build_model("mff").eval()  # lambda is initialised to 0: text cannot change the output yet
    kw = _inputs(m.cfg, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(m(**kw), m(**dict(kw, text=torch.randn_like(kw["text"]))), rtol=0, atol=0)


def test_dropped_or_absent_text_does_not_depend_on_text():
    torch.manual_seed(0)
    m = build_model("vif", text_drop=1.0, drop_path=0.0)
    _set_lambda(m, 1.0)
    _trained_like(m)
    kw = _inputs(m.cfg, 2, 32, 40)
    m.train()  # drop probability 1: the text is always dropped in training
    with torch.no_grad():
        y1 = m(**kw)
        y2 = m(**dict(kw, text=torch.randn(2, 11, m.cfg.guidance.text_dim), text_mask=None))
    torch.testing.assert_close(y1, y2, rtol=0, atol=0)
    m.eval()  # absent text = the same null text
    with torch.no_grad():
        y_none = m(**dict(kw, text=None, text_mask=None))
        y_text = m(**kw)
    # train mode runs PyTorch's operations, eval the fused inference kernels: equal up to float32 rounding
    torch.testing.assert_close(y1, y_none, rtol=0, atol=1e-5)
    assert (y_text - y_none).abs().max() > 1e-4  # in eval the text is used


# ----------------------------------------------------------------------------- determinism, state dict
def test_eval_determinism_and_state_dict_round_trip():
    torch.manual_seed(0)
    m = build_model("mef").eval()
    _set_lambda(m, 0.3)
    kw = _inputs(m.cfg, 2, 33, 41)
    with torch.no_grad():
        y1, y2 = m(**kw), m(**kw)
    torch.testing.assert_close(y1, y2, rtol=0, atol=0)
    buf = io.BytesIO()
    torch.save({"cfg": m.cfg.to_dict(), "model": m.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    torch.manual_seed(123)
    m2 = build_model(TaskConfig.from_dict(ckpt["cfg"])).eval()
    m2.load_state_dict(ckpt["model"], strict=True)
    with torch.no_grad():
        torch.testing.assert_close(m2(**kw), y1, rtol=0, atol=0)


# ----------------------------------------------------------------------------- size and cost
def test_vif_size_and_flops(capsys):
    m = build_model("vif")
    n = count_parameters(m)
    total, parts = count_flops(m, 256, 256, breakdown=True)
    with capsys.disabled():
        print(f"\nVIF parameters: {n} ({n / 1e6:.3f} M; paper 0.352 M)")
        print(f"VIF FLOPs at 256x256: {total / 1e9:.2f} G (flop counter {parts['counted'] / 1e9:.2f} G "
              f"+ analytic Bi-WKV {parts['wkv'] / 1e9:.3f} G; = {total / 2e9:.2f} G multiply-adds; paper 15.08 G)")
    assert 300_000 <= n <= 400_000
    assert parts["wkv"] > 0 and 5e9 < total < 5e10
    # the count is linear in the number of pixels (no quadratic term in the RWKV model)
    t128 = count_flops(m, 128, 128)
    assert total / t128 == pytest.approx(4.0, rel=0.02)


def test_every_task_reports_size():
    for t in TASKS:
        assert count_parameters(build_model(t)) > 100_000


# ----------------------------------------------------------------------------- variants
def test_plain_ablation_model():
    for task in ("vif", "hmif"):
        m = _small(task, arch="plain").eval()
        kw = _inputs(m.cfg, 1, 24, 31)
        with torch.no_grad():
            y = m(**kw)
        assert y.shape == (1, m.cfg.model.out_channels, 24, 31) and 0 <= y.min() and y.max() <= 1
    assert len(build_model("vif", arch="plain").blocks) == 4 and len(build_model("hmif", arch="plain", bands=8).blocks) == 8
    m = build_model("vif", arch="plain", drop_path=0.0)
    _set_lambda(m, 0.5)
    y = m(**_inputs(m.cfg, 1, 16, 16))
    y.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())


@pytest.mark.parametrize("overrides", [dict(spatial_op="attention"), dict(scan_mode="K4"), dict(scan_mode="K0"),
                                       dict(spatial_gate="receptance"), dict(cond_source="ab", use_text=False)])
def test_variants_run(overrides):
    m = build_model("vif", **overrides).eval()
    kw = _inputs(m.cfg, 1, 20, 28)
    with torch.no_grad():
        y = m(**kw)
    assert y.shape == (1, 1, 20, 28) and torch.isfinite(y).all()


def test_attention_variant_matches_structure():
    rwkv, attn = build_model("vif"), build_model("vif", spatial_op="attention")
    extra = sum(p.numel() for n, p in attn.named_parameters() if ".query." in n)
    wkv = sum(p.numel() for n, p in rwkv.named_parameters() if n.endswith((".decay", ".bonus")))
    assert count_parameters(attn) - extra == count_parameters(rwkv) - wkv
    # attention's cost grows quadratically with the pixels, the RWKV model's linearly
    f_small, f_big = count_flops(attn, 32, 32), count_flops(attn, 64, 64)
    assert f_big / f_small > 4.2


def test_spatial_mix_text_order_and_shapes():
    torch.manual_seed(0)
    sm = SpatialMix(8, 0, 1)
    x, t = torch.randn(2, 5, 6, 8), torch.randn(2, 3, 8)
    y_img, y_txt = sm(x, text=t)
    y_img2, y_txt2 = sm(x, text=t, text_first=True)
    assert y_img.shape == x.shape and y_txt.shape == t.shape
    assert (y_img - y_img2).abs().max() > 1e-6  # the order changes the relative distances in Eq. 2
    y_only, none = sm(x)
    assert none is None and y_only.shape == x.shape


# ----------------------------------------------------------------------------- bad input
def test_bad_inputs_raise_clear_errors():
    m = build_model("mef").eval()
    a = torch.rand(1, 1, 16, 16)
    with pytest.raises(ValueError, match="channels"):
        m(torch.rand(1, 3, 16, 16), a)
    with pytest.raises(ValueError, match="share batch and size"):
        m(a, torch.rand(1, 1, 16, 17))
    with pytest.raises(ValueError, match="text"):
        m(a, a, text=torch.randn(1, 4, 1024))
    with pytest.raises(ValueError, match="class ids"):
        m(a, a, mask=torch.full((1, 16, 16), 25))
    with pytest.raises(ValueError, match="text_mask"):
        m(a, a, text=torch.randn(1, 4, 512), text_mask=torch.ones(1, 4))
    with pytest.raises(ValueError, match="bands"):
        build_model("pan")(torch.rand(1, 4, 16, 16), a)
    with pytest.raises(ValueError, match="no mask branch"):
        build_model("pan")(torch.rand(1, 8, 16, 16), a, mask=a)


@pytest.mark.parametrize("text_first", [False, True])
@pytest.mark.parametrize("mode,reverse", [("K2", False), ("K2", True), ("K4", False)])
def test_spatial_mix_matches_per_scan_reference(mode, reverse, text_first):
    """The module projects once per pixel and merges before the output projection; the reference projects
    every scanned copy, runs the float64 naive Bi-WKV over the explicit [image; text] sequences, and merges."""
    from rwkvfusion_kernels import SCAN_K, bi_wkv, cross_merge, cross_scan

    torch.manual_seed(0)
    sm = SpatialMix(6, 1, 3, scan_mode=mode).double()
    with torch.no_grad():
        sm.decay.uniform_(-2, 2)
        sm.bonus.uniform_(-1, 1)
    B, H, W, L, K = 2, 3, 5, 4, SCAN_K[mode]
    x, t = torch.randn(B, H, W, 6, dtype=torch.float64), torch.randn(B, L, 6, dtype=torch.float64)
    with torch.no_grad():
        y_img, y_txt = sm(x, reverse=reverse, text=t, text_first=text_first)
        seq_img = cross_scan(x.permute(0, 3, 1, 2), mode=mode, reverse=reverse)         # [B*K, T, C]
        seq_txt = t.repeat_interleave(K, dim=0)
        seq = torch.cat([seq_txt, seq_img], 1) if text_first else torch.cat([seq_img, seq_txt], 1)
        wkv = bi_wkv(sm.key(seq), sm.value(seq), sm.decay, sm.bonus, impl="naive")
        out = sm.output(sm.ln_out(wkv) * torch.nn.functional.silu(sm.gate(seq)))
        o_img, o_txt = (out[:, L:], out[:, :L]) if text_first else (out[:, : H * W], out[:, H * W:])
        ref_img = (cross_merge(o_img.contiguous(), hw=(H, W), mode=mode, reverse=reverse) / K).permute(0, 2, 3, 1)
        ref_txt = o_txt.reshape(B, K, L, 6).mean(1)
    torch.testing.assert_close(y_img, ref_img, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(y_txt, ref_txt, rtol=1e-9, atol=1e-10)


def test_bf16_autocast_forward_backward():
    """Mixed precision (bf16 autocast, as the trainer uses on CUDA) runs and gives finite gradients."""
    torch.manual_seed(0)
    m = build_model("mef", drop_path=0.0)
    kw = _inputs(m.cfg, 2, 24, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = m(**kw)
    assert y.shape == (2, 1, 24, 32) and torch.isfinite(y.float()).all()
    y.float().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())
