"""Embedded demo datasets: small, deterministic stand-ins for the real datasets, built offline.

Every task's data is simulated from real photographs bundled with scikit-image (``skimage.data``:
astronaut, chelsea, immunohistochemistry, retina, hubble_deep_field for ``train``; coffee, rocket for
``test``) plus its Shepp-Logan head phantom for the medical stand-in. The files follow the layouts the
real adapters read (``rwkvfusion_io.layouts`` / ``rwkvfusion_io.spectral``)::

    <root>/README.txt
    <root>/vif/{train,test}/{vi,ir,Segmentation_labels}/NNNN.png   MSRS layout
    <root>/mif/{train,test}/{MRI,SPECT}/NNNN.png                   Harvard layout (+ split)
    <root>/mef/{train,test}/{ue,oe,gt}/NNNN.png                    under/over pairs + reference
    <root>/mff/{train,test}/{far,near,gt}/NNNN.png                 far/near-focus pairs + all-in-focus
    <root>/pan/{train,test}.h5                                     PanCollection keys gt, ms, lms, pan (8 bands, 11-bit DN)
    <root>/hmif/{train,test}.h5                                    GT, LRHSI, RGB (128 + 3 bands, 12-bit DN)
    <root>/<task>/info.json                                        what was simulated and how

Determinism: one ``numpy`` generator per (task, split, sample) from a fixed seed, PNGs written by
Pillow (no timestamps), h5 datasets written with ``track_times=False`` - two builds are byte-identical.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

SEED = 20240601
TASKS = ("vif", "mif", "mef", "mff", "pan", "hmif")
TRAIN_PHOTOS = ("astronaut", "chelsea", "immunohistochemistry", "retina", "hubble_deep_field")
TEST_PHOTOS = ("coffee", "rocket")
COUNTS = {"train": 12, "test": 4}
TASK_INDEX = {t: i for i, t in enumerate(TASKS)}

README = """Embedded demo data of rwkvfusion (built by `make demo-data` / `python -m fusion demo-data`).

THESE ARE STAND-INS FOR THE REAL DATASETS, made offline and deterministically from the sample
photographs bundled with scikit-image (skimage.data) and its Shepp-Logan head phantom. They exist so
that `make train TASK=<task>` and the tests run anywhere in minutes; numbers measured on them say
nothing about MSRS, M3FD, TNO, RoadScene, LLVIP, Harvard, SICE, MEFB, RealMFF, MFI-WHU, Lytro,
PanCollection, Chikusei or Pavia. Train photos: {train}; test photos: {test}.

vif   MSRS layout {{train,test}}/{{vi,ir,Segmentation_labels}}. "ir" is a thermal-like rendering (smooth
      temperature from low-passed luminance, warm blob-shaped objects, sensor noise and column
      fixed-pattern noise), NOT a real infrared image; "vi" is the photo under uneven low light;
      Segmentation_labels marks the warm objects (class 1).
mif   Harvard layout {{MRI,SPECT}}: "MRI" is the Shepp-Logan phantom (random pose) textured with a
      real photograph; "SPECT" a simulated low-resolution functional uptake map in a rainbow colour map.
mef   {{ue,oe,gt}}: under/over exposures of an HDR scene made from one photo (illumination layer expanded
      to 12-20 stops, veiling glare), bracketed so 25-55 % of the over exposure clips (Y >= 250) and 5-30 %
      of the under exposure is crushed (Y <= 5) as in real SICE/MEFB/U2Fusion pairs; shot + read noise,
      sensor clipping, sRGB camera response, 8-bit; gt = the original photo.
mff   {{far,near,gt}}: complementary Gaussian defocus blended by a smooth random focus map;
      gt = the sharp photo.
