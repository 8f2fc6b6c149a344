"""Exact O(T) PyTorch Bi-WKV (Eq. 2) with a custom backward: the CPU path and autograd reference.

Algorithm (a chunked two-level scan, the same decomposition as the Triton kernels):

* Per channel, Eq. 2 is ``y = N / D`` with ``N = W (e*v)``, ``D = W e``, ``e = exp(k - max_t k)`` and the
  symmetric T x T matrix ``W[t, i] = exp(-(|t-i|-1) w/T)`` (i != t), ``W[t, t] = exp(u)``.
  Subtracting the (detached) per-(batch, channel) max of k is exact because y is a ratio.
* Time is cut into ``n`` chunks of ``L`` tokens. Inside a chunk ``W`` is a small L x L Toeplitz matrix
  applied with one batched matmul (``bmm``; all terms computed directly, no subtraction).
* Between chunks, the contribution of all earlier (later) tokens is an exclusive scan of per-chunk
  summaries with per-chunk decay ``R = exp(-wL/T)``; it runs on the short chunk axis in float64 as a
  centred cumulative sum (``exp(+-aL s_j)``, ``s_j = j-(n-1)/2``), made exclusive by SHIFTING the
  cumulative sum (never by subtracting a term), then broadcast back with ``r^l`` factors.
* Backward (``gN = gy/D``, ``gD = -gy*y/D``): W is symmetric, so ``A = W gN`` and ``B = W gD`` use the same
  routine; ``gv = e*A``, ``gk = e*(v*A + B)``, ``gu = exp(u) * sum e*(gN*v + gD)``, and
  ``gw = -1/T * sum_t X_t (Dist o W) Y`` with ``Dist[t,i] = |t-i|-1``; the distance-weighted scan is a
  second-order recurrence whose chunk carries are built from double scans (all terms non-negative for
  non-negative inputs, so no cancellation).

Memory and time are O(B T C) (plus O(C L^2) for the chunk matrices): no T x T or autograd-chain
intermediates are kept; the backward recomputes ``exp(k - m)`` instead of storing it. Time is processed in
cache-sized blocks (``BLOCK_ELEMENTS``), two passes each way (chunk summaries, then mixing), so the working
set stays in cache and the time stays linear once [B, T, C] tensors outgrow the L3 cache.

Numerical range: the largest factor formed is about ``exp(|w|) * T * max|v|`` (growth across the whole
sequence when w < 0). Inputs with ``max|w| <= FP32_W_LIMIT`` (50) are computed in float32 (bf16/fp16 are
upcast); larger |w| switch the whole computation to float64, which is exact up to ``MAX_ABS_W`` (600);
beyond that the call raises ValueError (float64 itself would overflow near |w| ~ 700).
"""
from __future__ import annotations

import torch

FP32_W_LIMIT = 50.0
MAX_ABS_W = 600.0
DEFAULT_CHUNK = 32
BLOCK_ELEMENTS = 1 << 18       # elements (B * tokens * C) per cache-sized block: 1 MiB in fp32


def compute_dtype(dtype: torch.dtype, max_abs_w: float) -> torch.dtype:
    """float32 accumulation, float64 for float64 inputs or when |w| exceeds the float32 range."""
    if dtype == torch.float64 or max_abs_w > FP32_W_LIMIT:
        return torch.float64
    return torch.float32


def chunk_scan(h: torch.Tensor, a_chunk: torch.Tensor, dim: int, reverse: bool = False) -> torch.Tensor:
    """Exclusive decayed scan along ``dim`` (the chunk axis), computed in float64.

    forward: ``F_j = sum_{j'<j} R^(j-1-j') h_j'``; reverse: ``F_j = sum_{j'>j} R^(j'-1-j) h_j'``, with
    ``R = exp(-a_chunk)`` per channel; ``a_chunk`` [C] broadcasts against dim 0 of ``h`` (the channel axis).
    """
    n = h.shape[dim]
    out_dtype = h.dtype
    if n == 1:                                      # nothing before / after the only chunk
        return torch.zeros_like(h)
    h = h.to(torch.float64)
    a = a_chunk.to(torch.float64)
    s = torch.arange(n, device=h.device, dtype=torch.float64) - (n - 1) / 2.0
    s_shape = [1] * h.dim()
    s_shape[dim] = n
    arg = a.view([-1] + [1] * (h.dim() - 1)) * s.view(s_shape)          # a_chunk * s_j
    p, q = arg.exp(), (-arg).exp()
    a0 = a.view([-1] + [1] * (h.dim() - 1)).exp()                      # exp(a_chunk) = 1/R
    zero = torch.zeros_like(h.narrow(dim, 0, 1))
    if not reverse:
        cs = torch.cumsum(p * h, dim)
        excl = torch.cat([zero, cs.narrow(dim, 0, n - 1)], dim)        # shift: exclusive prefix
        out = a0 * q * excl
    else:
        cs = torch.flip(torch.cumsum(torch.flip(q * h, [dim]), dim), [dim])
        excl = torch.cat([cs.narrow(dim, 1, n - 1), zero], dim)        # shift: exclusive suffix
        out = a0 * p * excl
    return out.to(out_dtype)


