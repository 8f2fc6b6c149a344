"""Benchmark suites: each toolbox's metric set, order and colour protocol, so numbers can be placed in the
published tables.

* ``vifb`` - VIFB (Zhang et al. 2020, visible-infrared): AG, CE, EI, EN, MI, PSNR, Qabf, Qcb, Qcv, RMSE, SF,
  SSIM, SD. Colour protocol of its ``metrics*.m``: a colour fused image is scored per RGB channel against
  the matching channel of colour sources (grey sources reused) and the channel scores averaged; SF alone
  takes MATLAB's ``[m, n] = size(F)`` view of the colour image (:func:`spatial_frequency_vifb_color`). A grey
  fused image is scored against ``rgb2gray`` of colour sources.
* ``mefb`` - MEFB (Zhang 2021, multi-exposure): CE, EN, FMI, NMI, PSNR, Qncie, TE, AG, EI, Qabf, Qp, SD, SF,
  Qc, Qw, Qy, MEF_SSIM, Qcb, Qcv, VIF (Han et al.'s VIFF). Colour protocol of its wrappers: colour fused with
  two grey sources -> the fused image's FIRST channel; otherwise per channel as VIFB. MEF_SSIM always works
  on ``rgb2gray`` images (of the fused image too).
* ``pan`` - Vivone et al.'s pansharpening toolbox: reduced resolution Q2n, Q, SAM, ERGAS, SCC
  (``indexes_evaluation``), full resolution D_lambda, D_s, HQNR (``indexes_evaluation_FS`` with HQNR).

Fusion suites take images on the 0..255 scale (uint8 keeps MATLAB's uint8 ``rgb2gray`` rounding).
"""
from __future__ import annotations

import numpy as np

from ._common import as_float, rgb2gray
from .mef_ssim import mef_ssim
from .registry import FUSION_METRICS, Metric
from .statistics import (
    spatial_frequency_vifb_color,
)

# suite name -> name in the one metric table (VIFB's MI is in nats, its PSNR/RMSE the toolbox's; MEFB's "VIF"
# is Han et al.'s VIFF)
VIFB_NAMES = {"AG": "AG", "CE": "CE", "EI": "EI", "EN": "EN", "MI": "MI_vifb", "PSNR": "PSNR_vifb", "Qabf": "Qabf",
              "Qcb": "Qcb", "Qcv": "Qcv", "RMSE": "RMSE_vifb", "SF": "SF", "SSIM": "SSIM", "SD": "SD"}
MEFB_NAMES = {"CE": "CE", "EN": "EN", "FMI": "FMI", "NMI": "NMI", "PSNR": "PSNR_vifb", "Qncie": "Qncie", "TE": "TE",
              "AG": "AG", "EI": "EI", "Qabf": "Qabf", "Qp": "Qp", "SD": "SD", "SF": "SF", "Qc": "Qc", "Qw": "Qw",
              "Qy": "Qy", "MEF_SSIM": "MEF_SSIM", "Qcb": "Qcb", "Qcv": "Qcv", "VIF": "VIFF"}
VIFB_METRICS: dict[str, Metric] = {n: FUSION_METRICS[k] for n, k in VIFB_NAMES.items()}
MEFB_METRICS: dict[str, Metric] = {n: FUSION_METRICS[k] for n, k in MEFB_NAMES.items()}

PAN_REDUCED = ("Q2n", "Q", "SAM", "ERGAS", "SCC")
PAN_FULL = ("D_lambda", "D_s", "HQNR")
SUITES: dict[str, tuple[str, ...]] = {
    "vifb": tuple(VIFB_METRICS), "mefb": tuple(MEFB_METRICS), "pan": PAN_REDUCED + PAN_FULL,
}
#: metrics of the suites where lower is better
SUITE_LOWER_IS_BETTER = frozenset({"CE", "Qcv", "RMSE", "SAM", "ERGAS", "D_lambda", "D_s"})


def _check_fusion_inputs(fused: np.ndarray, a: np.ndarray, b: np.ndarray) -> list[np.ndarray]:
    out = []
    for name, x in (("fused", fused), ("a", a), ("b", b)):
        arr = np.asarray(x)
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
            raise ValueError(f"{name}: expected HxW (grey) or HxWx3 (RGB), got shape {arr.shape}")
        as_float(arr, name)
        if arr.min() < 0 or arr.max() > 255:
            raise ValueError(f"{name}: values {arr.min():.4g}..{arr.max():.4g} outside 0..255; fusion suites work "
                             "on the 0..255 scale (rescale explicitly, e.g. the CLI's --range)")
        out.append(arr)
    if out[1].shape[:2] != out[0].shape[:2] or out[2].shape[:2] != out[0].shape[:2]:
        raise ValueError(f"sizes differ: fused {out[0].shape[:2]}, a {out[1].shape[:2]}, b {out[2].shape[:2]}")
    return out


def _grey(x: np.ndarray) -> np.ndarray:
    return rgb2gray(x) if x.ndim == 3 else x.astype(np.float64)


def _channel(x: np.ndarray, c: int) -> np.ndarray:
    return (x[:, :, c] if x.ndim == 3 else x).astype(np.float64)


def _score(table: dict[str, Metric], triples: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
           names: list[str]) -> dict[str, float]:
    return {n: float(np.mean([table[n](f, x, y) for f, x, y in triples])) for n in names}