pan   PanCollection-like h5 (gt, ms, lms, pan; [N, C, H, W] float DN, 11-bit, max 2047, ratio 4,
      64x64 patches): 8 WorldView-3-like bands and a broad PAN integrated from per-pixel spectra
      simulated from the photo (smooth visible bases, a vegetation-like red edge, a random spectral
      tilt); Wald protocol: full-resolution PAN (4x) and MS are low-passed with a Gaussian MTF
      (Nyquist gain 0.3 MS, 0.15 PAN) and decimated by 4.
hmif  h5 (GT, LRHSI, RGB; uint16 12-bit DN, max 4095, ratio 4, 64x64; the reader makes HSI_up by
      bicubic upsampling): a Chikusei-like 128-band 363-1018 nm cube from the same spectral model;
      RGB = HR-MSI through 3 Gaussian responses; LRHSI = Gaussian-MTF degraded cube.
"""


# ----------------------------------------------------------------------------- helpers
def _photo(name: str) -> np.ndarray:
    """A bundled skimage photograph as float64 HxWx3 in [0, 1] (offline: files ship in the wheel)."""
    import skimage.data

    img = np.asarray(getattr(skimage.data, name)())
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return img[:, :, :3].astype(np.float64) / 255.0


def _crop(img: np.ndarray, out_hw: tuple[int, int], rng: np.random.Generator, scale=(0.45, 0.9)) -> np.ndarray:
    """Random window with the aspect of ``out_hw`` (``scale`` of the largest fitting one), resized by Pillow."""
    from PIL import Image

    h, w = img.shape[:2]
    ar = out_hw[1] / out_hw[0]
    ch_max = min(h, int(w / ar))
    ch = max(8, int(ch_max * rng.uniform(*scale)))
    cw = min(w, int(round(ch * ar)))
    top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    u8 = (img[top: top + ch, left: left + cw] * 255.0 + 0.5).astype(np.uint8)
    res = Image.fromarray(u8).resize((out_hw[1], out_hw[0]), Image.Resampling.LANCZOS)
    return np.asarray(res, dtype=np.float64) / 255.0


def _smooth_field(rng: np.random.Generator, hw: tuple[int, int], sigma: float) -> np.ndarray:
    """Smooth random field in [0, 1] (Gaussian-filtered white noise, min-max normalised).

    Large sigmas are filtered on a coarser grid and upsampled (cubic), which is much faster."""
    from scipy.ndimage import gaussian_filter, zoom

    k = max(1, int(sigma // 3))
    small = (-(-hw[0] // k), -(-hw[1] // k))
    f = gaussian_filter(rng.standard_normal(small), sigma / k, mode="reflect")
    if k > 1:
        f = zoom(f, (hw[0] / small[0], hw[1] / small[1]), order=3, grid_mode=True, mode="grid-mirror")[: hw[0], : hw[1]]
    return (f - f.min()) / max(f.max() - f.min(), 1e-12)


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    if img.ndim == 2:
        return gaussian_filter(img, sigma, mode="reflect")
    return np.stack([gaussian_filter(img[..., c], sigma, mode="reflect") for c in range(img.shape[2])], axis=-1)


def _luma(rgb: np.ndarray) -> np.ndarray:
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


def _to_u8(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _save_png(path: Path, x: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    arr = x if x.dtype == np.uint8 else _to_u8(x)
    Image.fromarray(arr).save(path, format="PNG", compress_level=6)


def _save_h5(path: Path, arrays: dict[str, np.ndarray], attrs: dict[str, Any]) -> None:
    """h5 without timestamps (``track_times=False``) and with deterministic gzip, so bytes repeat."""
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w", libver="earliest") as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=v, track_times=False, compression="gzip", compression_opts=4, shuffle=True,
                             chunks=(1,) + v.shape[1:])
        for k, v in attrs.items():
            f.attrs[k] = v


def _rng(task: str, split: str, i: int) -> np.random.Generator:
    return np.random.default_rng([SEED, TASK_INDEX[task], 0 if split == "train" else 1, i])


def _photo_for(split: str, i: int, cache: dict[str, np.ndarray]) -> tuple[str, np.ndarray]:
    names = TRAIN_PHOTOS if split == "train" else TEST_PHOTOS
    name = names[i % len(names)]
    if name not in cache:
        cache[name] = _photo(name)
    return name, cache[name]


def _mtf_down(x: np.ndarray, ratio: int, gnyq: float) -> np.ndarray:
    """HxWxC Gaussian-MTF low-pass (response ``gnyq`` at the decimated Nyquist) then decimation."""
    from rwkvfusion_io.spectral import mtf_degrade

    return mtf_degrade(x.transpose(2, 0, 1), ratio, gnyq).transpose(1, 2, 0).astype(np.float64)


# ----------------------------------------------------------------------------- per-task simulators
# MEF exposure statistics of the real test pairs shipped in ../shared/data/mef (U2Fusion dataset1/2 and the
# darkest/brightest frames of the IFCNN sequences, the pair the sequence adapter picks), Y channel on the
# full 0-255 range (U2Fusion's studio-range Y rescaled): fraction of crushed pixels Y <= 5 in the under
# exposure 0.02-0.72 (median 0.10 on U2Fusion, 0.15 over all 13 pairs), fraction of clipped pixels
# Y >= 250 in the over exposure 0.04-0.97 (median 0.44 / 0.47); under-exposure mean level 9-155 (median
# 29 / 34), over-exposure mean 141-252 (median 225); almost no clipped highlights in the under exposure;
# inter-frame gap about 4-7 EV.  The old simulator (+-2-3 EV on the LDR photo) gave 2 % crushed and 4 %
# clipped on the test split: far milder than any real pair.
MEF_CLIP_OVER = (0.25, 0.55)    # target fraction of Y >= 250 in "oe" (real median 0.44-0.47)
MEF_CRUSH_UNDER = (0.05, 0.30)  # target fraction of Y <= 5 in "ue" (real median 0.10-0.15)
MEF_HDR_GAIN = (2.0, 3.0)       # base-layer (illumination) log-contrast expansion of the LDR photo
MEF_FLARE = 0.01                # veiling glare / black floor, linear, relative to the photo's white
MEF_FULL_WELL = 2000.0          # shot noise variance = signal / full well (signal in [0, 1])
MEF_READ_NOISE = 3e-4           # read noise std, linear (about 1 code value in the dark after the sRGB toe)


def _srgb_oetf(e: np.ndarray) -> np.ndarray:
    """sRGB camera response (linear toe, 1/2.4 power), after clipping at sensor saturation."""
    e = np.clip(e, 0.0, 1.0)
    return np.where(e <= 0.0031308, 12.92 * e, 1.055 * np.power(e, 1 / 2.4) - 0.055)


def _srgb_eotf(v: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_srgb_oetf` on [0, 1] (8-bit photo -> linear)."""
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def _exposure_for_fraction(rad: np.ndarray, frac: float, over: bool) -> float:
    """EV at which the noise-free 8-bit frame of ``rad`` has ``frac`` of its Y >= 250 (``over``) or <= 5.

    The fraction is monotone in EV, so bisection (40 halvings of [-16, 16]) finds it; deterministic."""
    lo, hi = -16.0, 16.0
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        y = _luma(_srgb_oetf(rad * 2.0 ** mid) * 255.0)
        f = float((y >= 249.5).mean() if over else (y <= 5.5).mean())
        if (f < frac) == over:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _sim_mef(rng, photo):
    """Under/over exposures of a simulated HDR scene, calibrated to real MEF pairs' clipping statistics.

    1. Scene radiance: the photo is linearised (inverse sRGB), a veiling-glare floor added (real scenes
       have no zero radiance) and its illumination (base) layer - the Gaussian-blurred (sigma 6 px) log
       luminance - expanded by a gain g ~ U(2, 3) about its median while the reflectance detail is kept
       (inverse of Durand-Dorsey base/detail tone mapping): an LDR photo of ~6-8 stops becomes a
       12-20 stop scene, so bright areas (sky, highlights) and shadows are far apart, as in SICE/MEFB.
    2. Bracketing: per scene, the over exposure's EV is solved so a fraction ~ U(0.25, 0.55) of pixels
       clips (Y >= 250) and the under exposure's so ~ U(0.05, 0.30) is crushed (Y <= 5) - the range of
       the real pairs (see MEF_CLIP_OVER / MEF_CRUSH_UNDER); the under exposure clips at most 1 % and
       the pair is at least 2 EV apart (so a night sky gets a darker under exposure than its target).
    3. Sensor + camera: shot noise (full well 2000 e-) and read noise in linear units, so the dark frame
       is the noisy one; clipping at saturation; sRGB response curve; 8-bit.
    gt = the original photo (an ideal detail reference, not a radiometric truth; MEF training ignores it).
    """
    gt = _crop(photo, (192, 192), rng)
    lin = _srgb_eotf(gt) + MEF_FLARE
    gain = rng.uniform(*MEF_HDR_GAIN)
    base = _blur(np.log2(_luma(lin)), 6.0)
    rad = lin * (2.0 ** ((gain - 1.0) * (base - np.median(base))))[..., None]
    p_over, p_under = rng.uniform(*MEF_CLIP_OVER), rng.uniform(*MEF_CRUSH_UNDER)
    ev_o = _exposure_for_fraction(rad, p_over, True)
    # the dark frame keeps its highlights (at most 1 % clipped, as in the real pairs) ...
    ev_u = min(_exposure_for_fraction(rad, p_under, False), _exposure_for_fraction(rad, 0.01, True))
    ev_o = max(ev_o, ev_u + 2.0)  # ... and the bracket spans at least 2 EV (nearly black hubble_deep_field)

    def expose(ev: float) -> np.ndarray:
        e = rad * 2.0 ** ev
        e = e + rng.standard_normal(e.shape) * np.sqrt(np.clip(e, 0, None) / MEF_FULL_WELL + MEF_READ_NOISE ** 2)
        return _srgb_oetf(e)

    return ({"ue": expose(ev_u), "oe": expose(ev_o), "gt": gt},
            {"ev_under": round(ev_u, 4), "ev_over": round(ev_o, 4), "hdr_gain": round(gain, 4),
             "target_crushed_under": round(p_under, 4), "target_clipped_over": round(p_over, 4)})


