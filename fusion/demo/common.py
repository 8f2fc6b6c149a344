"""Shared pieces of the demo simulators: the bundled photographs, seeded generators, filters and writers."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rwkvfusion_io.tasks import TASKS

SEED = 20240601
TRAIN_PHOTOS = ("astronaut", "chelsea", "immunohistochemistry", "retina", "hubble_deep_field")
TEST_PHOTOS = ("coffee", "rocket")
COUNTS = {"train": 12, "test": 4}
TASK_INDEX = {t: i for i, t in enumerate(TASKS)}


def photo(name: str) -> np.ndarray:
    """A bundled skimage photograph as float64 HxWx3 in [0, 1] (offline: files ship in the wheel)."""
    import skimage.data

    img = np.asarray(getattr(skimage.data, name)())
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return img[:, :, :3].astype(np.float64) / 255.0


def crop(img: np.ndarray, out_hw: tuple[int, int], rng: np.random.Generator, scale=(0.45, 0.9)) -> np.ndarray:
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


def smooth_field(rng: np.random.Generator, hw: tuple[int, int], sigma: float) -> np.ndarray:
    """Smooth random field in [0, 1] (Gaussian-filtered white noise, min-max normalised).

    Large sigmas are filtered on a coarser grid and upsampled (cubic), which is much faster."""
    from scipy.ndimage import gaussian_filter, zoom

    k = max(1, int(sigma // 3))
    small = (-(-hw[0] // k), -(-hw[1] // k))
    f = gaussian_filter(rng.standard_normal(small), sigma / k, mode="reflect")
    if k > 1:
        f = zoom(f, (hw[0] / small[0], hw[1] / small[1]), order=3, grid_mode=True, mode="grid-mirror")[: hw[0], : hw[1]]
    return (f - f.min()) / max(f.max() - f.min(), 1e-12)


def blur(img: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    if img.ndim == 2:
        return gaussian_filter(img, sigma, mode="reflect")
    return np.stack([gaussian_filter(img[..., c], sigma, mode="reflect") for c in range(img.shape[2])], axis=-1)


def to_u8(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def save_png(path: Path, x: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    arr = x if x.dtype == np.uint8 else to_u8(x)
    Image.fromarray(arr).save(path, format="PNG", compress_level=6)


def save_h5(path: Path, arrays: dict[str, np.ndarray], attrs: dict[str, Any]) -> None:
    """h5 without timestamps (``track_times=False``) and with deterministic gzip, so bytes repeat."""
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w", libver="earliest") as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=v, track_times=False, compression="gzip", compression_opts=4, shuffle=True,
                             chunks=(1,) + v.shape[1:])
        for k, v in attrs.items():
            f.attrs[k] = v


def sample_rng(task: str, split: str, i: int) -> np.random.Generator:
    return np.random.default_rng([SEED, TASK_INDEX[task], 0 if split == "train" else 1, i])


def photo_for(split: str, i: int, cache: dict[str, np.ndarray]) -> tuple[str, np.ndarray]:
    names = TRAIN_PHOTOS if split == "train" else TEST_PHOTOS
    name = names[i % len(names)]
    if name not in cache:
        cache[name] = photo(name)
    return name, cache[name]
