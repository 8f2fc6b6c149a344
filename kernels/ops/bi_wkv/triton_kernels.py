"""Triton Bi-WKV forward and backward (Eq. 2): a chunked two-level scan.

Grid: (time chunks of BLOCK_T tokens, channel blocks of BLOCK_C, batch). Every program owns a
[BLOCK_T, BLOCK_C] tile with channels contiguous (coalesced loads), accumulates in float32 and masks the
ragged edges, so any T >= 1 and any C work.

* Kernel A (``*_summary_kernel``) reduces each tile to per-chunk summaries: decayed sums towards the
  chunk end (r^(BT-1-l)) and start (r^l), and for dW/dw their distance-weighted versions.
* The chunk axis (length T/BLOCK_T) is scanned on the host in float64 (``torch_ref.chunk_scan``, the same
  code as the CPU path) giving, per chunk, the contribution carried in from all earlier / later chunks.
* Kernel B rescans its tile: exclusive intra-chunk scans via ``tl.associative_scan`` of the affine map
  s -> r*s + z over the NEIGHBOUR-SHIFTED input (z[t-1] forward, z[t+1] backward; exclusive by shifting,
  no subtraction of the own term), adds the carries times r^l / r^(BT-1-l) and the bonus exp(u) term.
  The shifted tiles are re-loaded (L1/L2 hits) and their exp recomputed: 3 exps per element instead
  of 1, traded for a tile that never has to be shifted in registers.
  The backward computes gN = gy/D, gD = -gy*y/D, applies the same symmetric scans to them (gk, gv),
  reduces gu, and gets gw from distance-weighted scans (a 4-tuple associative scan carrying
  sum d*r^d*z); the per-program partial sums of gu and gw are reduced on the host (deterministic).

The max of k per (batch, channel) is subtracted first (torch ``amax``): y is a ratio, so this is exact.
Inputs with max|w| > FP32_W_LIMIT or float64 inputs use the PyTorch path (float64 there).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .torch_ref import FP32_W_LIMIT, bi_wkv_torch, chunk_scan

# Tile sizes and warps chosen from ptxas register reports for sm_90 (no spills; the compiled kernels were
# not timed here: no GPU): forward 76 and backward 144 registers per thread with [32, 32] tiles, 8 warps.
BLOCK_T = 32
BLOCK_C = 32
BLOCK_T_BWD = 32          # the backward holds ~3x more live values per element than the forward
NUM_WARPS = 8


@triton.jit
def _affine(d1, c1, d2, c2):
    # compose s -> d1*s + c1 then s -> d2*s + c2
    return d1 * d2, c1 * d2 + c2


@triton.jit
def _affine_dist(d1, n1, s1, q1, d2, n2, s2, q2):
    # state (S1, S2) with S1 = sum r^d z, S2 = sum d r^d z; a segment is (r^n, n, s1, s2)
    return d1 * d2, n1 + n2, s1 * d2 + s2, (q1 + n2 * s1) * d2 + q2


@triton.jit
def _ez(k_ptr, v_ptr, base, t, c, m, shift, t0, t1, cmask, C):
    """e = exp(k - m) and e*v at times t+shift, zero outside [t0, t1) (the chunk, clipped to T)."""
    ts = t + shift
    msk = (ts >= t0) & (ts < t1) & cmask
    off = base + ts * C + c
    kk = tl.load(k_ptr + off, mask=msk, other=float("-inf")).to(tl.float32)
    vv = tl.load(v_ptr + off, mask=msk, other=0.0).to(tl.float32)
    e = tl.exp(kk - m)
    return e, e * vv


@triton.jit
def _grads_in(gy_ptr, d_ptr, y_ptr, base, t, c, shift, t0, t1, cmask, C):
    """gN = gy / D and gD = -gN * y at times t+shift, zero outside [t0, t1)."""
    ts = t + shift
    msk = (ts >= t0) & (ts < t1) & cmask
    off = base + ts * C + c
    gy = tl.load(gy_ptr + off, mask=msk, other=0.0).to(tl.float32)
    dd = tl.load(d_ptr + off, mask=msk, other=1.0)
    yy = tl.load(y_ptr + off, mask=msk, other=0.0)
    gn = gy / dd
    return gn, -gn * yy


@triton.jit
def _setup(w_ptr, m_ptr, T, C, BT: tl.constexpr, BC: tl.constexpr):
    j = tl.program_id(0).to(tl.int64)                # int64 offsets: B*T*C may exceed 2^31
    b = tl.program_id(2).to(tl.int64)
    lidx = tl.arange(0, BT)[:, None]
    c = tl.program_id(1) * BC + tl.arange(0, BC)[None, :]
    cmask = c < C
    t0 = j * BT
    t1 = tl.minimum(t0 + BT, T)
    t = t0 + lidx
    w = tl.load(w_ptr + c, mask=cmask, other=0.0).to(tl.float32)
    m = tl.load(m_ptr + b * C + c, mask=cmask, other=0.0)
    a = w / T
    # distances to the chunk start / end, clamped to the valid rows so that padded rows (t >= T)
    # never form r^d beyond the real sequence (overflow when T < BLOCK_T and w < 0)
    tc = tl.minimum(t, t1 - 1)
    lf = (tc - t0).to(tl.float32)
    lr = (t1 - 1 - tc).to(tl.float32)
    r_l = tl.exp(-a * lf)                       # r^l
    r_rev = tl.exp(-a * lr)                     # r^(BT-1-l) (distance to the chunk end)
    # per-step decay for the scans; 1 on padded rows so products never run past the sequence
    r = tl.where(t < t1, tl.exp(-a), 1.0) + tl.zeros([BT, BC], tl.float32)
    return j, b, c, cmask, t0, t1, t, m, lf, lr, r_l, r_rev, r


@triton.jit
def _fwd_summary_kernel(k_ptr, v_ptr, w_ptr, m_ptr, h_ptr, T, C, n_chunks,
                        BT: tl.constexpr, BC: tl.constexpr):
    j, b, c, cmask, t0, t1, t, m, lf, lr, r_l, r_rev, r = _setup(w_ptr, m_ptr, T, C, BT, BC)
    e, ev = _ez(k_ptr, v_ptr, b * T * C, t, c, m, 0, t0, t1, cmask, C)
    c1 = tl.reshape(c, [BC])
    cm = c1 < C
    hp = h_ptr + (b * n_chunks + j) * 4 * C + c1
    tl.store(hp, tl.sum(r_rev * ev, 0), mask=cm)
    tl.store(hp + C, tl.sum(r_rev * e, 0), mask=cm)
    tl.store(hp + 2 * C, tl.sum(r_l * ev, 0), mask=cm)
    tl.store(hp + 3 * C, tl.sum(r_l * e, 0), mask=cm)


@triton.jit
def _fwd_kernel(k_ptr, v_ptr, w_ptr, u_ptr, m_ptr, carry_ptr, y_ptr, d_ptr, T, C, n_chunks,
                BT: tl.constexpr, BC: tl.constexpr):
    j, b, c, cmask, t0, t1, t, m, lf, lr, r_l, r_rev, r = _setup(w_ptr, m_ptr, T, C, BT, BC)
    base = b * T * C
    e, ev = _ez(k_ptr, v_ptr, base, t, c, m, 0, t0, t1, cmask, C)
    ep, evp = _ez(k_ptr, v_ptr, base, t, c, m, -1, t0, t1, cmask, C)
    en, evn = _ez(k_ptr, v_ptr, base, t, c, m, 1, t0, t1, cmask, C)
    _, fn = tl.associative_scan((r, evp), 0, _affine)
    _, bn = tl.associative_scan((r, evn), 0, _affine, reverse=True)
    _, fd = tl.associative_scan((r, ep), 0, _affine)
    _, bd = tl.associative_scan((r, en), 0, _affine, reverse=True)
    cp = carry_ptr + (b * n_chunks + j) * 4 * C + c
    f_num = tl.load(cp, mask=cmask, other=0.0)
    f_den = tl.load(cp + C, mask=cmask, other=0.0)
    b_num = tl.load(cp + 2 * C, mask=cmask, other=0.0)
    b_den = tl.load(cp + 3 * C, mask=cmask, other=0.0)
    eu = tl.exp(tl.load(u_ptr + c, mask=cmask, other=0.0).to(tl.float32))
    num = fn + bn + r_l * f_num + r_rev * b_num + eu * ev
    den = fd + bd + r_l * f_den + r_rev * b_den + eu * e
    msk = (t < t1) & cmask
    off = base + t * C + c
    y = num / tl.where(msk, den, 1.0)                 # masked lanes have den = 0
    tl.store(y_ptr + off, y.to(y_ptr.dtype.element_ty), mask=msk)
    tl.store(d_ptr + off, den, mask=msk)


@triton.jit
def _bwd_summary_kernel(k_ptr, v_ptr, w_ptr, m_ptr, gy_ptr, d_ptr, y_ptr, h_ptr, T, C, n_chunks,
                        BT: tl.constexpr, BC: tl.constexpr):
    j, b, c, cmask, t0, t1, t, m, lf, lr, r_l, r_rev, r = _setup(w_ptr, m_ptr, T, C, BT, BC)
    base = b * T * C
    e, ev = _ez(k_ptr, v_ptr, base, t, c, m, 0, t0, t1, cmask, C)
    gn, gd = _grads_in(gy_ptr, d_ptr, y_ptr, base, t, c, 0, t0, t1, cmask, C)
    c1 = tl.reshape(c, [BC])
    cm = c1 < C
    hp = h_ptr + (b * n_chunks + j) * 12 * C + c1
    dist_rev = lr * r_rev
    dist_l = lf * r_l
    tl.store(hp, tl.sum(r_rev * gn, 0), mask=cm)
    tl.store(hp + C, tl.sum(r_rev * gd, 0), mask=cm)
    tl.store(hp + 2 * C, tl.sum(r_l * gn, 0), mask=cm)
    tl.store(hp + 3 * C, tl.sum(r_l * gd, 0), mask=cm)
    tl.store(hp + 4 * C, tl.sum(r_rev * ev, 0), mask=cm)
    tl.store(hp + 5 * C, tl.sum(r_rev * e, 0), mask=cm)
    tl.store(hp + 6 * C, tl.sum(r_l * ev, 0), mask=cm)
    tl.store(hp + 7 * C, tl.sum(r_l * e, 0), mask=cm)
    tl.store(hp + 8 * C, tl.sum(dist_rev * ev, 0), mask=cm)
    tl.store(hp + 9 * C, tl.sum(dist_rev * e, 0), mask=cm)
    tl.store(hp + 10 * C, tl.sum(dist_l * ev, 0), mask=cm)
    tl.store(hp + 11 * C, tl.sum(dist_l * e, 0), mask=cm)


@triton.jit
def _bwd_kernel(k_ptr, v_ptr, w_ptr, u_ptr, m_ptr, gy_ptr, d_ptr, y_ptr, carry_ptr,
                gk_ptr, gv_ptr, pu_ptr, pw_ptr, T, C, n_chunks,
                BT: tl.constexpr, BC: tl.constexpr):
    j, b, c, cmask, t0, t1, t, m, lf, lr, r_l, r_rev, r = _setup(w_ptr, m_ptr, T, C, BT, BC)
    base = b * T * C
    e, ev = _ez(k_ptr, v_ptr, base, t, c, m, 0, t0, t1, cmask, C)
    ep, evp = _ez(k_ptr, v_ptr, base, t, c, m, -1, t0, t1, cmask, C)
    en, evn = _ez(k_ptr, v_ptr, base, t, c, m, 1, t0, t1, cmask, C)
    gn, gd = _grads_in(gy_ptr, d_ptr, y_ptr, base, t, c, 0, t0, t1, cmask, C)
    gnp, gdp = _grads_in(gy_ptr, d_ptr, y_ptr, base, t, c, -1, t0, t1, cmask, C)
    gnn, gdn = _grads_in(gy_ptr, d_ptr, y_ptr, base, t, c, 1, t0, t1, cmask, C)
    cp = carry_ptr + (b * n_chunks + j) * 12 * C + c
    eu = tl.exp(tl.load(u_ptr + c, mask=cmask, other=0.0).to(tl.float32))
    # A = W gN, B = W gD (W symmetric: the forward operator applied to the cotangents)
    _, fa = tl.associative_scan((r, gnp), 0, _affine)
    _, ba = tl.associative_scan((r, gnn), 0, _affine, reverse=True)
    _, fb = tl.associative_scan((r, gdp), 0, _affine)
    _, bb = tl.associative_scan((r, gdn), 0, _affine, reverse=True)
    A = fa + ba + r_l * tl.load(cp, mask=cmask, other=0.0) \
        + r_rev * tl.load(cp + 2 * C, mask=cmask, other=0.0) + eu * gn
    Bm = fb + bb + r_l * tl.load(cp + C, mask=cmask, other=0.0) \
        + r_rev * tl.load(cp + 3 * C, mask=cmask, other=0.0) + eu * gd
    msk = (t < t1) & cmask
    off = base + t * C + c
    tl.store(gv_ptr + off, (e * A).to(gv_ptr.dtype.element_ty), mask=msk)
    tl.store(gk_ptr + off, (ev * A + e * Bm).to(gk_ptr.dtype.element_ty), mask=msk)
    c1 = tl.reshape(c, [BC])
    cm = c1 < C
    pidx = (b * n_chunks + j) * C + c1
    valid = (t < t1) & cmask
    tl.store(pu_ptr + pidx, tl.sum(tl.where(valid, ev * gn + e * gd, 0.0), 0), mask=cm)
    # gw: distance-weighted scans (Dist o W) of [e*v, e], dotted with [gN, gD]
    one = tl.full([BT, BC], 1.0, tl.float32)
    zero = tl.zeros([BT, BC], tl.float32)
    _, _, _, fdv = tl.associative_scan((r, one, evp, zero), 0, _affine_dist)
    _, _, _, bdv = tl.associative_scan((r, one, evn, zero), 0, _affine_dist, reverse=True)
    _, _, _, fde = tl.associative_scan((r, one, ep, zero), 0, _affine_dist)
    _, _, _, bde = tl.associative_scan((r, one, en, zero), 0, _affine_dist, reverse=True)
    sd_v = fdv + bdv + r_l * (lf * tl.load(cp + 4 * C, mask=cmask, other=0.0)
                              + tl.load(cp + 8 * C, mask=cmask, other=0.0)) \
        + r_rev * (lr * tl.load(cp + 6 * C, mask=cmask, other=0.0)
                   + tl.load(cp + 10 * C, mask=cmask, other=0.0))
    sd_e = fde + bde + r_l * (lf * tl.load(cp + 5 * C, mask=cmask, other=0.0)
                              + tl.load(cp + 9 * C, mask=cmask, other=0.0)) \
        + r_rev * (lr * tl.load(cp + 7 * C, mask=cmask, other=0.0)
                   + tl.load(cp + 11 * C, mask=cmask, other=0.0))
    tl.store(pw_ptr + pidx, tl.sum(tl.where(valid, gn * sd_v + gd * sd_e, 0.0), 0), mask=cm)


def _carries(h: torch.Tensor, w: torch.Tensor, T: int, BT: int, dist_rows: bool) -> torch.Tensor:
    """Host chunk-level scans. h: [B, n, R, C] summaries -> carries of the same shape (see kernels)."""
    a_chunk = w.detach().double() * BT / T
    hc = h.permute(3, 0, 2, 1)                                           # [C, B, R, n]
    out = torch.empty_like(hc, dtype=torch.float64)
    out[:, :, 0:2] = chunk_scan(hc[:, :, 0:2], a_chunk, dim=3)
    out[:, :, 2:4] = chunk_scan(hc[:, :, 2:4], a_chunk, dim=3, reverse=True)
    if dist_rows:
        R = torch.exp(-a_chunk).view(-1, 1, 1, 1)
        F = chunk_scan(hc[:, :, 4:6], a_chunk, dim=3)
        Bk = chunk_scan(hc[:, :, 6:8], a_chunk, dim=3, reverse=True)
        out[:, :, 4:6] = F
        out[:, :, 6:8] = Bk
        out[:, :, 8:10] = BT * R * chunk_scan(F, a_chunk, dim=3) + chunk_scan(hc[:, :, 8:10], a_chunk, dim=3)
        out[:, :, 10:12] = BT * R * chunk_scan(Bk, a_chunk, dim=3, reverse=True) \
            + chunk_scan(hc[:, :, 10:12], a_chunk, dim=3, reverse=True)
    return out.to(torch.float32).permute(1, 3, 2, 0).contiguous()        # [B, n, R, C]


class BiWKVTriton(torch.autograd.Function):
    """Autograd Function over the Triton forward/backward kernels (float32 accumulation)."""

    @staticmethod
    def forward(ctx, k, v, w, u, block_t: int = BLOCK_T, block_c: int = BLOCK_C):
        k, v = k.contiguous(), v.contiguous()
        B, T, C = k.shape
        n = triton.cdiv(T, block_t)
        grid = (n, triton.cdiv(C, block_c), B)
        m = k.detach().amax(dim=1).float().contiguous()
        wf, uf = w.detach().float().contiguous(), u.detach().float().contiguous()
        h = torch.empty(B, n, 4, C, device=k.device, dtype=torch.float32)
        _fwd_summary_kernel[grid](k, v, wf, m, h, T, C, n, BT=block_t, BC=block_c, num_warps=NUM_WARPS)
        carry = _carries(h, w, T, block_t, dist_rows=False)
        y32 = torch.empty(B, T, C, device=k.device, dtype=torch.float32)
        D = torch.empty_like(y32)
        _fwd_kernel[grid](k, v, wf, uf, m, carry, y32, D, T, C, n, BT=block_t, BC=block_c, num_warps=NUM_WARPS)
        ctx.save_for_backward(k, v, w, u, m, y32, D)
        ctx.blocks = (block_t, block_c)
        return y32 if k.dtype == torch.float32 else y32.to(k.dtype)

    @staticmethod
    def backward(ctx, gy):
        k, v, w, u, m, y32, D = ctx.saved_tensors
        block_t, block_c = ctx.blocks
        block_t = min(block_t, BLOCK_T_BWD)          # backward chunks are independent of the forward's
        B, T, C = k.shape
        n = triton.cdiv(T, block_t)
        grid = (n, triton.cdiv(C, block_c), B)
        gy = gy.contiguous()
        wf, uf = w.detach().float().contiguous(), u.detach().float().contiguous()
        h = torch.empty(B, n, 12, C, device=k.device, dtype=torch.float32)
        _bwd_summary_kernel[grid](k, v, wf, m, gy, D, y32, h, T, C, n, BT=block_t, BC=block_c,
                                  num_warps=NUM_WARPS)
        carry = _carries(h, w, T, block_t, dist_rows=True)
        gk, gv = torch.empty_like(k), torch.empty_like(v)
        pu = torch.empty(B * n, C, device=k.device, dtype=torch.float32)
        pw = torch.empty_like(pu)
        _bwd_kernel[grid](k, v, wf, uf, m, gy, D, y32, carry, gk, gv, pu, pw, T, C, n, BT=block_t, BC=block_c,
                          num_warps=NUM_WARPS)
        gw = (-pw.double().sum(0) / T).to(w.dtype)
        gu = (torch.exp(u.detach().double()) * pu.double().sum(0)).to(u.dtype)
        return gk, gv, gw, gu, None, None


def bi_wkv_triton(k: torch.Tensor, v: torch.Tensor, w: torch.Tensor, u: torch.Tensor,
                  block_t: int = BLOCK_T, block_c: int = BLOCK_C) -> torch.Tensor:
    """Triton Bi-WKV (Eq. 2). k, v: [B, T, C] fp32/bf16/fp16; w, u: [C]. Returns y in k's dtype.

    float64 inputs, or max|w| above FP32_W_LIMIT, are delegated to the PyTorch path (float64 inside).
    """
    if k.dtype == torch.float64 or float(w.detach().abs().max()) > FP32_W_LIMIT:
        return bi_wkv_torch(k, v, w, u)
    return BiWKVTriton.apply(k, v, w, u, block_t, block_c)