def _sim_mff(rng, photo):
    """Complementary defocus: a = far focus (sharp where m = 0), b = near focus (sharp where m = 1)."""
    gt = _crop(photo, (192, 192), rng)
    field = _smooth_field(rng, gt.shape[:2], sigma=18.0)
    m = 1.0 / (1.0 + np.exp(-14.0 * (field - 0.5)))[..., None]
    sigma = rng.uniform(1.8, 3.2)
    blur = _blur(gt, sigma)
    near = m * gt + (1 - m) * blur
    far = (1 - m) * gt + m * blur
    return {"far": far, "near": near, "gt": gt}, {"defocus_sigma": round(sigma, 4)}


def _sim_vif(rng, photo):
    """Thermal-like stand-in: warm blobs over a low-passed luminance temperature; visible under low light."""
    vi = _crop(photo, (192, 240), rng)
    hw = vi.shape[:2]
    lum = _luma(vi)
    # warm objects: blobs that favour bright structures of the scene (people, lamps, engines ...)
    hot = (0.65 * _smooth_field(rng, hw, sigma=9.0) + 0.35 * _blur(lum, 4.0)) > 0.62
    soft = _blur(hot.astype(np.float64), 1.5)
    temp = 0.12 + 0.4 * _blur(lum, 2.5) + 0.45 * soft
    temp = temp + 0.01 * rng.standard_normal(hw) + 0.006 * rng.standard_normal((1, hw[1]))
    illum = 0.06 + 0.7 * _smooth_field(rng, hw, sigma=30.0) ** 1.5
    dark = vi ** 1.2 * illum[..., None]
    dark = dark + rng.standard_normal(dark.shape) * 0.01
    return ({"vi": dark, "ir": np.clip(temp, 0, 1), "Segmentation_labels": hot.astype(np.uint8)},
            {"warm_fraction": round(float(hot.mean()), 4)})


