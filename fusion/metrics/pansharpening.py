"""Pansharpening / HMIF metrics in Vivone's Pansharpening Toolbox conventions
(Vivone et al. 2015, 2020).

Images are [H, W, C] arrays (C bands) in sensor DN units unless stated otherwise.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ._common import round_half_away


def _check_pair(fused: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f = np.asarray(fused, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if f.ndim == 2:
        f = f[:, :, None]
    if r.ndim == 2:
        r = r[:, :, None]
    if f.shape != r.shape:
        raise ValueError(f"fused shape {f.shape} differs from reference shape {r.shape}")
    return f, r


def sam(fused: np.ndarray, reference: np.ndarray) -> float:
    """SAM in DEGREES: mean over pixels of arccos(<x, y> / (|x| |y|)) (toolbox ``SAM.m``).

    Pixels where either norm is zero are excluded; cosines are clipped to [-1, 1] (the toolbox takes
    the real part of acos, which is the same thing).
    """
    f, r = _check_pair(fused, reference)
    dot = (f * r).sum(axis=2)
    norm = np.sqrt((f * f).sum(axis=2) * (r * r).sum(axis=2))
    keep = norm > 0
    if not keep.any():
        return float("nan")
    ang = np.arccos(np.clip(dot[keep] / norm[keep], -1.0, 1.0))
    return float(np.degrees(ang.mean()))


def ergas(fused: np.ndarray, reference: np.ndarray, ratio: float = 4) -> float:
    """ERGAS = 100/ratio sqrt(mean_b(MSE_b / mu_b^2)), mu_b the mean of reference band b (``ERGAS.m``)."""
    f, r = _check_pair(fused, reference)
    mse = ((r - f) ** 2).mean(axis=(0, 1))
    mu = r.mean(axis=(0, 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(100.0 / ratio * np.sqrt(np.mean(mse / mu**2)))


_SOBEL = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], dtype=np.float64)  # fspecial('sobel')


def _sobel_magnitude(x: np.ndarray) -> np.ndarray:
    inner = x[1:-1, 1:-1]
    out = np.empty_like(inner)
    for b in range(inner.shape[2]):
        gy = ndimage.correlate(inner[:, :, b], _SOBEL, mode="constant")
        gx = ndimage.correlate(inner[:, :, b], _SOBEL.T, mode="constant")
        out[:, :, b] = np.sqrt(gx * gx + gy * gy)
    return out


def scc(fused: np.ndarray, reference: np.ndarray) -> float:
    """SCC (toolbox ``SCC.m``): Sobel-magnitude high-pass of the interior (one-pixel border dropped, then
    ``imfilter`` with zero padding, both orientations) of each band of F and reference; pooled over bands as
    sum(HF_F HF_R) / sqrt(sum HF_F^2) / sqrt(sum HF_R^2) (the toolbox's uncentred correlation)."""
    f, r = _check_pair(fused, reference)
    hf, hr = _sobel_magnitude(f), _sobel_magnitude(r)
    den = np.sqrt((hf * hf).sum()) * np.sqrt((hr * hr).sum())
    return float((hf * hr).sum() / den) if den > 0 else float("nan")


# ---------------------------------------------------------------- Q2n (Garzelli & Nencini hypercomplex)
def _conj(x: np.ndarray) -> np.ndarray:
    return np.concatenate([x[..., :1], -x[..., 1:]], axis=-1)


def onion_mult(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Hypercomplex (Cayley-Dickson) product along the last axis, toolbox ``onion_mult``/``onion_mult2D``."""
    n = x.shape[-1]
    if n == 1:
        return x * y
    half = n // 2
    a, b = x[..., :half], _conj(x[..., half:])
    c, d = y[..., :half], _conj(y[..., half:])
    if n == 2:
        return np.concatenate([a * c - d * b, a * d + c * b], axis=-1)
    r1 = onion_mult(a, c)
    r2 = onion_mult(d, _conj(b))
    r3 = onion_mult(_conj(a), d)
    r4 = onion_mult(c, b)
    return np.concatenate([r1 - r2, r3 + r4], axis=-1)


def _onions_quality(d1: np.ndarray, d2: np.ndarray) -> np.ndarray:
    """Toolbox ``onions_quality`` for many blocks at once: d1, d2 [..., P, N] (P pixels, N = 2^n bands)."""
    p, n = d1.shape[-2:]
    sign = np.ones(n)
    sign[1:] = -1
    d2 = d2 * sign  # conjugate the fused image
    s = d1.mean(axis=-2, keepdims=True)
    t = d1.std(axis=-2, ddof=1, keepdims=True)
    t = np.where(t == 0, np.finfo(np.float64).eps, t)
    d1 = (d1 - s) / t + 1
    orig = d2 * sign
    d2 = sign * np.where(s == 0, orig - s + 1, (orig - s) / t + 1)
    m1, m2 = d1.mean(axis=-2), d2.mean(axis=-2)  # [..., N]
    q1m2, q2m2 = (m1 * m1).sum(-1), (m2 * m2).sum(-1)
    k = p / (p - 1)
    int1 = k * (d1 * d1).sum(-1).mean(-1)
    int2 = k * (d2 * d2).sum(-1).mean(-1)
    term3 = int1 + int2 - k * (q1m2 + q2m2)
    mean_bias = 2 * np.sqrt(q1m2) * np.sqrt(q2m2) / (q1m2 + q2m2)
    qu = onion_mult(d1, d2).mean(axis=-2) * k
    qm = onion_mult(m1, m2) * k
    safe = np.where(term3 == 0, 1.0, term3)
    q = (qu - qm) * (mean_bias * 2 / safe)[..., None]
    degenerate = np.zeros_like(q)
    degenerate[..., -1] = mean_bias
    return np.where((term3 == 0)[..., None], degenerate, q)


def q2n(reference: np.ndarray, fused: np.ndarray, block: int = 32, shift: int = 32, *, quantize: bool = True
        ) -> tuple[float, np.ndarray]:
    """Q2n (Q4 for 4 bands, Q8 for 8; Garzelli & Nencini 2009), toolbox ``q2n.m``, vectorised over blocks.

    Images are padded by mirroring (edge included) to cover whole blocks, cast to integer DN like the
    toolbox's ``uint16`` (round, saturate), bands zero-padded to a power of two; per block of ``block`` x
    ``block`` pixels (step ``shift``) the hypercomplex universal image quality index (``onions_quality``);
    the index is the mean over blocks of its modulus. Returns ``(index, map)``. ``quantize=False`` skips
    the integer-DN cast (for data that are not in DN units, e.g. [0, 1]: the cast would destroy them).
    """
    f, r = _check_pair(fused, reference)
    h, w, _ = r.shape
    nx, ny = int(np.ceil(h / shift)), int(np.ceil(w / shift))
    e1, e2 = (nx - 1) * shift + block - h, (ny - 1) * shift + block - w
    if e1 > 0 or e2 > 0:
        pad = ((0, max(e1, 0)), (0, max(e2, 0)), (0, 0))
        r, f = np.pad(r, pad, mode="symmetric"), np.pad(f, pad, mode="symmetric")
    if quantize:
        r = np.clip(round_half_away(r), 0, 65535)
        f = np.clip(round_half_away(f), 0, 65535)
    nb = r.shape[2]
    n2 = 1 << int(np.ceil(np.log2(nb))) if nb > 1 else 1
    if n2 != nb:
        zeros = np.zeros(r.shape[:2] + (n2 - nb,))
        r, f = np.concatenate([r, zeros], axis=2), np.concatenate([f, zeros], axis=2)
    win = np.lib.stride_tricks.sliding_window_view
    rb = win(r, (block, block), axis=(0, 1))[::shift, ::shift][:nx, :ny]  # [nx, ny, N, block, block]
    fb = win(f, (block, block), axis=(0, 1))[::shift, ::shift][:nx, :ny]
    rb = rb.reshape(nx, ny, n2, block * block).swapaxes(-1, -2)
    fb = fb.reshape(nx, ny, n2, block * block).swapaxes(-1, -2)
    q = _onions_quality(rb, fb)
    qmap = np.sqrt((q * q).sum(-1))
    return float(qmap.mean()), qmap


# ---------------------------------------------------------------- universal image quality index (blocks)
def uqi_blocks(x: np.ndarray, y: np.ndarray, block: int = 32) -> float:
    """Mean over non-overlapping ``block`` x ``block`` blocks of Wang-Bovik's Q index (toolbox ``uqi`` via
    ``blockproc``): 4 cov mx my / ((vx + vy)(mx^2 + my^2)), sample (N-1) statistics. Degenerate blocks as in
    ``img_qi``: zero variance sum -> 2 mx my / (mx^2 + my^2); all zero -> 1. Trailing rows/columns that do
    not fill a block are ignored (the toolbox requires multiples of the block size)."""
    h, w = x.shape
    nh, nw = h // block, w // block
    if nh == 0 or nw == 0:
        raise ValueError(f"image {x.shape} smaller than the block size {block}")
    xb = x[: nh * block, : nw * block].reshape(nh, block, nw, block).swapaxes(1, 2).reshape(nh, nw, -1)
    yb = y[: nh * block, : nw * block].reshape(nh, block, nw, block).swapaxes(1, 2).reshape(nh, nw, -1)
    mx, my = xb.mean(-1), yb.mean(-1)
    vx, vy = xb.var(-1, ddof=1), yb.var(-1, ddof=1)
    cxy = ((xb - mx[..., None]) * (yb - my[..., None])).sum(-1) / (xb.shape[-1] - 1)
    m2 = mx * mx + my * my
    den1 = vx + vy
    q = np.ones_like(mx)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where((den1 == 0) & (m2 != 0), 2 * mx * my / m2, q)
        q = np.where((den1 * m2) != 0, 4 * cxy * mx * my / (den1 * m2), q)
    return float(q.mean())


# ---------------------------------------------------------------- full resolution (no reference)
def d_lambda_khan(fused: np.ndarray, ms: np.ndarray, ratio: int = 4, sensor: str | None = None,
                  block: int = 32, *, quantize: bool = True) -> float:
    """D_lambda, Khan form (Khan, Alparone & Chanussot 2009; toolbox ``D_lambda_K``):
    1 - Q2n(MS, fused MTF-filtered with the sensor's MS gains and decimated by ``ratio``), blocks ``block``."""
    from rwkvfusion_io.wald import decimate, mtf_filter

    f = np.asarray(fused, dtype=np.float64)
    m = np.asarray(ms, dtype=np.float64)
    if f.shape[0] != m.shape[0] * ratio or f.shape[1] != m.shape[1] * ratio or f.shape[2:] != m.shape[2:]:
        raise ValueError(f"fused {f.shape} must be ratio={ratio} times ms {m.shape} with the same bands")
    degraded = decimate(mtf_filter(f, ratio, sensor), ratio)
    return 1.0 - q2n(m, degraded, block, block, quantize=quantize)[0]


def d_s(fused: np.ndarray, ms: np.ndarray, pan: np.ndarray, ratio: int = 4, sensor: str | None = None,
        block: int = 32, q: float = 1.0) -> float:
    """D_s spatial distortion (Alparone et al. 2008 QNR; toolbox ``D_s`` option 1, expanded-MS domain):
    (mean_b |Q(F_b, PAN) - Q(MS~_b, PAN~)|^q)^(1/q), Q = :func:`uqi_blocks`, MS~ = MS interpolated to the
    PAN grid (``interp23tap``), PAN~ = PAN degraded (MTF-matched low-pass with the PAN gain + decimation,
    Wald et al. 1997; the toolbox uses ``imresize``, see :func:`d_s_toolbox`) then interpolated back the same way."""
    from rwkvfusion_io.wald import decimate, mtf_filter, upsample

    f = np.asarray(fused, dtype=np.float64)
    m = np.asarray(ms, dtype=np.float64)
    p = np.asarray(pan, dtype=np.float64)
    if p.ndim == 3 and p.shape[2] == 1:
        p = p[:, :, 0]
    if p.shape != f.shape[:2]:
        raise ValueError(f"pan shape {p.shape} differs from fused spatial shape {f.shape[:2]}")
    ms_exp = upsample(m, ratio)
    pan_low = upsample(decimate(mtf_filter(p, ratio, sensor, pan=True), ratio), ratio)
    diffs = [abs(uqi_blocks(f[:, :, i], p, block) - uqi_blocks(ms_exp[:, :, i], pan_low, block)) ** q
             for i in range(f.shape[2])]
    return float(np.mean(diffs) ** (1.0 / q))


# ---------------------------------------------------------------- toolbox full-resolution (HQNR) and Q
def q_index(reference: np.ndarray, fused: np.ndarray, block: int = 32) -> float:
    """Toolbox ``Q.m``: mean over bands of Wang & Bovik's universal image quality index ``img_qi(GT_b, F_b,
    32)``, i.e. the mean of the Q map over ALL ``block`` x ``block`` sliding windows (step 1, 'valid'), with
    ``img_qi``'s degenerate cases (zero variance sum -> 2 mx my / (mx^2 + my^2); all zero -> 1).
    Identical images give 1; bounds [-1, 1]."""
    f, r = _check_pair(fused, reference)
    if min(r.shape[:2]) < block:
        raise ValueError(f"image {r.shape[:2]} smaller than the Q block size {block}")
    ones = np.ones(block)

    def box(z: np.ndarray) -> np.ndarray:
        y = ndimage.correlate1d(ndimage.correlate1d(z, ones, axis=0, mode="constant"), ones, axis=1,
                                mode="constant")
        h0 = block // 2  # scipy centres an even kernel at len // 2
        return y[h0 : h0 + z.shape[0] - block + 1, h0 : h0 + z.shape[1] - block + 1]

    n = float(block * block)
    out = []
    for b in range(r.shape[2]):
        x, y = r[:, :, b], f[:, :, b]
        sx, sy, sxx, syy, sxy = box(x), box(y), box(x * x), box(y * y), box(x * y)
        mul = sx * sy
        sq = sx * sx + sy * sy
        num = 4 * (n * sxy - mul) * mul
        den1 = n * (sxx + syy) - sq
        den = den1 * sq
        q = np.ones_like(den)
        with np.errstate(divide="ignore", invalid="ignore"):
            q = np.where((den1 == 0) & (sq != 0), 2 * mul / sq, q)
            q = np.where(den != 0, num / den, q)
        out.append(float(q.mean()))
    return float(np.mean(out))


def cut_bounds(img: np.ndarray, dim_cut: int = 21) -> np.ndarray:
    """Toolbox ``indexes_evaluation`` border cut ``I(dim_cut:end-dim_cut, dim_cut:end-dim_cut, :)``: drops
    dim_cut - 1 rows/columns at the top/left and dim_cut at the bottom/right (0-based ``[20:-21]`` for 21)."""
    x = np.asarray(img)
    if dim_cut <= 0:
        return x
    h, w = x.shape[:2]
    if h <= 2 * dim_cut or w <= 2 * dim_cut:
        raise ValueError(f"image {x.shape[:2]} too small for a border cut of {dim_cut}")
    return x[dim_cut - 1 : h - dim_cut, dim_cut - 1 : w - dim_cut]


def d_lambda_toolbox(fused: np.ndarray, ms_exp: np.ndarray, ratio: int = 4, sensor: str | None = None,
                     block: int = 32, *, quantize: bool = True) -> float:
    """D_lambda as the toolbox's ``D_lambda_K`` (Khan, Alparone & Chanussot 2009; HQNR of Vivone et al. 2020)
    computes it, at the PAN scale: 1 - Q2n(MS~, MTF(F)), MS~ the MS interpolated to the PAN grid
    (``interp23tap``), MTF(F) the fused image low-passed band by band with ``genMTF``'s kernels
    (:func:`fusion.metrics.mtf.mtf_filter_toolbox`, no decimation), Q2n on ``block`` x ``block`` blocks.
    (:func:`d_lambda_khan` is the paper's form at the MS scale.) The toolbox requires H, W to be multiples of
    ``block``; here Q2n pads by mirroring as ``q2n.m`` does for other sizes."""
    from .mtf import mtf_filter_toolbox

    f, m = _check_pair(fused, ms_exp)
    return 1.0 - q2n(m, mtf_filter_toolbox(f, sensor, ratio), block, block, quantize=quantize)[0]


def d_s_toolbox(fused: np.ndarray, ms_exp: np.ndarray, pan: np.ndarray, ratio: int = 4, block: int = 32,
                q: float = 1.0) -> float:
    """D_s as the toolbox's ``D_s.m`` computes it (option 1, "as toolbox 1.0"; Alparone et al. 2008):
    (mean_b |Q(F_b, PAN) - Q(MS~_b, PAN~)|^q)^(1/q), Q = :func:`uqi_blocks` (non-overlapping ``block``
    blocks, ``blockproc``), MS~ the MS interpolated to the PAN grid, PAN~ = interp23tap(imresize(PAN,
    1/ratio), ratio) with MATLAB's bicubic antialiased ``imresize`` (:func:`fusion.metrics.mtf.imresize_bicubic`).
    Two differences in degenerate cases only: the toolbox errors when H, W are not multiples of ``block``
    (here partial blocks are ignored), and its ``uqi`` gives NaN for a block where both variances vanish
    (here ``img_qi``'s values, see :func:`uqi_blocks`).
    """
    from rwkvfusion_io.wald import interp23tap

    from .mtf import imresize_bicubic

    f, m = _check_pair(fused, ms_exp)
    p = np.asarray(pan, dtype=np.float64)
    if p.ndim == 3 and p.shape[2] == 1:
        p = p[:, :, 0]
    if p.shape != f.shape[:2]:
        raise ValueError(f"pan shape {p.shape} differs from fused spatial shape {f.shape[:2]}")
    pan_filt = interp23tap(imresize_bicubic(p, 1.0 / ratio), ratio)
    diffs = [abs(uqi_blocks(f[:, :, i], p, block) - uqi_blocks(m[:, :, i], pan_filt, block)) ** q
             for i in range(f.shape[2])]
    return float(np.mean(diffs) ** (1.0 / q))


def hqnr_toolbox(fused: np.ndarray, ms: np.ndarray, pan: np.ndarray, ratio: int = 4, sensor: str | None = None,
                 block: int = 32, *, quantize: bool = True) -> tuple[float, float, float]:
    """Toolbox ``HQNR.m`` (Vivone et al. 2020): ``(HQNR, D_lambda, D_s)`` with D_lambda =
    :func:`d_lambda_toolbox`, D_s = :func:`d_s_toolbox` (q = 1), HQNR = (1 - D_lambda)(1 - D_s); ``ms`` is
    the low-resolution MS, interpolated with ``interp23tap`` as the toolbox's demos do."""
    from rwkvfusion_io.wald import interp23tap

    m = np.asarray(ms, dtype=np.float64)
    f = np.asarray(fused, dtype=np.float64)
    if f.shape[0] != m.shape[0] * ratio or f.shape[1] != m.shape[1] * ratio:
        raise ValueError(f"fused {f.shape} must be ratio={ratio} times ms {m.shape}")
    ms_exp = interp23tap(m, ratio)
    dl = d_lambda_toolbox(f, ms_exp, ratio, sensor, block, quantize=quantize)
    ds = d_s_toolbox(f, ms_exp, pan, ratio, block)
    return (1 - dl) * (1 - ds), dl, ds
