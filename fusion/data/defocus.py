"""Synthetic multi-focus pairs from real all-in-focus photographs (MFF training without a real MFF set).

Each photograph I (float RGB in [0, 1]) gets a random focus map m (smooth random regions, ``focus_mask``) and
two Gaussian defocus levels; ``defocus_pair`` returns the far-focused source A = blur_f(m) * blur(I, s_f) +
(1 - blur_f(m)) * I (the "foreground" m out of focus, its blur spreading over the boundary as a real defocused
foreground does), the near-focused source B = m_e * I + (1 - m_e) * blur(I, s_b) and the ground truth I.
``DefocusDataset`` serves them with the sample dict of ``fusion.data.datasets`` ("a" = far, "b" = near, "gt"):
training samples draw a new map and blur each time (seeded from the trainer's per-sample RNG), validation
samples are fixed per photograph. Photographs are the images of folders named like a visible role
(``FOCUS_FOLDERS``: e.g. ``vi/`` of the VIF training sets) under the training roots; one dataset per
folder, validation carved per dataset as in ``fusion.data.multi``.
"""
from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2  # Gaussian blur and bicubic resize: several times faster than scipy.ndimage on these sizes
import numpy as np
import torch
from torch.utils.data import Dataset

from fusion.config import TaskConfig
from fusion.data.augment import augment_sample
from rwkvfusion_io.images import SampleError, read_image, split_y_cbcr
from rwkvfusion_io.layouts import images_by_stem

FOCUS_FOLDERS = ("vi", "vis", "visible", "rgb", "all_in_focus", "images")
SIGMA_RANGE = (0.8, 4.0)      # Gaussian defocus sigma in pixels of the photograph, drawn per side


@dataclass(frozen=True)
class FocusRecord:
    """One all-in-focus photograph: ``id`` = "<dataset>/<stem>"."""

    id: str
    path: Path

    def paths(self) -> dict[str, str]:
        return {"a": str(self.path), "b": str(self.path), "gt": str(self.path)}