_PHANTOM: dict[str, np.ndarray] = {}


def _sim_mif(rng, photo):
    """MRI stand-in: posed, photo-textured Shepp-Logan phantom; SPECT: blurred uptake in a rainbow map."""
    import matplotlib
    import skimage.data
    from scipy.ndimage import affine_transform
    from skimage.transform import resize

    if "p" not in _PHANTOM:
        _PHANTOM["p"] = resize(skimage.data.shepp_logan_phantom(), (128, 128), order=1, anti_aliasing=True)
    p = _PHANTOM["p"]
    ang, sc = np.deg2rad(rng.uniform(-12, 12)), rng.uniform(0.85, 1.0)
    rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]]) / sc
    c = np.array([63.5, 63.5])
    shift = rng.uniform(-4, 4, 2)
    posed = affine_transform(p, rot, offset=c - rot @ c + shift, order=1, mode="constant")
    texture = _luma(_crop(photo, (128, 128), rng))
    mri = posed * (0.75 + 0.5 * texture)
    mri = _blur(mri, 0.6) + 0.01 * rng.standard_normal(mri.shape)
    mri = np.clip(mri / max(mri.max(), 1e-6), 0, 1) * (posed > 0.01)
    support = _blur((posed > 0.01).astype(np.float64), 2.0)
    uptake = (0.3 * (posed > 0.25) + _smooth_field(rng, (128, 128), sigma=6.0) ** 2) * support
    uptake = _blur(uptake, 3.0)
    uptake = uptake / max(uptake.max(), 1e-6)
    rgb = matplotlib.colormaps["jet"](uptake)[..., :3] * np.clip(uptake / 0.08, 0, 1)[..., None]
    return {"MRI": mri, "SPECT": rgb}, {"rotation_deg": round(float(np.rad2deg(ang)), 4), "scale": round(sc, 4)}


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
    nir = 0.6 * _luma(lin) + 2.0 * veg
    edge = 1.0 / (1.0 + np.exp(-(lam - 715.0) / 15.0))
    cube = cube * (1 - edge)[:, None, None] + nir[None] * edge[:, None, None]
    tilt = (_smooth_field(rng, (h, w), sigma=max(h, w) / 8) - 0.5) * 0.6
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

    full = _crop(photo, (4 * size, 4 * size), rng, scale=(0.6, 1.0))
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
    cube = _reflectance(_crop(photo, (size, size), rng, scale=(0.5, 1.0)), lam, rng)
    cube = (cube / max(float(cube.max()), 1e-6)).astype(np.float32)
    msi = _integrate(cube, lam, ((610, 30), (540, 30), (460, 30))).astype(np.float32)
    lr = mtf_degrade(cube, 4, 0.3)
    dn = 4095.0  # stored as 12-bit DN (uint16): a sensor-like quantisation that also keeps the files small
    # no HSI_up: the reader upsamples LRHSI (bicubic) itself, which halves the files
    return {k: np.round(np.clip(v, 0, 1) * dn).astype(np.uint16) for k, v in {"GT": cube, "LRHSI": lr, "RGB": msi}.items()}


