"""The CPU fast path computes the same network: saved outputs of the original code, the literal scan/merge
reference path, gradients, the no-grad in-place path, tiled inference and compile-friendliness."""
from __future__ import annotations

import copy

import pytest
import torch

from fusion import build_model
from fusion.model.spatial_mix import SpatialMix
from rwkvfusion_kernels.ops.bi_wkv import cpu
from tests.speed_fixture import (
    CASES,
    FIXTURE,
    assert_same_gradients,
    case_inputs,
    seeded_model,
    tno_pair,
    without_drop_path,
)

needs_kernel = pytest.mark.skipif(not cpu.available(), reason="CPU Bi-WKV kernel not built (no C compiler)")


def _reference(model: torch.nn.Module) -> torch.nn.Module:
    """A copy running the literal cross_scan / Bi-WKV / cross_merge formulation in every SpatialMix."""
    ref = copy.deepcopy(model)
    for m in ref.modules():
        if isinstance(m, SpatialMix):
            m.fast = False
    return ref


@pytest.mark.parametrize("task", CASES)
@pytest.mark.parametrize("guided", [False, True])
def test_outputs_of_the_original_code_are_reproduced(task, guided):
    # tests/data/seeded_outputs.safetensors was written by the code before the fast path (tests/speed_fixture.py)
    from safetensors.torch import load_file

    expected = load_file(FIXTURE)[f"{task}-{'guided' if guided else 'plain'}"]
    model = seeded_model(task)
    with torch.no_grad():
        got = model(**case_inputs(task, guided))
    assert got.shape == expected.shape
    assert float((got - expected).abs().max()) <= 1e-4


@needs_kernel
@pytest.mark.parametrize("mode", ["K2", "K4", "K0"])
@pytest.mark.parametrize("reverse", [False, True])
def test_in_place_spatial_mix_equals_scan_merge(mode, reverse):
    torch.manual_seed(0)
    sm = SpatialMix(24, 1, 3, scan_mode=mode).eval()
    with torch.no_grad():
        sm.decay.uniform_(-3, 3)
    x = torch.randn(2, 7, 9, 24)
    ref = copy.deepcopy(sm)
    ref.fast = False
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            y, _ = sm(x, reverse=reverse)
            y_ref, _ = ref(x, reverse=reverse)
        assert float((y - y_ref).abs().max()) <= 1e-5


@needs_kernel
def test_training_gradients_match_the_reference_path():
    model = without_drop_path(seeded_model("vif").train())
    ref = _reference(model)
    kw = case_inputs("vif", True)
    model(**kw).square().mean().backward()
    ref(**kw).square().mean().backward()
    assert_same_gradients(model, ref)


def test_no_grad_in_place_path_equals_autograd_path():
    model = seeded_model("mef")
    kw = case_inputs("mef", True)
    with torch.no_grad():
        a = model(**kw)
    b = model(**kw).detach()
    assert float((a - b).abs().max()) <= 1e-5 * float(b.abs().max()) + 1e-6   # split 1x1 sums: rounding only


@needs_kernel
@pytest.mark.realdata
def test_real_pair_fast_path_matches_reference(shared_data):
    a, b = tno_pair(shared_data, 0, (180, 230))
    model = seeded_model("vif")
    ref = _reference(model)
    with torch.no_grad():
        y, y_ref = model(a, b), ref(a, b)
    assert float((y - y_ref).abs().max()) <= 1e-4


def test_tiled_weights_are_a_partition_of_unity():
    from fusion.train.inference import fuse_tiled

    a, b = torch.rand(1, 1, 300, 517), torch.rand(1, 1, 300, 517)
    out = fuse_tiled(lambda x, y, **kw: 0.25 * x + y, a, b, tile=128, overlap=32)
    assert torch.allclose(out, 0.25 * a + b, atol=1e-6)
    with pytest.raises(ValueError, match="overlap"):
        fuse_tiled(lambda x, y: x, a, b, tile=64, overlap=64)


@needs_kernel
@pytest.mark.realdata
@pytest.mark.slow
def test_tiled_inference_on_a_2048_pair_has_no_seams(shared_data):
    import torch.nn.functional as F

    from fusion.train.inference import run_model

    a, b = (F.interpolate(t, size=(2048, 2048), mode="bilinear", align_corners=False) for t in tno_pair(shared_data, 1))
    torch.manual_seed(0)
    model = build_model("vif", base_channels=8).eval()
    out = run_model(model, a, b, tile=512, overlap=64)
    assert out.shape == (1, 1, 2048, 2048) and torch.isfinite(out).all()
    # seams would show as jumps between neighbouring columns/rows at tile borders: compare the step across
    # every border with the typical step elsewhere
    from fusion.train.inference import _tile_starts

    starts = _tile_starts(2048, 512, 64)
    borders = sorted({s + 512 - 1 for s in starts[:-1]} | {s for s in starts[1:]})
    dx = (out[..., :, 1:] - out[..., :, :-1]).abs().mean(dim=(0, 1, 2))    # per column step
    dy = (out[..., 1:, :] - out[..., :-1, :]).abs().mean(dim=(0, 1, 3))
    for d in (dx, dy):
        typical = float(d.median())
        worst = max(float(d[max(0, c - 1):c + 1].max()) for c in borders)
        assert worst <= 3.0 * typical + 1e-4


@needs_kernel
def test_model_traces_without_graph_breaks():
    torch._dynamo.reset()
    model = build_model("vif").eval()
    a, b = torch.rand(1, 1, 16, 20), torch.rand(1, 1, 16, 20)
    with torch.no_grad():
        ex = torch._dynamo.explain(model)(a, b)
    assert ex.graph_break_count == 0, ex.break_reasons


@needs_kernel
def test_training_forward_traces_without_graph_breaks():
    # the kernel's build check is a compile-time constant (no trace through its lock), the LayerNorm kernel
    # and the in-place inference paths stay out of the traced training graph
    torch._dynamo.reset()
    model = build_model("vif").train()
    a, b = torch.rand(2, 1, 16, 20), torch.rand(2, 1, 16, 20)
    ex = torch._dynamo.explain(model)(a, b)
    assert ex.graph_break_count == 0, ex.break_reasons


@needs_kernel
@pytest.mark.realdata
def test_bundled_vif_model_on_a_real_pair_equals_the_plain_pytorch_network(shared_data):
    """The trained VIF model through the CPU fast path (C kernels for Bi-WKV, LayerNorm and the fused
    modulation, in-place scans) against the same weights run with PyTorch operations only (literal cross-scan
    and merge, the O(T) PyTorch Bi-WKV, the autograd-mode blocks): max |difference| <= 1e-4 on a real pair."""
    from fusion.pretrained import load_pretrained

    a, b = tno_pair(shared_data, 1, (250, 300))
    model = load_pretrained("vif")
    plain = _reference(model)
    for m in plain.modules():
        if isinstance(m, SpatialMix):
            m.wkv_impl = "torch"
    with torch.inference_mode():
        y = model(a, b)
    with torch.enable_grad():              # eval mode with autograd on: the blocks' PyTorch-operation path
        y_ref = plain(a, b).detach()
    assert float((y - y_ref).abs().max()) <= 1e-4
