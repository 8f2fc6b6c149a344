"""Pansharpening / HMIF metrics in Vivone's Pansharpening Toolbox conventions (SPEC Appendix B).

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
    SPEC; the toolbox uses ``imresize``) then interpolated back the same way."""
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
