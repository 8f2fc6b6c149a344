"""Demo stand-ins for pansharpening and HMIF: per-pixel spectra simulated from photographs, integrated through
WorldView-3-like and Chikusei-like band responses, then degraded by Wald's protocol."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fusion.demo.common import COUNTS, crop, photo_for, sample_rng, save_h5, smooth_field
from rwkvfusion_io.color import luma

# WorldView-3-like MS band centres / widths (nm) and a Chikusei-like 128-band range
WV3_BANDS = ((425, 20), (480, 25), (545, 25), (605, 20), (660, 25), (725, 15), (832, 50), (950, 90))
PAN_RESPONSE = (620, 110)  # broad 450-800 nm panchromatic response (Gaussian centre, sigma)
HS_RANGE = (363.0, 1018.0, 128)


def _reflectance(rgb: np.ndarray, lam: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per-pixel spectra [L, H, W] from a photo: visible part from three smooth bases weighted by linear
    RGB, a vegetation-like red edge (green excess) rising after 700 nm, and a smooth random spectral tilt,
    so the cube is not a rank-3 function of the RGB."""
    lin = rgb ** 2.2
    h, w = lin.shape[:2]
    vis = np.stack([np.exp(-0.5 * ((lam - mu) / sd) ** 2) for mu, sd in ((610, 45), (545, 40), (455, 35))])
    cube = np.einsum("hwc,cl->lhw", lin, vis)
    veg = np.clip(lin[..., 1] - 0.8 * lin[..., 0], 0, None)
    nir = 0.6 * luma(lin) + 2.0 * veg
    edge = 1.0 / (1.0 + np.exp(-(lam - 715.0) / 15.0))
    cube = cube * (1 - edge)[:, None, None] + nir[None] * edge[:, None, None]
    tilt = (smooth_field(rng, (h, w), sigma=max(h, w) / 8) - 0.5) * 0.6
    cube = cube * (1.0 + tilt[None] * ((lam - 650) / 350)[:, None, None])
    return np.clip(cube, 0, None)


def _integrate(cube: np.ndarray, lam: np.ndarray, bands) -> np.ndarray:
    """Band images [B, H, W] through Gaussian spectral responses (centre, sigma) normalised to sum 1."""
    resp = np.stack([np.exp(-0.5 * ((lam - mu) / sd) ** 2) for mu, sd in bands])
    resp = resp / resp.sum(1, keepdims=True)
    return np.tensordot(resp, cube, axes=1)


def _pan_scene(rng, photo, size: int):
    """Wald protocol on a simulated WorldView-3-like scene (8 MS bands + PAN, 11-bit DN):
    full-resolution PAN (4S) and MS (S, Gaussian-MTF decimated) are degraded again by 4 -> gt = MS,
    ms [8, S/4, S/4], lms (bicubic), pan [1, S, S]."""
    from rwkvfusion_io.spectral import mtf_degrade, upsample

    full = crop(photo, (4 * size, 4 * size), rng, scale=(0.6, 1.0))
    lam = np.arange(400.0, 1041.0, 20.0)
    cube = _reflectance(full, lam, rng)
    ms_full = _integrate(cube, lam, WV3_BANDS)             # 8 x 4S x 4S
    pan_full = _integrate(cube, lam, (PAN_RESPONSE,))      # 1 x 4S x 4S
    scale = 1.0 / max(float(ms_full.max()), float(pan_full.max()), 1e-6)
    gt = mtf_degrade(ms_full * scale, 4, 0.3)              # the sensor's MS (S x S)
    ms = mtf_degrade(gt, 4, 0.3)                           # Wald: reduced MS (S/4)
    pan = mtf_degrade(pan_full * scale, 4, 0.15)           # Wald: reduced PAN (S)
    pan = pan + 0.003 * rng.standard_normal(pan.shape)
    lms = upsample(ms, (size, size))
    dn = 2047.0
    return {k: np.round(np.clip(v, 0, 1) * dn).astype(np.float32)
            for k, v in {"gt": gt, "ms": ms, "lms": lms, "pan": pan}.items()}


def _hs_scene(rng, photo, size: int):
    """Chikusei-like 128-band cube (363-1018 nm) + HR-MSI (3 visible responses) + Wald-degraded LR-HSI."""
    from rwkvfusion_io.spectral import mtf_degrade

    lam = np.linspace(*HS_RANGE)
    cube = _reflectance(crop(photo, (size, size), rng, scale=(0.5, 1.0)), lam, rng)
    cube = (cube / max(float(cube.max()), 1e-6)).astype(np.float32)
    msi = _integrate(cube, lam, ((610, 30), (540, 30), (460, 30))).astype(np.float32)
    lr = mtf_degrade(cube, 4, 0.3)
    dn = 4095.0  # stored as 12-bit DN (uint16): a sensor-like quantisation that also keeps the files small
    # no HSI_up: the reader upsamples LRHSI (bicubic) itself, which halves the files
    return {k: np.round(np.clip(v, 0, 1) * dn).astype(np.uint16) for k, v in {"GT": cube, "LRHSI": lr, "RGB": msi}.items()}


def build_spectral(task: str, out: Path) -> dict[str, Any]:
    cache: dict[str, np.ndarray] = {}
    info: dict[str, Any] = {"task": task, "samples": {}}
    for split, n in COUNTS.items():
        size = 64
        scenes, names = [], []
        for i in range(n):
            name, photo = photo_for(split, i, cache)
            rng = sample_rng(task, split, i)
            scenes.append(_pan_scene(rng, photo, size) if task == "pan" else _hs_scene(rng, photo, size))
            names.append(name)
            info["samples"][f"{split}/{i:04d}"] = {"photo": name}
        arrays = {k: np.stack([s[k] for s in scenes]) for k in scenes[0]}
        attrs = ({"max_value": 2047.0, "ratio": 4, "sensor": "demo-WV3-like",
                  "band_centres_nm": np.array([c for c, _ in WV3_BANDS], np.float64)} if task == "pan"
                 else {"max_value": 4095.0, "ratio": 4, "wavelengths_nm": np.linspace(*HS_RANGE)})
        save_h5(out / f"{split}.h5", arrays, attrs)
    info["bands"] = len(WV3_BANDS) if task == "pan" else HS_RANGE[2]
    info["b_bands"] = 1 if task == "pan" else 3
    info["ratio"] = 4
    return info
