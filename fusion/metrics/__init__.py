"""Evaluation metrics in the conventions of the MATLAB toolboxes that published tables come from.

* :func:`fusion_metrics` - VIF/MIF/MEF/MFF metrics (VIFB, MEFB, Tang's scripts).
* :func:`pansharpening_metrics` - reduced-resolution (SAM, ERGAS, Q2n, Q, SCC) and full-resolution
  (D_lambda, D_s, HQNR as the toolbox computes them, or the Khan / MTF-Gaussian forms) pansharpening metrics
  (Vivone's toolbox).
* :mod:`fusion.metrics.suites` - the VIFB, MEFB and pansharpening-toolbox metric sets in their published order
  and colour protocols (``python -m fusion metrics --suite vifb|mefb|pan``).
* :func:`hmif_metrics` - hyperspectral/multispectral fusion (PSNR, SSIM, SAM, ERGAS).

One function per metric lives in the family modules (``information``, ``statistics``, ``structural``, ``vif``,
``qabf``, ``hvs``, ``pansharpening``, ``lpips``); each docstring states its definition and convention.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ._common import as_float, rgb2gray
from .fmi import fmi
from .hvs import qcb, qcv
from .information import (
    cross_entropy,
    entropy,
    mutual_information,
    mutual_information_pair,
    mutual_information_vifb,
    nmi,
    qncie,
    tsallis_entropy,
)
from .lpips import LPIPS_SKIP_MESSAGE, lpips_distance
from .mef_ssim import mef_ssim
from .pansharpening import (
    cut_bounds,
    d_lambda_khan,
    d_lambda_toolbox,
    d_s,
    d_s_toolbox,
    ergas,
    hqnr_toolbox,
    q2n,
    q_index,
    sam,
    scc,
    uqi_blocks,
)
from .phase_congruency import phase_congruency, qp
from .qabf import qabf
from .registry import DEFAULT_FUSION_METRICS, FUSION_METRICS
from .statistics import (
    average_gradient,
    correlation_coefficient,
    edge_intensity,
    psnr,
    psnr_pair,
    psnr_vifb,
    rmse_vifb,
    scd,
    spatial_frequency,
    standard_deviation,
)
from .structural import qc, qw, qy, ssim, ssim_pair
from .suites import SUITES, mefb_suite, pan_suite, vifb_suite
from .vif import vif, viff, vifp

LOWER_IS_BETTER = frozenset({"Qcv", "LPIPS", "SAM", "ERGAS", "D_lambda", "D_s", "CE", "RMSE_vifb"})

__all__ = [
    "DEFAULT_FUSION_METRICS", "FUSION_METRICS", "LOWER_IS_BETTER", "LPIPS_SKIP_MESSAGE", "SUITES",
    "average_gradient", "correlation_coefficient", "cross_entropy", "cut_bounds", "d_lambda_khan",
    "d_lambda_toolbox", "d_s", "d_s_toolbox", "edge_intensity", "entropy", "ergas", "fmi", "fusion_metrics",
    "hmif_metrics", "hqnr_toolbox", "lpips_distance", "mef_ssim", "mefb_suite", "mutual_information",
    "mutual_information_pair", "mutual_information_vifb", "nmi", "pan_suite", "pansharpening_metrics",
    "phase_congruency", "psnr", "psnr_pair", "psnr_vifb", "q2n", "q_index", "qabf", "qc", "qcb", "qcv", "qncie",
    "qp", "qw", "qy", "rgb2gray", "rmse_vifb", "sam", "scc", "scd", "spatial_frequency", "ssim", "ssim_pair",
    "standard_deviation", "tsallis_entropy", "uqi_blocks", "vif", "vifb_suite", "viff", "vifp",
]


def _prepare(x: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise ValueError(f"{name}: expected HxW or HxWx3, got shape {arr.shape}")
    if min(arr.shape[:2]) < 16:
        raise ValueError(f"{name}: image {arr.shape[:2]} too small (need at least 16 x 16)")
    as_float(arr, name)  # validates dtype and finiteness
    return arr


def fusion_metrics(fused: np.ndarray, a: np.ndarray, b: np.ndarray, *, color: str = "gray",
                   metrics: Iterable[str] | None = None, lpips_weights: str | Path | None = None,
                   lpips_net: str = "alex", lpips_lin: str | Path | None = None) -> dict[str, float]:
    """Fusion metrics of F against sources A, B -> ``{name: value}`` (default: :data:`DEFAULT_FUSION_METRICS`;
    ``metrics`` may name any key of :data:`FUSION_METRICS`).

    Inputs: HxW or HxWx3, uint8 or float on the 0..255 scale (no rescaling is done; [0, 1] floats must be
    multiplied by 255 first). ``color="gray"`` (default, the Tang/MEFB convention): every colour image is
    converted with MATLAB ``rgb2gray`` weights (0.298936, 0.587043, 0.114021; uint8 inputs rounded as
    MATLAB returns uint8). ``color="per_channel"`` (VIFB): each metric is computed per RGB channel of F with
    the matching channel of colour sources (grey sources reused) and averaged over the channels.
    ``metrics`` selects a subset. LPIPS = mean(LPIPS(F, A), LPIPS(F, B)) is added only when ``lpips_weights``
    (a local backbone state dict) is given.
    """
    f0, a0, b0 = _prepare(fused, "fused"), _prepare(a, "a"), _prepare(b, "b")
    for name, arr in (("a", a0), ("b", b0)):
        if arr.shape[:2] != f0.shape[:2]:
            raise ValueError(f"{name}: size {arr.shape[:2]} differs from fused size {f0.shape[:2]}")
    names = list(DEFAULT_FUSION_METRICS) if metrics is None else list(metrics)
    unknown = [n for n in names if n not in FUSION_METRICS and n != "LPIPS"]
    if unknown:
        raise ValueError(f"unknown fusion metrics {unknown}; known: {list(FUSION_METRICS)} + LPIPS")
    if color == "gray":
        grey = lambda x: rgb2gray(x) if x.ndim == 3 else x.astype(np.float64)  # noqa: E731
        triples = [(grey(f0), grey(a0), grey(b0))]
    elif color == "per_channel":
        chans = lambda x, c: (x[:, :, c] if x.ndim == 3 else x).astype(np.float64)  # noqa: E731
        n = 3 if any(x.ndim == 3 for x in (f0, a0, b0)) else 1
        triples = [(chans(f0, c), chans(a0, c), chans(b0, c)) for c in range(n)]
    else:
        raise ValueError(f"color must be 'gray' or 'per_channel', got {color!r}")
    out: dict[str, float] = {}
    for name in names:
        if name == "LPIPS":
            continue
        fn = FUSION_METRICS[name]
        out[name] = float(np.mean([fn(f, x, y) for f, x, y in triples]))
    if lpips_weights is not None and (metrics is None or "LPIPS" in names):
        kw = dict(weights=lpips_weights, net=lpips_net, lin_weights=lpips_lin)
        out["LPIPS"] = 0.5 * (lpips_distance(f0, a0, **kw) + lpips_distance(f0, b0, **kw))
    return out


def _bands(x: np.ndarray | None, name: str) -> np.ndarray | None:
    if x is None:
        return None
    arr = as_float(x, name)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise ValueError(f"{name}: expected HxWxC, got shape {arr.shape}")
    return arr


def pansharpening_metrics(fused: np.ndarray, reference: np.ndarray | None = None, *, ms: np.ndarray | None = None,
                          pan: np.ndarray | None = None, ratio: int = 4, sensor: str | None = None,
                          max_value: float = 2047, block: int = 32, full_resolution: str = "toolbox"
                          ) -> dict[str, float]:
    """Pansharpening metrics (Vivone's toolbox conventions).

    fused: [H, W, C]. With ``reference`` ([H, W, C], reduced resolution, e.g. made by
    :func:`rwkvfusion_io.wald.wald_degrade`): ``SAM`` (degrees), ``ERGAS``, ``Q2n`` (Q4/Q8, blocks ``block``), ``Q``
    (band-averaged UIQI on sliding ``block`` windows, toolbox ``Q.m``), ``SCC``. With ``ms`` ([H/ratio,
    W/ratio, C]) and ``pan`` ([H, W]), full resolution: ``D_lambda``, ``D_s``, ``HQNR`` = (1 - D_lambda)(1 - D_s).
    ``full_resolution="toolbox"`` (default): as the toolbox's ``HQNR.m`` computes them
    (:func:`hqnr_toolbox`: D_lambda_K at the PAN scale with ``genMTF`` kernels, D_s with ``imresize``-degraded
    PAN; ``sensor`` picks genMTF's gains, None = 0.3). ``"khan"``: D_lambda in Khan's MS-scale form and D_s
    with the MTF-Gaussian-degraded PAN (:func:`d_lambda_khan`, :func:`d_s`; None = generic 0.29/0.15). For
    the toolbox's border cut and thresholding see :func:`fusion.metrics.suites.pan_suite`.
    Units: sensor DN (Q2n casts to integer DN as the toolbox does). If every given array is float and
    within [0, 1] the data are taken as normalised and multiplied by ``max_value`` (the sensor's DN peak,
    2047 for 11-bit, 255 for 8-bit). With ``max_value <= 1`` the data are not in DN and Q2n's integer cast
    is skipped (pass the sensor's peak for numbers comparable with the toolbox).
    """
    f = _bands(fused, "fused")
    r, m = _bands(reference, "reference"), _bands(ms, "ms")
    p = None if pan is None else as_float(pan, "pan")
    if r is None and (m is None or p is None):
        raise ValueError("give reference= (reduced resolution) and/or both ms= and pan= (full resolution)")
    given = [x for x in (f, r, m, p) if x is not None]
    if all(x.max() <= 1.0 for x in given) and all(np.asarray(y).dtype.kind == "f"
                                                     for y in (fused, reference, ms, pan) if y is not None):
        f, r, m, p = (None if x is None else x * max_value for x in (f, r, m, p))
    quantize = max_value > 1
    out: dict[str, float] = {}
    if r is not None:
        if r.shape != f.shape:
            raise ValueError(f"reference shape {r.shape} differs from fused shape {f.shape}")
        out["SAM"] = sam(f, r)
        out["ERGAS"] = ergas(f, r, ratio)
        out["Q2n"] = q2n(r, f, block, block, quantize=quantize)[0]
        out["Q"] = q_index(r, f, block)
        out["SCC"] = scc(f, r)
    if m is not None and p is not None:
        if full_resolution == "toolbox":
            hq, dl, ds = hqnr_toolbox(f, m, p, ratio, sensor, block, quantize=quantize)
        elif full_resolution == "khan":
            dl = d_lambda_khan(f, m, ratio, sensor, block, quantize=quantize)
            ds = d_s(f, m, p, ratio, sensor, block)
        else:
            raise ValueError(f"full_resolution must be 'toolbox' or 'khan', got {full_resolution!r}")
        out.update(D_lambda=dl, D_s=ds, HQNR=(1 - dl) * (1 - ds))
    return out


def hmif_metrics(fused: np.ndarray, reference: np.ndarray, ratio: int, *, data_range: float | None = None
                 ) -> dict[str, float]:
    """HMIF metrics of fused [H, W, C] against reference [H, W, C]: ``PSNR`` and ``SSIM`` averaged over bands
    (peak ``data_range``, default the reference maximum; SSIM = 11 x 11 Gaussian sigma 1.5 'valid' per band),
    ``SAM`` (degrees) and ``ERGAS`` (100/ratio convention), the usual MPSNR/MSSIM/SAM/ERGAS of HSI papers."""
    f, r = _bands(fused, "fused"), _bands(reference, "reference")
    if f.shape != r.shape:
        raise ValueError(f"reference shape {r.shape} differs from fused shape {f.shape}")
    peak = float(r.max()) if data_range is None else float(data_range)
    c = f.shape[2]
    return {
        "PSNR": float(np.mean([psnr_pair(r[:, :, i], f[:, :, i], peak) for i in range(c)])),
        "SSIM": float(np.mean([ssim_pair(r[:, :, i], f[:, :, i], peak) for i in range(c)])),
        "SAM": sam(f, r),
        "ERGAS": ergas(f, r, ratio),
    }