# ----------------------------------------------------------------------------- builders
_IMAGE_SIMS = {"mef": _sim_mef, "mff": _sim_mff, "vif": _sim_vif, "mif": _sim_mif}


def _build_images(task: str, out: Path) -> dict[str, Any]:
    cache: dict[str, np.ndarray] = {}
    info: dict[str, Any] = {"task": task, "samples": {}}
    for split, n in COUNTS.items():
        for i in range(n):
            name, photo = _photo_for(split, i, cache)
            files, params = _IMAGE_SIMS[task](_rng(task, split, i), photo)
            sid = f"{i:04d}"
            for role, arr in files.items():
                _save_png(out / split / role / f"{sid}.png", arr)
            info["samples"][f"{split}/{sid}"] = {"photo": name, **params}
    return info


def _build_spectral(task: str, out: Path) -> dict[str, Any]:
    cache: dict[str, np.ndarray] = {}
    info: dict[str, Any] = {"task": task, "samples": {}}
    for split, n in COUNTS.items():
        size = 64
        scenes, names = [], []
        for i in range(n):
            name, photo = _photo_for(split, i, cache)
            rng = _rng(task, split, i)
            scenes.append(_pan_scene(rng, photo, size) if task == "pan" else _hs_scene(rng, photo, size))
            names.append(name)
            info["samples"][f"{split}/{i:04d}"] = {"photo": name}
        arrays = {k: np.stack([s[k] for s in scenes]) for k in scenes[0]}
        attrs = ({"max_value": 2047.0, "ratio": 4, "sensor": "demo-WV3-like",
                  "band_centres_nm": np.array([c for c, _ in WV3_BANDS], np.float64)} if task == "pan"
                 else {"max_value": 4095.0, "ratio": 4, "wavelengths_nm": np.linspace(*HS_RANGE)})
        _save_h5(out / f"{split}.h5", arrays, attrs)
    info["bands"] = len(WV3_BANDS) if task == "pan" else HS_RANGE[2]
    info["b_bands"] = 1 if task == "pan" else 3
    info["ratio"] = 4
    return info