def _select(table: dict[str, Metric], metrics: list[str] | None, suite: str) -> list[str]:
    names = list(table) if metrics is None else list(metrics)
    unknown = [n for n in names if n not in table]
    if unknown:
        raise ValueError(f"unknown {suite} metrics {unknown}; the suite has {list(table)}")
    return names


def vifb_suite(fused: np.ndarray, a: np.ndarray, b: np.ndarray, metrics: list[str] | None = None
               ) -> dict[str, float]:
    """VIFB's metric set in its order (see the module docstring for the colour protocol).

    ``a``, ``b``: the two sources (visible and infrared in either order; every VIFB metric is symmetric in
    them), 0..255, grey HxW or RGB HxWx3.
    """
    f, x, y = _check_fusion_inputs(fused, a, b)
    names = _select(VIFB_METRICS, metrics, "vifb")
    if f.ndim == 3:
        triples = [(_channel(f, c), _channel(x, c), _channel(y, c)) for c in range(3)]
    else:
        triples = [(f.astype(np.float64), _grey(x), _grey(y))]
    out = _score(VIFB_METRICS, triples, [n for n in names if n != "SF"])
    if "SF" in names:
        out["SF"] = spatial_frequency_vifb_color(f)
    return {n: out[n] for n in names}


def mefb_suite(fused: np.ndarray, a: np.ndarray, b: np.ndarray, metrics: list[str] | None = None
               ) -> dict[str, float]:
    """MEFB's metric set in its order (see the module docstring for the colour protocol).

    ``a``, ``b``: under- and over-exposed sources (any two sources for multi-focus etc.), 0..255.
    """
    f, x, y = _check_fusion_inputs(fused, a, b)
    names = _select(MEFB_METRICS, metrics, "mefb")
    if f.ndim == 3 and x.ndim == 2 and y.ndim == 2:
        f = f[:, :, 0]
    if f.ndim == 3:
        triples = [(_channel(f, c), _channel(x, c), _channel(y, c)) for c in range(3)]
    else:
        triples = [(f.astype(np.float64), _grey(x), _grey(y))]
    out = _score(MEFB_METRICS, triples, [n for n in names if n != "MEF_SSIM"])
    if "MEF_SSIM" in names:  # metricsMEF_SSIM: rgb2gray of every image, no first-channel rule
        ff = np.asarray(fused)
        ff = ff[:, :, 0] if ff.ndim == 3 and ff.shape[2] == 1 else ff
        out["MEF_SSIM"] = mef_ssim(_grey(ff), _grey(x), _grey(y))
    return {n: out[n] for n in names}


def pan_suite(fused: np.ndarray, reference: np.ndarray | None = None, *, ms: np.ndarray | None = None,
              pan: np.ndarray | None = None, ratio: int = 4, sensor: str | None = None, bits: int = 11,
              block: int = 32, cut: int = 0, threshold: bool = False) -> dict[str, float]:
    """Vivone's toolbox indexes in its order; arrays in sensor DN (no rescaling is ever done here).

    Reduced resolution (``reference`` given, same shape as ``fused``): Q2n, Q, SAM, ERGAS, SCC as
    ``indexes_evaluation``: optional border cut ``cut`` (the toolbox's ``dim_cut``, 21 in its demos; see
    :func:`fusion.metrics.pansharpening.cut_bounds`) and, with ``threshold``, its hard threshold of F to
    [0, 2^bits] (``th_values``; off by default, never applied silently). Full resolution (``ms`` low-res
    [H/ratio, W/ratio, C] and ``pan`` [H, W]): D_lambda (``D_lambda_K``), D_s, HQNR
    (:func:`fusion.metrics.pansharpening.hqnr_toolbox`), with the same optional threshold.
    """
    from .pansharpening import cut_bounds, ergas, hqnr_toolbox, q2n, q_index, sam, scc

    f = as_float(fused, "fused")
    if f.ndim == 2:
        f = f[:, :, None]
    if reference is None and (ms is None or pan is None):
        raise ValueError("give reference= (reduced resolution) and/or both ms= and pan= (full resolution)")
    if threshold:
        f = np.clip(f, 0, 2.0**bits)
    out: dict[str, float] = {}
    if reference is not None:
        r = as_float(reference, "reference")
        r = r[:, :, None] if r.ndim == 2 else r
        if r.shape != f.shape:
            raise ValueError(f"reference shape {r.shape} differs from fused shape {f.shape}")
        fr, rr = (cut_bounds(f, cut), cut_bounds(r, cut)) if cut else (f, r)
        out.update(Q2n=q2n(rr, fr, block, block)[0], Q=q_index(rr, fr, block), SAM=sam(fr, rr),
                   ERGAS=ergas(fr, rr, ratio), SCC=scc(fr, rr))
    if ms is not None and pan is not None:
        hq, dl, ds = hqnr_toolbox(f, as_float(ms, "ms"), as_float(pan, "pan"), ratio, sensor, block)
        out.update(D_lambda=dl, D_s=ds, HQNR=hq)
    return out


def run_suite(suite: str, fused: np.ndarray, a: np.ndarray | None = None, b: np.ndarray | None = None,
              **kw) -> dict[str, float]:
    """Dispatch: ``vifb``/``mefb`` take (fused, a, b); ``pan`` takes (fused, reference, ms=, pan=, ...)."""
    if suite == "vifb":
        return vifb_suite(fused, a, b, **kw)
    if suite == "mefb":
        return mefb_suite(fused, a, b, **kw)
    if suite == "pan":
        return pan_suite(fused, a, **kw)
    raise ValueError(f"unknown suite {suite!r}; choose from {list(SUITES)}")
