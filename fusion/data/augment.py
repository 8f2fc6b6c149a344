"""Training augmentations of the paper's supplement, section 1, applied identically to sources, ground truth and masks.

Every size comes from the task config's data section (``cfg.data``, ``fusion.config``):
- VIF: random crop (target aspect, area scale ``crop_scale`` [0.5, 1]) resized to ``crop_size`` (224x280).
- MEF/MFF: RandomResizedCrop to ``crop_size`` (256x256), scale ``crop_scale`` [0.8, 1], aspect ratio
  ``crop_ratio`` [0.8, 1.4] (torchvision's sampling algorithm).
- MIF: uncropped (``crop_size`` None).
- pan/HMIF: random ``crop_size`` (64x64) patch, its corner on the ``ratio`` grid so ``ms`` is cropped alike.
- MEF, optional (``exposure_gain`` > 1, not in the paper): the exposure push of ``push_exposures``.
- Fusion tasks, optional (``flip``, not in the paper): a left-right mirror of half the crops (``random_hflip``).
Images resize bilinearly (antialiased), masks and class maps by nearest neighbour. All randomness comes
from the ``torch.Generator`` passed in.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from fusion.config import TaskConfig

IMAGE_KEYS = ("a", "b", "gt", "cbcr_a", "cbcr_b", "gt_cbcr", "lms")
MASK_KEYS = ("mask",)


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g))


def _randint(g: torch.Generator, lo: int, hi: int) -> int:
    """Integer in [lo, hi] inclusive."""
    return int(torch.randint(lo, hi + 1, (), generator=g))


def random_resized_crop_box(h: int, w: int, scale: tuple[float, float], ratio: tuple[float, float],
                            g: torch.Generator) -> tuple[int, int, int, int]:
    """torchvision ``RandomResizedCrop.get_params``: (top, left, height, width); ratio is width/height."""
    area = h * w
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * _uniform(g, *scale)
        ar = math.exp(_uniform(g, *log_r))
        cw, ch = int(round(math.sqrt(target * ar))), int(round(math.sqrt(target / ar)))
        if 0 < cw <= w and 0 < ch <= h:
            return _randint(g, 0, h - ch), _randint(g, 0, w - cw), ch, cw
    in_ratio = w / h  # fallback: central crop clamped to the ratio range
    if in_ratio < min(ratio):
        cw, ch = w, int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        ch, cw = h, int(round(h * max(ratio)))
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def random_aspect_crop_box(h: int, w: int, out_hw: tuple[int, int], scale: tuple[float, float],
                           g: torch.Generator) -> tuple[int, int, int, int]:
    """A crop with the aspect of ``out_hw`` covering ``scale`` of the largest such window, random position."""
    target_ar = out_hw[1] / out_hw[0]
    ch_max = min(h, int(w / target_ar))
    s = math.sqrt(_uniform(g, *scale))
    ch = max(1, min(h, int(round(ch_max * s))))
    cw = max(1, min(w, int(round(ch * target_ar))))
    return _randint(g, 0, h - ch), _randint(g, 0, w - cw), ch, cw


def _resize(x: torch.Tensor, size: tuple[int, int], nearest: bool) -> torch.Tensor:
    """[C, H, W] or [H, W] -> same rank at ``size``; class maps keep their dtype."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    squeeze = x.dim() == 2
    t = x[None, None] if squeeze else x[None]
    if nearest:
        out = F.interpolate(t.float(), size=size, mode="nearest-exact").to(x.dtype)
    else:
        out = F.interpolate(t.float(), size=size, mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
    return out[0, 0] if squeeze else out[0]


def crop_resize(sample: dict[str, Any], box: tuple[int, int, int, int], size: tuple[int, int] | None) -> dict[str, Any]:
    """Crop every spatial entry of ``sample`` to ``box`` (top, left, h, w) and resize it to ``size``."""
    top, left, ch, cw = box
    out = dict(sample)
    for k in IMAGE_KEYS + MASK_KEYS:
        v = sample.get(k)
        if isinstance(v, torch.Tensor):
            v = v[..., top: top + ch, left: left + cw]
            out[k] = _resize(v, size, nearest=k in MASK_KEYS) if size is not None else v.contiguous()
    return out


def random_patch(sample: dict[str, Any], size: tuple[int, int], ratio: int, g: torch.Generator) -> dict[str, Any]:
    """pan/HMIF: a ``size`` patch of gt/lms/a/b with its corner on the ``ratio`` grid; ``ms`` cropped alike."""
    h, w = sample["b"].shape[-2:]
    ph, pw = min(size[0], h), min(size[1], w)
    ph, pw = ph // ratio * ratio, pw // ratio * ratio
    if (ph, pw) == (h, w):
        return sample
    top = _randint(g, 0, (h - ph) // ratio) * ratio
    left = _randint(g, 0, (w - pw) // ratio) * ratio
    out = crop_resize(sample, (top, left, ph, pw), None)
    if isinstance(sample.get("ms"), torch.Tensor):
        out["ms"] = sample["ms"][:, top // ratio: (top + ph) // ratio, left // ratio: (left + pw) // ratio].contiguous()
    return out


def augment_sample(sample: dict[str, Any], task: str, cfg: TaskConfig, generator: torch.Generator | None = None
                   ) -> dict[str, Any]:
    """Apply the task's training augmentation (module docstring, sizes from ``cfg.data``) to one sample dict."""
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    data = cfg.data
    if data.crop_size is None:  # MIF: uncropped
        return sample
    size = (int(data.crop_size[0]), int(data.crop_size[1]))
    h, w = sample["a"].shape[-2:]
    if task in ("pan", "hmif"):
        return random_patch(sample, size, int(data.ratio), g)
    if data.crop_scale is None:
        raise ValueError(f"augment_sample: task {task!r} crops with cfg.data.crop_scale, which is None")
    if task == "vif":
        out = crop_resize(sample, random_aspect_crop_box(h, w, size, data.crop_scale, g), size)
    else:
        if data.crop_ratio is None:
            raise ValueError(f"augment_sample: task {task!r} crops with cfg.data.crop_ratio, which is None")
        out = crop_resize(sample, random_resized_crop_box(h, w, data.crop_scale, data.crop_ratio, g), size)
        if task == "mef" and data.exposure_gain > 1.0:
            out = push_exposures(out, data.exposure_gain, g)
    return random_hflip(out, g) if data.flip else out


def random_hflip(sample: dict[str, Any], g: torch.Generator) -> dict[str, Any]:
    """Every spatial entry mirrored left-right with probability 1/2 (one draw from ``g`` per sample)."""
    if float(torch.rand((), generator=g)) >= 0.5:
        return sample
    out = dict(sample)
    for k in IMAGE_KEYS + MASK_KEYS:
        if isinstance(sample.get(k), torch.Tensor):
            out[k] = sample[k].flip(-1)
    return out


def push_exposures(sample: dict[str, Any], gain: float, g: torch.Generator) -> dict[str, Any]:
    """Darken the under-exposed luma ``a`` and brighten the over-exposed ``b`` [1, H, W] in [0, 1].

    With probability 1/2 each: a * u, u log-uniform in [1/gain, 1]; min(b * v, 1), v in [1, gain]. Scaling
    gamma-encoded luma scales the scene radiance (by the gain to the power 2.2), so this is a longer or
    shorter exposure of the same scene, with the sensor's clipping at white. Chroma is left as it is.
    """
    out = dict(sample)
    lg = math.log(gain)
    if float(torch.rand((), generator=g)) < 0.5:
        out["a"] = sample["a"] * math.exp(-lg * float(torch.rand((), generator=g)))
    if float(torch.rand((), generator=g)) < 0.5:
        out["b"] = (sample["b"] * math.exp(lg * float(torch.rand((), generator=g)))).clamp_(max=1.0)
    return out