def build_demo_data(root: str | Path, tasks=None) -> dict[str, Any]:
    """(Re)build the demo datasets of ``tasks`` (default all six) under ``root``; returns per-task info.

    Each task is written to a temporary folder and renamed into place, so an interrupted build never
    leaves a half-written task behind. Output is byte-identical across runs.
    """
    root = Path(root)
    tasks = tuple(TASKS if tasks is None else ([tasks] if isinstance(tasks, str) else tasks))
    bad = [t for t in tasks if t not in TASKS]
    if bad:
        raise ValueError(f"build_demo_data: unknown task(s) {bad}; expected some of {TASKS}")
    root.mkdir(parents=True, exist_ok=True)
    (root / "README.txt").write_text(README.format(train=", ".join(TRAIN_PHOTOS), test=", ".join(TEST_PHOTOS)))
    result: dict[str, Any] = {}
    for task in tasks:
        tmp = root / f".{task}.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        info = _build_images(task, tmp) if task in _IMAGE_SIMS else _build_spectral(task, tmp)
        (tmp / "info.json").write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
        dest = root / task
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
        result[task] = {"root": str(dest), "train": COUNTS["train"], "test": COUNTS["test"],
                        **{k: v for k, v in info.items() if k != "samples"}}
    return result


def ensure_demo_data(root: str | Path, tasks=None) -> dict[str, Any]:
    """Build only the tasks whose ``<root>/<task>/info.json`` is missing (what training calls on demand)."""
    root = Path(root)
    tasks = tuple(TASKS if tasks is None else ([tasks] if isinstance(tasks, str) else tasks))
    missing = [t for t in tasks if not (root / t / "info.json").is_file()]
    return build_demo_data(root, missing) if missing else {}


def register(app) -> None:
    """Add ``demo-data`` to the ``python -m fusion`` typer app."""
    import typer

    @app.command("demo-data")
    def demo_data(out: Path = typer.Option(Path("demo_data"), "--out", help="output folder"),
                  task: list[str] = typer.Option(None, "--task", help="task(s) to build (default: all six)")) -> None:
        """Build the embedded demo datasets (deterministic stand-ins made from skimage photos)."""
        try:
            info = build_demo_data(out, task or None)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from exc
        for t, d in info.items():
            typer.echo(f"{t:5s} {d['train']} train / {d['test']} test -> {d['root']}")
        typer.echo(f"demo data (stand-ins for the real datasets, see {Path(out) / 'README.txt'}) ready")