class _Plan:
    """Chunk geometry, per-channel decay tables and the blocked passes shared by forward and backward.

    Work layout of a block: [C, Q, B, tb] (channel-major, time contiguous, t = j*L + l), so the
    per-channel chunk matrices are applied by ``bmm`` with the channel as the batch axis. Blocks of
    ``block`` tokens (a multiple of L) are processed one at a time so that the working set stays in
    cache: this is what keeps the time linear in T once [B, T, C] tensors outgrow the L3 cache.
    """

    def __init__(self, T: int, C: int, B: int, w: torch.Tensor, dtype: torch.dtype,
                 chunk: int = DEFAULT_CHUNK, block: int | None = None) -> None:
        self.T, self.C, self.B = T, C, B
        self.L = L = max(1, min(chunk, T))
        self.n = -(-T // L)
        if block is None:                                                    # tokens per block
            block = BLOCK_ELEMENTS // (B * C)
        self.Tb = L * max(1, block // L)
        self.dtype = dtype
        self.device = w.device
        a = w.detach().to(dtype) / T                                          # log-decay per step
        self.a = a
        lf = torch.arange(L, device=w.device, dtype=dtype)
        r_l = torch.exp(-a[:, None] * lf)                                    # r^l           [C, L]
        r_rev = torch.exp(-a[:, None] * (L - 1 - lf))                        # r^(L-1-l)     [C, L]
        dl1 = (lf[:, None] - lf[None, :]).abs() - 1.0                        # |l-l'|-1      [L, L]
        eye = torch.eye(L, device=w.device, dtype=torch.bool)
        off = torch.exp(-dl1 * a[:, None, None]).masked_fill(eye, 0.0)      # r^(|l-l'|-1)  [C, L, L]
        self.mat_dist = off * dl1                                            # Dist o W, zero diagonal
        self.off = off
        # chunk summaries towards the chunk end / start, and distance-weighted versions: [C, L, 4]
        self.summ = torch.stack([r_rev, r_l, r_rev * (L - 1 - lf), r_l * lf], 2)
        # carries broadcast back into a chunk; rows match (F, Bk) or (F, F2, Bk, B2)
        self.bcast = torch.stack([r_l, r_rev], 1)                            # [C, 2, L]
        self.bcast_dist = torch.stack([r_l * lf, r_l, r_rev * (L - 1 - lf), r_rev], 1)  # [C, 4, L]

    def blocks(self):
        """(t0, t1, j0, j1): token and chunk ranges of each block of the padded sequence."""
        total = self.n * self.L
        for t0 in range(0, total, self.Tb):
            t1 = min(t0 + self.Tb, total)
            yield t0, t1, t0 // self.L, t1 // self.L

    def intra_matrix(self, diag: torch.Tensor) -> torch.Tensor:
        return self.off + torch.diag_embed(diag.to(self.dtype)[:, None].expand(self.C, self.L))

    def load(self, x: torch.Tensor, t0: int, t1: int, out: torch.Tensor, pad_value: float = 0.0) -> torch.Tensor:
        """x[:, t0:t1] of a [B, T, C] tensor -> ``out`` [C, B, t1-t0], padded past T with ``pad_value``."""
        te = min(t1, self.T)
        out[:, :, :te - t0].copy_(x[:, t0:te].permute(2, 0, 1))
        if te < t1:
            out[:, :, te - t0:].fill_(pad_value)
        return out

    def store(self, y: torch.Tensor, t0: int, t1: int, src: torch.Tensor) -> None:
        """src [C, B, t1-t0] -> y[:, t0:t1] of a [B, T, C] tensor (padding dropped, cast to y's dtype)."""
        te = min(t1, self.T)
        y[:, t0:te].copy_(src[:, :, :te - t0].permute(1, 2, 0))

    def exp_k(self, k: torch.Tensor, m: torch.Tensor, t0: int, t1: int, out: torch.Tensor) -> torch.Tensor:
        """exp(k - m) for a block; padded tokens get k = -inf, i.e. weight 0."""
        self.load(k, t0, t1, out, pad_value=float("-inf"))
        return out.sub_(m.to(self.dtype).t()[:, :, None]).exp_()

    def carries(self, h: torch.Tensor, dist: bool) -> torch.Tensor:
        """Chunk summaries h [C, R, n, 2|4] -> carries [C, R, n, 2|4] (rows as in ``bcast``/``bcast_dist``)."""
        aL = self.a * self.L
        F = chunk_scan(h[..., 0], aL, dim=2)                                 # tokens before the chunk
        Bk = chunk_scan(h[..., 1], aL, dim=2, reverse=True)                  # tokens after the chunk
        if not dist:
            return torch.stack([F, Bk], 3)
        R = torch.exp(-aL).view(-1, 1, 1)
        F2 = self.L * R * chunk_scan(F, aL, dim=2) + chunk_scan(h[..., 2], aL, dim=2)
        B2 = self.L * R * chunk_scan(Bk, aL, dim=2, reverse=True) + chunk_scan(h[..., 3], aL, dim=2, reverse=True)
        return torch.stack([F, F2, Bk, B2], 3)

    def summaries(self, Z: torch.Tensor, nk: int) -> torch.Tensor:
        """Z [C, Q, B, tb] -> per-chunk summaries [C, Q*B, tb/L, nk]."""
        C, L = self.C, self.L
        return torch.bmm(Z.view(C, -1, L), self.summ[:, :, :nk]).view(C, Z.shape[1] * Z.shape[2], -1, nk)

    def mix(self, Z: torch.Tensor, mat: torch.Tensor, carry: torch.Tensor | None) -> torch.Tensor:
        """Intra-chunk ``mat`` (symmetric) plus the carried contributions: [C, Q, B, tb] -> same shape."""
        C, L = self.C, self.L
        out = torch.bmm(Z.view(C, -1, L), mat)
        if carry is not None:
            nk = carry.shape[-1]
            out.baddbmm_(carry.reshape(C, -1, nk), self.bcast if nk == 2 else self.bcast_dist)
        return out.view_as(Z)


def _block_inputs(plan: _Plan, k, v, m, t0, t1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Z = [e*v, e] for a block (e = exp(k - m)), and v in the work layout."""
    Z = torch.empty(plan.C, 2, plan.B, t1 - t0, device=plan.device, dtype=plan.dtype)
    e = plan.exp_k(k, m, t0, t1, Z[:, 1])
    vw = plan.load(v, t0, t1, torch.empty_like(e))
    torch.mul(e, vw, out=Z[:, 0])
    return Z, e, vw


class BiWKVTorch(torch.autograd.Function):
    """Autograd Function of the chunked O(T) PyTorch Bi-WKV (works on any device).

    Saved for backward: per block [y, D] in the work layout (2 float tensors of the input's size) and,
    when w needs a gradient, the chunk carries of the distance-weighted scans of [e*v, e] (small).
    """

    @staticmethod
    def forward(ctx, k, v, w, u, chunk: int = DEFAULT_CHUNK, block: int | None = None):
        B, T, C = k.shape
        dtype = compute_dtype(k.dtype, float(w.detach().abs().max()))
        plan = _Plan(T, C, B, w, dtype, chunk, block)
        m = k.detach().amax(dim=1)                                             # [B, C], exact rescaling
        blocks = list(plan.blocks())
        need_w = ctx.needs_input_grad[2]
        nk = 4 if need_w else 2
        # One block: keep Z = [e*v, e] between the passes. Several blocks: recompute it in pass 2
        # (streaming k, v again costs less than a round trip of Z through DRAM once it outgrows the cache).
        single = len(blocks) == 1
        Zs = [None] * len(blocks)
        carry = cZ = None
        if plan.n > 1 or need_w:
            h = torch.empty(C, 2 * B, plan.n, nk, device=k.device, dtype=dtype)
            for bi, (t0, t1, j0, j1) in enumerate(blocks):                     # pass 1: chunk summaries
                Z = _block_inputs(plan, k, v, m, t0, t1)[0]
                h[:, :, j0:j1] = plan.summaries(Z, nk)
                if single:
                    Zs[bi] = Z
            carry = plan.carries(h[..., :2], dist=False) if plan.n > 1 else None
            cZ = plan.carries(h, dist=True) if need_w else None                # reused by the backward
        mat = plan.intra_matrix(torch.exp(u.detach().to(dtype)))
        y = torch.empty(B, T, C, device=k.device, dtype=k.dtype)
        saved = []
        for bi, (t0, t1, j0, j1) in enumerate(blocks):                         # pass 2: mix and normalise
            Z = Zs[bi] if Zs[bi] is not None else _block_inputs(plan, k, v, m, t0, t1)[0]
            O = plan.mix(Z, mat, None if carry is None else carry[:, :, j0:j1])
            Zs[bi] = None
            O[:, 0].div_(O[:, 1])                                              # O = [y, D]
            plan.store(y, t0, t1, O[:, 0])
            saved.append(O)
        ctx.save_for_backward(k, v, w, u, m)
        ctx.saved_blocks, ctx.cZ, ctx.cfg = saved, cZ, (chunk, block)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gy):
        k, v, w, u, m = ctx.saved_tensors
        saved, cZ = ctx.saved_blocks, ctx.cZ
        B, T, C = k.shape
        plan = _Plan(T, C, B, w, saved[0].dtype, *ctx.cfg)
        dt = plan.dtype
        blocks = list(plan.blocks())
        def cotangents(bi: int) -> torch.Tensor:
            O, (t0, t1, _, _) = saved[bi], blocks[bi]
            X = torch.empty_like(O)
            gN = plan.load(gy, t0, t1, X[:, 0]).div_(O[:, 1])                  # gN = gy / D
            torch.mul(gN, O[:, 0], out=X[:, 1]).neg_()                         # gD = -gy*y/D
            return X

        single = len(blocks) == 1
        Xs = [cotangents(0)] if single else [None] * len(blocks)
        cX = None
        if plan.n > 1:
            hX = torch.empty(C, 2 * B, plan.n, 2, device=k.device, dtype=dt)
            for bi, (_, _, j0, j1) in enumerate(blocks):                       # pass 1: chunk summaries
                hX[:, :, j0:j1] = plan.summaries(Xs[bi] if single else cotangents(bi), 2)
            cX = plan.carries(hX, dist=False)
        eu = torch.exp(u.detach().to(dt))
        mat = plan.intra_matrix(eu)
        need_w = ctx.needs_input_grad[2]
        gk = torch.empty(B, T, C, device=k.device, dtype=k.dtype)
        gv = torch.empty(B, T, C, device=k.device, dtype=v.dtype)
        gu_acc = torch.zeros(C, device=k.device, dtype=dt)
        gw_acc = torch.zeros(C, device=k.device, dtype=dt)
        for bi, (t0, t1, j0, j1) in enumerate(blocks):                         # pass 2: gradients
            X = Xs[bi] if single else cotangents(bi)
            Z, e, vw = _block_inputs(plan, k, v, m, t0, t1)
            AB = plan.mix(X, mat, None if cX is None else cX[:, :, j0:j1])    # [W gN, W gD]
            gvb = AB[:, 0].mul_(e)                                             # gv = e * (W gN)
            plan.store(gv, t0, t1, gvb)
            gkb = AB[:, 1].mul_(e).addcmul_(vw, gvb)                           # gk = e*(W gD) + v*gv
            plan.store(gk, t0, t1, gkb)
            gu_acc += (Z * X).sum((1, 2, 3))
            if need_w:
                Sd = plan.mix(Z, plan.mat_dist, None if plan.n == 1 else cZ[:, :, j0:j1])
                gw_acc += (X * Sd).sum((1, 2, 3))
        gw = (-gw_acc / T).to(w.dtype) if need_w else None
        gu = (eu * gu_acc).to(u.dtype) if ctx.needs_input_grad[3] else None
        return gk, gv, gw, gu, None, None


def bi_wkv_torch(k: torch.Tensor, v: torch.Tensor, w: torch.Tensor, u: torch.Tensor,
                 chunk: int = DEFAULT_CHUNK, block: int | None = None) -> torch.Tensor:
    """Exact O(T) Bi-WKV (Eq. 2), differentiable in k, v, w, u. k, v: [B, T, C]; w, u: [C] -> y [B, T, C].

    ``chunk``: tokens per intra-chunk matrix (L); ``block``: tokens per cache-sized block (default
    BLOCK_ELEMENTS // (B*C)). Neither changes the result beyond rounding.
    """
    return BiWKVTorch.apply(k, v, w, u, chunk, block)
