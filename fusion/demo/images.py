"""Demo stand-ins for the image-fusion tasks: MEF exposure brackets of a simulated HDR scene, MFF complementary
defocus, a thermal-like VIF rendering and a phantom-based MRI/SPECT pair."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fusion.demo.common import COUNTS, blur, crop, photo_for, sample_rng, save_png, smooth_field
from rwkvfusion_io.color import luma

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
        y = luma(_srgb_oetf(rad * 2.0 ** mid) * 255.0)
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
    gt = crop(photo, (192, 192), rng)
    lin = _srgb_eotf(gt) + MEF_FLARE
    gain = rng.uniform(*MEF_HDR_GAIN)
    base = blur(np.log2(luma(lin)), 6.0)
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
    gt = crop(photo, (192, 192), rng)
    field = smooth_field(rng, gt.shape[:2], sigma=18.0)
    m = 1.0 / (1.0 + np.exp(-14.0 * (field - 0.5)))[..., None]
    sigma = rng.uniform(1.8, 3.2)
    blurred = blur(gt, sigma)
    near = m * gt + (1 - m) * blurred
    far = (1 - m) * gt + m * blurred
    return {"far": far, "near": near, "gt": gt}, {"defocus_sigma": round(sigma, 4)}


def _sim_vif(rng, photo):
    """Thermal-like stand-in: warm blobs over a low-passed luminance temperature; visible under low light."""
    vi = crop(photo, (192, 240), rng)
    hw = vi.shape[:2]
    lum = luma(vi)
    # warm objects: blobs that favour bright structures of the scene (people, lamps, engines ...)
    hot = (0.65 * smooth_field(rng, hw, sigma=9.0) + 0.35 * blur(lum, 4.0)) > 0.62
    soft = blur(hot.astype(np.float64), 1.5)
    temp = 0.12 + 0.4 * blur(lum, 2.5) + 0.45 * soft
    temp = temp + 0.01 * rng.standard_normal(hw) + 0.006 * rng.standard_normal((1, hw[1]))
    illum = 0.06 + 0.7 * smooth_field(rng, hw, sigma=30.0) ** 1.5
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
    texture = luma(crop(photo, (128, 128), rng))
    mri = posed * (0.75 + 0.5 * texture)
    mri = blur(mri, 0.6) + 0.01 * rng.standard_normal(mri.shape)
    mri = np.clip(mri / max(mri.max(), 1e-6), 0, 1) * (posed > 0.01)
    support = blur((posed > 0.01).astype(np.float64), 2.0)
    uptake = (0.3 * (posed > 0.25) + smooth_field(rng, (128, 128), sigma=6.0) ** 2) * support
    uptake = blur(uptake, 3.0)
    uptake = uptake / max(uptake.max(), 1e-6)
    rgb = matplotlib.colormaps["jet"](uptake)[..., :3] * np.clip(uptake / 0.08, 0, 1)[..., None]
    return {"MRI": mri, "SPECT": rgb}, {"rotation_deg": round(float(np.rad2deg(ang)), 4), "scale": round(sc, 4)}


IMAGE_SIMS = {"mef": _sim_mef, "mff": _sim_mff, "vif": _sim_vif, "mif": _sim_mif}


def build_images(task: str, out: Path) -> dict[str, Any]:
    cache: dict[str, np.ndarray] = {}
    info: dict[str, Any] = {"task": task, "samples": {}}
    for split, n in COUNTS.items():
        for i in range(n):
            name, photo = photo_for(split, i, cache)
            files, params = IMAGE_SIMS[task](sample_rng(task, split, i), photo)
            sid = f"{i:04d}"
            for role, arr in files.items():
                save_png(out / split / role / f"{sid}.png", arr)
            info["samples"][f"{split}/{sid}"] = {"photo": name, **params}
    return info
