"""Elementwise regions (fusion.model.pointwise): their formulas, regional compilation against eager (values and
gradients), and the absent-mask shortcut of the MFM against an explicit all-zero mask."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from fusion import build_model
from fusion.model import pointwise as pw
from fusion.model.mfm import MultiModalFusion
from tests.speed_fixture import assert_same_gradients, case_inputs, seeded_model, without_drop_path


def test_eager_regions_are_their_formulas():
    g = torch.Generator().manual_seed(0)
    h, t, y, r = (torch.randn(2, 3, 5, 4, generator=g, dtype=torch.float64) for _ in range(4))
    m = torch.randn(2, 3, 5, 12, generator=g, dtype=torch.float64)
    scale, shift, gate = m[..., :4], m[..., 4:8], m[..., 8:]
    assert torch.equal(pw.modulate(h, scale, shift), (1 + scale) * h + shift)
    assert torch.equal(pw.gated_residual(t, gate, y), t + gate * y)
    assert torch.allclose(pw.receptance_gate(r, y), y / (1 + torch.exp(-r)))
    assert torch.allclose(pw.merge_gate(t, y, r, 0.5, True), (t + y) / 2 * r / (1 + torch.exp(-r)))
    assert torch.allclose(pw.merge_gate(t, y, r, 0.25, False), (t + y) / 4 / (1 + torch.exp(-r)))
    f = torch.randn(2, 4, 3, 5, generator=g, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    mod = torch.randn(2, 4, 3, 5, generator=g, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    cg = torch.rand(2, 4, 1, 1, generator=g, dtype=torch.float64)
    assert torch.allclose(pw.gate_sum(f, mod, cg), f * cg + mod * cg)
    k = torch.randn(50, dtype=torch.float64, generator=g).requires_grad_()
    out = pw.squared_relu(k)
    assert torch.equal(out, torch.relu(k) ** 2)
    assert torch.autograd.gradcheck(pw.squared_relu, (k,))


def test_compile_model_modes_and_size_dispatch():
    with pytest.raises(ValueError, match="compile mode"):
        pw.compile_model(torch.nn.Linear(2, 2), "everything")
    calls = []
    run = pw._by_size(lambda x: calls.append("eager") or x, lambda x: calls.append("fused") or x)
    run(torch.zeros(4))
    run(torch.zeros(pw.MIN_COMPILED_NUMEL))
    assert calls == ["eager", "fused"]
    model = pw.compile_regions(build_model("vif"))
    holders = [m for m in model.modules() if hasattr(m, "pw")]
    assert holders and all(m.pw is pw.compiled() for m in holders)
    assert all(m.pw is pw.EAGER for m in build_model("vif").modules() if hasattr(m, "pw"))


def test_regional_compilation_matches_eager_values_and_gradients(monkeypatch):
    monkeypatch.setattr(pw, "MIN_COMPILED_NUMEL", 0)          # small test inputs: every region compiled
    eager = without_drop_path(seeded_model("vif").train())
    comp = pw.compile_regions(copy.deepcopy(eager))
    kw = case_inputs("vif", True)
    y_e, y_c = eager(**kw), comp(**kw)
    assert float((y_e - y_c).abs().max()) <= 1e-5
    y_e.square().mean().backward()
    y_c.square().mean().backward()
    assert_same_gradients(comp, eager)
    with torch.no_grad():                                     # inference: the same network in both
        assert float((eager.eval()(**kw) - comp.eval()(**kw)).abs().max()) <= 1e-5


@pytest.mark.parametrize("grad", [False, True])
def test_absent_mask_is_the_all_zero_mask(grad):
    model = without_drop_path(seeded_model("vif")).train(grad)
    kw = case_inputs("vif", False)
    zeros = torch.zeros(kw["a"].shape[0], model.cfg.guidance.mask_in_channels, *kw["a"].shape[-2:])
    with torch.set_grad_enabled(grad):
        y_none = model(**{**kw, "mask": None})
        y_zero = model(**{**kw, "mask": zeros})
    assert float((y_none - y_zero).abs().max()) <= 1e-5


def test_zero_mask_response_is_the_mask_branch_of_zeros():
    torch.manual_seed(0)
    mfm = MultiModalFusion(8, 8, mask_channels=1)
    with torch.no_grad():
        mfm.mask_convs[2].bias.normal_()
        mfm.mask_convs[2].weight.normal_()
        m = mfm.mask_convs(torch.zeros(1, 1, 5, 6))
    expected = F.silu(mfm.mask_convs[2].bias).detach()
    assert torch.allclose(m, expected.view(1, -1, 1, 1).expand_as(m), atol=1e-7)
    assert torch.allclose(mfm.zero_mask_response().detach(), expected)