def focus_mask(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A random binary focus map [H, W] float32: bicubic upsampling of a 2..6 x 2..6 uniform grid, thresholded at
    a random quantile in [0.3, 0.7] (one to a few smooth regions, covering 30-70% of the image)."""
    gh, gw = (int(g) for g in rng.integers(2, 7, size=2))
    low = rng.random((gh, gw)).astype(np.float32)
    up = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
    return (up > np.quantile(up, rng.uniform(0.3, 0.7))).astype(np.float32)


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    out = cv2.GaussianBlur(x, (0, 0), sigmaX=float(sigma), sigmaY=float(sigma), borderType=cv2.BORDER_REFLECT)
    return out.reshape(x.shape)


def defocus_pair(img: np.ndarray, rng: np.random.Generator, sigma_range: tuple[float, float] = SIGMA_RANGE,
                 mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """img [H, W, C] float32 in [0, 1] -> (far A, near B, focus map m [H, W]); A and B are [H, W, C].

    The map m marks what is in focus in B (and out of focus in A); ``mask`` fixes it (tests)."""
    h, w = img.shape[:2]
    m = focus_mask(h, w, rng) if mask is None else mask.astype(np.float32)
    s_far, s_near = (float(s) for s in rng.uniform(*sigma_range, size=2))
    m_far = _blur(m, s_far)[..., None]            # the blurred foreground spreads over its boundary in A
    m_near = _blur(m, 0.5)[..., None]             # B: an antialiased cut, background blurred by s_near
    far = m_far * _blur(img, s_far) + (1.0 - m_far) * img
    near = m_near * img + (1.0 - m_near) * _blur(img, s_near)
    return np.clip(far, 0, 1).astype(np.float32), np.clip(near, 0, 1).astype(np.float32), m


def find_focus_folders(roots: Sequence[str | Path]) -> list[tuple[str, list[Path]]]:
    """(dataset name, sorted image paths) of every ``FOCUS_FOLDERS`` folder under ``roots`` (depth <= 4); the
    name is the folder's parent relative to its root (``msrs`` for ``train/vif/msrs/vi``)."""
    from fusion.data.multi import walk_roots

    def probe(folder: Path) -> list[Path]:
        return list(images_by_stem(folder).values()) if folder.name.lower() in FOCUS_FOLDERS else []

    found = [(name.rpartition("/")[0] or folder.parent.name, images)
             for name, folder, images in walk_roots(roots, probe)]
    if not found:
        raise ValueError(f"no all-in-focus photographs under {[str(r) for r in roots]} (folders named "
                         f"{', '.join(FOCUS_FOLDERS)})")
    names = [n for n, _ in found]
    if len(set(names)) != len(names):
        raise ValueError(f"two photograph folders share a name: {names}; pass roots with distinct folder names")
    return found


class DefocusDataset(Dataset):
    """MFF samples made from the photographs under ``roots`` (split "train" or "val"); like ``MultiDataset``:
    ``datasets`` (name, size, weight), ``sample_weights``, ``ids``, ``samples`` (``FocusRecord``)."""

    task = "mff"

    def __init__(self, roots: Sequence[str | Path], split: str = "train", *, cfg: TaskConfig, train: bool = False
                 ) -> None:
        from fusion.data.multi import split_groups, weight_for

        if split not in ("train", "val"):
            raise ValueError(f"DefocusDataset split must be 'train' or 'val', got {split!r}")
        self.split, self.cfg, self.train = split, cfg, train
        self.samples: list[FocusRecord] = []
        self.datasets: list[tuple[str, int, float]] = []
        weights = dict(cfg.data.dataset_weights)
        for name, paths in find_focus_folders(roots):
            val = split_groups((p.stem for p in paths), float(cfg.data.val_fraction), cfg.data.val_seed)
            keep = [FocusRecord(f"{name}/{p.stem}", p) for p in paths if (p.stem in val) == (split == "val")]
            if keep:
                self.samples.extend(keep)
                self.datasets.append((name, len(keep), weight_for(name, weights)))
        if not self.samples:
            raise ValueError(f"{[str(r) for r in roots]}: the {split} split of the photographs is empty")
        self.skipped: list[tuple[str, str]] = []

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.samples]

    @property
    def sample_weights(self) -> list[float]:
        per = {name: w / n for name, n, w in self.datasets}
        return [per[r.id.rsplit("/", 1)[0]] for r in self.samples]

    def guidance_summary(self) -> dict[str, Any]:
        return {"datasets": {n: k for n, k, _ in self.datasets}, "samples": len(self), "unannotated": len(self)}

    def __len__(self) -> int:
        return len(self.samples)

    def _window(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Training: a random window a little larger than the crop (the crop is taken by ``augment_sample``), so
        large photographs are not blurred whole for one crop."""
        crop = self.cfg.data.crop_size
        if crop is None:
            return img
        side = int(np.ceil(max(crop) * 1.25))
        h, w = img.shape[:2]
        y0 = int(rng.integers(0, h - side + 1)) if h > side else 0
        x0 = int(rng.integers(0, w - side + 1)) if w > side else 0
        return img[y0:y0 + side, x0:x0 + side]

    def __getitem__(self, index: int) -> dict[str, Any]:
        rec = self.samples[index]
        if self.train:  # seeded from the global torch RNG, which the trainer seeds per (seed, epoch, index)
            seed = int(torch.randint(0, 2**62, (1,)))
        else:
            seed = zlib.crc32(f"{self.cfg.data.val_seed}/{rec.id}".encode())
        rng = np.random.default_rng(seed)
        try:
            img = read_image(rec.path)
        except SampleError as exc:
            raise SampleError(f"sample {rec.id!r}: {exc}", sample_id=rec.id, path=rec.path) from exc
        if self.train:
            img = self._window(img, rng)
        far, near, _ = defocus_pair(img, rng)
        (ya, ca), (yb, cb), (yg, cg) = split_y_cbcr(far), split_y_cbcr(near), split_y_cbcr(img)
        sample: dict[str, Any] = {"id": rec.id, "a": torch.from_numpy(ya), "b": torch.from_numpy(yb),
                                  "cbcr_a": torch.from_numpy(ca), "cbcr_b": torch.from_numpy(cb),
                                  "gt": torch.from_numpy(yg), "gt_cbcr": torch.from_numpy(cg), "paths": rec.paths()}
        if self.train:
            g = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
            sample = augment_sample(sample, "mff", self.cfg, g)
        return sample


__all__ = ["FOCUS_FOLDERS", "SIGMA_RANGE", "FocusRecord", "focus_mask", "defocus_pair", "find_focus_folders",
           "DefocusDataset"]
