"""ESS cross-scan / cross-merge (main paper sec. 3.4): orders, round trip, adjointness, autograd, Triton == PyTorch."""
from __future__ import annotations

import pytest
import torch

from rwkvfusion_kernels import SCAN_K, cross_merge, cross_scan

MODES = ["K0", "K2", "K4"]


def _x(B=2, C=5, H=3, W=7, seed=0, dtype=torch.float32):
    return torch.randn(B, C, H, W, generator=torch.Generator().manual_seed(seed)).to(dtype)


def test_scan_orders_by_hand():
    x = torch.arange(6.0).view(1, 1, 2, 3)                 # pixels h*W + w
    seq = cross_scan(x, "K4").squeeze(-1)                   # [4, 6]
    assert seq[0].tolist() == [0, 1, 2, 3, 4, 5]            # row-major
    assert seq[1].tolist() == [0, 3, 1, 4, 2, 5]            # column-major
    assert seq[2].tolist() == [5, 4, 3, 2, 1, 0]            # reversed row-major
    assert seq[3].tolist() == [5, 2, 4, 1, 3, 0]            # reversed column-major
    rev = cross_scan(x, "K2", reverse=True).squeeze(-1)
    assert rev[0].tolist() == [5, 4, 3, 2, 1, 0] and rev[1].tolist() == [5, 2, 4, 1, 3, 0]
    assert cross_scan(x, "K0").squeeze(-1)[0].tolist() == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("reverse", [False, True])
def test_shapes_round_trip_and_adjoint(mode, reverse):
    K = SCAN_K[mode]
    x = _x()
    s = cross_scan(x, mode, reverse)
    assert s.shape == (2 * K, 21, 5)
    # ordering [B, K, T, C]: image b's sequences are rows b*K .. b*K+K-1
    first = x[1].flatten(1).t()                                            # image 1, row-major [T, C]
    assert torch.equal(s.view(2, K, 21, 5)[1, 0], first.flip(0) if reverse else first)
    assert torch.allclose(cross_merge(s, (3, 7), mode, reverse), K * x)        # merge = SUM over K scans
    y = torch.randn(s.shape, generator=torch.Generator().manual_seed(1))
    lhs = (s.double() * y.double()).sum()
    rhs = (x.double() * cross_merge(y, (3, 7), mode, reverse).double()).sum()
    assert torch.allclose(lhs, rhs, rtol=1e-6)


@pytest.mark.parametrize("mode", MODES)
def test_autograd_gradcheck(mode):
    x = _x(1, 2, 2, 3, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: cross_scan(t, mode, True), (x,))
    y = torch.randn(SCAN_K[mode], 6, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: cross_merge(t, (2, 3), mode), (y,))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("reverse", [False, True])
def test_triton_matches_torch_and_is_adjoint(mode, reverse, triton_device):
    d = triton_device
    x = _x(2, 37, 5, 9, seed=3).requires_grad_()          # C = 37 > BLOCK_C and T = 45: ragged tiles
    xd = x.detach().to(d).requires_grad_()
    s_t = cross_scan(xd, mode, reverse, impl="triton")
    s_p = cross_scan(x, mode, reverse, impl="torch")
    assert torch.equal(s_t.cpu(), s_p)
    y = torch.randn(s_t.shape, generator=torch.Generator().manual_seed(4))
    m_t = cross_merge(y.to(d), (5, 9), mode, reverse, impl="triton").cpu()
    assert torch.allclose(m_t, cross_merge(y, (5, 9), mode, reverse, impl="torch"), atol=1e-6)
    (gx,) = torch.autograd.grad(s_t, xd, y.to(d))           # scan's backward is the merge kernel
    assert torch.allclose(gx.cpu(), m_t, atol=1e-6)
    yg = y.to(d).requires_grad_()
    (gy,) = torch.autograd.grad(cross_merge(yg, (5, 9), mode, reverse, impl="triton"), yg, x.detach().to(d))
    assert torch.equal(gy.cpu(), s_p.detach())              # merge's backward is the scan kernel


def test_triton_bf16_merge_accumulates_in_fp32(triton_device):
    y = torch.randn(4, 12, 3).to(torch.bfloat16)
    got = cross_merge(y.to(triton_device), (3, 4), "K4", impl="triton").cpu()
    ref = cross_merge(y.float(), (3, 4), "K4", impl="torch").to(torch.bfloat16)
    # the fp32 sum is rounded once to bf16 (the interpreter's cast may differ from torch's by one ulp)
    assert got.dtype == torch.bfloat16
    assert torch.allclose(got.float(), ref.float(), rtol=2.0 ** -7, atol=0)


def test_bad_inputs():
    x = _x()
    with pytest.raises(ValueError, match="mode"):
        cross_scan(x, "K3")
    with pytest.raises(ValueError, match="x"):
        cross_scan(x[0])
    with pytest.raises(ValueError, match="x"):
        cross_scan(x.long())
    s = cross_scan(x)
    with pytest.raises(ValueError, match="hw"):
        cross_merge(s, (4, 7))
    with pytest.raises(ValueError, match="hw"):
        cross_merge(s, 21)
    with pytest.raises(ValueError, match="K=4"):
        cross_merge(s[:3], (3, 7), "K4")
    with pytest.raises(ValueError, match="impl"):
        cross_merge(s, (3, 7), impl="cuda")


@pytest.mark.parametrize("mode", MODES)
def test_custom_ops_opcheck(mode):
    # fake (meta) kernels, autograd registration and schema of rwkvfusion::cross_scan / cross_merge
    x = _x(2, 5, 3, 4, seed=7).requires_grad_()
    torch.library.opcheck(torch.ops.rwkvfusion.cross_scan.default, (x, mode, True, "torch"))
    y = torch.randn(2 * SCAN_K[mode], 12, 5, requires_grad=True)
    torch.library.opcheck(torch.ops.rwkvfusion.cross_merge.default, (y, 3, 4, mode, False, "torch"))
