"""Pansharpening / HMIF sources: PanCollection-style h5 files and full-resolution .mat scenes.

Every sample is a dict of float32 arrays [C, H, W] in [0, 1] (DN divided by ``max_value``):
``gt`` (reference, when known), ``ms`` (low-res MS/HS, H/ratio), ``lms`` (``ms`` upsampled to the
PAN grid), ``b`` (PAN [1, H, W] for pan; HR-MSI [c, H, W] for hmif).

h5 key conventions accepted (arrays [N, C, H, W]):
- PanCollection: ``gt``, ``ms``, ``lms``, ``pan`` (DN; WV3/QB 11-bit -> 2047, GF2 10-bit -> 1023).
- HMIF (CAVE/Harvard/Chikusei h5 of the same community): ``GT``, ``LRHSI``, ``HSI_up``, ``RGB``/``HRMSI``
  (in [0, 1], or DN with a ``max_value`` file attribute).
.mat scenes (``scipy.io.loadmat``) are full resolution; Wald's protocol makes the reduced-resolution
pair: the original MS/HS becomes ``gt``, MS and PAN/HR-MSI are low-passed with an MTF-like Gaussian and
decimated by ``ratio``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rwkvfusion_io.images import SampleError, check_finite

H5_KEYS = {  # role -> accepted names, first found wins
    "gt": ("gt", "GT", "HRHSI", "hrhsi"),
    "ms": ("ms", "LRHSI", "lrhsi", "lrms"),
    "lms": ("lms", "HSI_up", "hsi_up", "up"),
    "b": ("pan", "RGB", "HRMSI", "hrmsi", "rgb", "msi"),
}
MAT_MS_KEYS = ("I_MS", "I_MS_LR", "MS", "ms", "MSim")
MAT_PAN_KEYS = ("I_PAN", "PAN", "pan", "PCim")
MAT_HS_KEYS = ("HSim", "HS", "hs", "I_HS", "chikusei", "pavia", "paviaU", "pavia_u", "paviaC", "data", "img")


def infer_max_value(arr: np.ndarray, bits: int | None = None) -> float:
    """Dynamic range (the DN of 1.0): ``2**bits - 1`` when known; data in [0, 1] -> 1; small non-integer
    data (reflectance up to 4) -> its maximum; else the smallest of 255, 1023, 2047, 4095, 65535 that covers
    it (PanCollection: WV3/QB 11-bit 2047, GF2 10-bit 1023)."""
    if bits:
        return float(2 ** int(bits) - 1)
    top = float(np.nanmax(arr)) if arr.size else 1.0
    if top <= 1.0:
        return 1.0
    if top <= 4.0 and not np.array_equal(arr, np.round(arr)):
        return top
    for m in (255.0, 1023.0, 2047.0, 4095.0, 65535.0):
        if top <= m * 1.0001:
            return m
    return top


def mtf_gaussian_sigma(ratio: int, gnyq: float = 0.3) -> float:
    """Gaussian whose frequency response at the decimated Nyquist 1/(2 ratio) equals ``gnyq``."""
    return float(ratio * np.sqrt(-2.0 * np.log(gnyq)) / np.pi)


def mtf_degrade(x: np.ndarray, ratio: int, gnyq: float = 0.3) -> np.ndarray:
    """[C, H, W] -> [C, H/ratio, W/ratio]: MTF-matched Gaussian low-pass then decimation (Wald protocol)."""
    from scipy.ndimage import gaussian_filter

    sigma = mtf_gaussian_sigma(ratio, gnyq)
    lp = np.stack([gaussian_filter(c.astype(np.float64), sigma, mode="reflect") for c in x])
    off = ratio // 2
    return lp[:, off::ratio, off::ratio][:, : x.shape[1] // ratio, : x.shape[2] // ratio].astype(np.float32)


def upsample(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """[C, h, w] -> [C, H, W] bicubic (the ``lms`` of PanCollection)."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None]
    return F.interpolate(t, size=size, mode="bicubic", align_corners=False)[0].numpy()


def usable_sensor(sensor: str | None, bands: int) -> str | None:
    """``sensor`` as a key of Vivone's MTF table when it is known and has ``bands`` bands, else None (generic
    gains), so a scene's Wald degradation, MTF-GLP-HPM and the metrics all use the same filters."""
    from rwkvfusion_io import wald

    try:
        key = wald.canonical_sensor(sensor)
        wald.sensor_gains(key, bands)
    except ValueError:
        return None
    return key


def wald_reduce(ms: np.ndarray, b: np.ndarray, ratio: int, sensor: str | None = None) -> dict[str, np.ndarray]:
    """Reduced-resolution sample from full-resolution ``ms`` [C, h, w] and ``b`` [c, h*ratio, w*ratio].

    ``rwkvfusion_io.wald.reduced_resolution_pair`` (sensor MTF gains of Vivone's toolbox, generic gains when the
    sensor is unknown or its band count differs; interp23tap/bicubic ``lms``).
    """
    from rwkvfusion_io import wald

    h, w = ms.shape[1] // ratio * ratio, ms.shape[2] // ratio * ratio
    ms = ms[:, :h, :w]
    b = b[:, : h * ratio, : w * ratio]
    key = usable_sensor(sensor, ms.shape[0])
    pan = b[0] if b.shape[0] == 1 else b.transpose(1, 2, 0)
    out = wald.reduced_resolution_pair(ms.transpose(1, 2, 0), pan, ratio, key)
    chw = {k: np.asarray(v, dtype=np.float32) for k, v in out.items()}
    chw = {k: (v[None] if v.ndim == 2 else v.transpose(2, 0, 1)) for k, v in chw.items()}
    return {"gt": chw["gt"], "ms": chw["ms"], "lms": chw["lms"], "b": chw["pan"]}


SPLIT_WORDS = ("train", "training", "val", "valid", "validation", "test", "testing")


def file_split(path: Path) -> str:
    """The split a container's file name names (its first token in ``SPLIT_WORDS``: ``train_wv3.h5`` ->
    ``train``), else ``"all"``."""
    return next((t for t in re.split(r"[^a-z0-9]+", Path(path).stem.lower()) if t in SPLIT_WORDS), "all")


@dataclass
class SpectralRecord:
    """One spectral sample: index ``index`` of an h5 file, or a whole .mat scene (``index`` None)."""

    id: str
    path: Path
    index: int | None = None
    rows: tuple[int, int] | None = None  # row range (MS grid) of a region of the scene (train/val/test)
    cols: tuple[int, int] | None = None  # column range (MS grid) of a region of a paired scene
    file_max: float | None = None        # DN range of the h5 file this sample comes from
    split: str = "all"                   # the file name's split, or the region of a single cube
    bands: int | None = None             # MS/HS bands of a .mat scene (known at listing)
    sensor: str | None = None            # its sensor as a key of the MTF table (``usable_sensor``), None = generic

    @property
    def key(self) -> str:
        """``"<split>/<id>"``: the sample's ``sample_id`` in an annotation manifest."""
        return f"{self.split}/{self.id}"

    def __str__(self) -> str:
        return f"{self.id} ({self.path}{'' if self.index is None else f'[{self.index}]'})"


def _first(keys, names) -> str | None:
    for n in names:
        if n in keys:
            return n
    return None


def list_h5(path: Path, task: str) -> list[SpectralRecord]:
    """One record per sample of an h5 file; ``file_max`` holds the file's DN range (see ``h5_max_value``)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            key = _first(f.keys(), H5_KEYS["lms"]) or _first(f.keys(), H5_KEYS["ms"])
            if key is None:
                raise SampleError(f"{path}: no ms/lms dataset (keys {sorted(f.keys())}; expected "
                                  f"{H5_KEYS['ms']} / {H5_KEYS['lms']})", path=path)
            n = int(f[key].shape[0])
            fmax = h5_max_value(f)
    except OSError as exc:
        raise SampleError(f"{path}: cannot open h5 file ({exc})", path=path) from exc
    return [SpectralRecord(f"{path.stem}_{i:05d}", path, i, file_max=fmax, split=file_split(path)) for i in range(n)]


def h5_max_value(f, probe: int = 256) -> float:
    """DN of 1.0 for a whole h5 file: its ``max_value`` attribute, else inferred (``infer_max_value``) from the
    ms/pan of its first ``probe`` samples, so every sample of a file is scaled alike (WV3/QB 2047, GF2 1023)."""
    if "max_value" in f.attrs:
        return float(f.attrs["max_value"])
    vals = [np.asarray(f[k][:probe], dtype=np.float32).ravel()
            for k in (_first(f.keys(), H5_KEYS["ms"]), _first(f.keys(), H5_KEYS["b"])) if k is not None]
    return infer_max_value(np.concatenate(vals)) if vals else 1.0


def read_h5(rec: SpectralRecord, task: str, max_value: float | None, ratio: int) -> dict[str, np.ndarray]:
    """One PanCollection/HMIF h5 sample -> {gt?, ms, lms, b} [C, H, W] in [0, 1] and its ``max_value``."""
    import h5py

    out: dict[str, np.ndarray] = {}
    with h5py.File(rec.path, "r") as f:
        for role, names in H5_KEYS.items():
            k = _first(f.keys(), names)
            if k is not None:
                arr = np.asarray(f[k][rec.index], dtype=np.float32)
                out[role] = arr if arr.ndim == 3 else arr[None]
        mv = max_value or rec.file_max or f.attrs.get("max_value")
    if "b" not in out or ("ms" not in out and "lms" not in out):
        raise SampleError(f"{rec.path}: sample {rec.index} lacks ms/lms or pan/HR-MSI", path=rec.path)
    if "ms" not in out:
        out["ms"] = mtf_degrade(out["lms"], ratio)
    if "lms" not in out:
        out["lms"] = upsample(out["ms"], out["b"].shape[1:])
    mv = float(mv) if mv else infer_max_value(np.concatenate([v.ravel() for v in out.values()]))
    out = {k: v / mv for k, v in out.items()}
    out["lms"] = np.clip(out["lms"], 0.0, 1.0)  # interpolation overshoot; the model's input lives in [0, 1]
    out["max_value"] = np.float32(mv)
    return out


def _mat_bits(d: dict) -> int | None:
    if "L" in d:
        try:
            return int(np.asarray(d["L"]).ravel()[0])
        except (ValueError, IndexError):
            return None
    return None


def _to_chw(arr: np.ndarray) -> np.ndarray:
    arr = np.asarray(arr, dtype=np.float32)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _load_mat_v73(path: Path) -> dict:
    """MATLAB v7.3 (.mat as HDF5): datasets transposed back to MATLAB's row/column order."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return {k: np.asarray(f[k]).T for k in f.keys() if hasattr(f[k], "shape")}
    except OSError as exc:
        raise SampleError(f"{path}: cannot read MATLAB v7.3 .mat file ({exc})", path=path) from exc


def load_mat(path: Path) -> dict:
    import scipy.io as sio
    from scipy.io.matlab import MatReadError

    try:
        d = sio.loadmat(path)
    except NotImplementedError:  # scipy's answer to MATLAB v7.3 files, which are HDF5
        return _load_mat_v73(path)
    except (OSError, ValueError, MatReadError) as exc:
        raise SampleError(f"{path}: cannot read .mat file ({exc})", path=path) from exc
    return {k: v for k, v in d.items() if not k.startswith("__")}


SCENE_SPLITS = ("file", "halves")


def half_region(split: str, h: int, w: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Half-scene protocol on the MS grid [h, w]: ``test`` = bottom half (all columns); the top half trains,
    its rightmost quarter of columns held out as ``val``. Returns (rows, cols) ranges."""
    top = h // 2
    cut = w - w // 4
    regions = {"train": ((0, top), (0, cut)), "val": ((0, top), (cut, w)), "test": ((top, h), (0, w))}
    if split not in regions:
        raise ValueError(f"half-scene protocol: split must be one of {sorted(regions)}, got {split!r}")
    return regions[split]


def mat_sensor(d: dict, path: Path) -> str:
    """A .mat scene's sensor name: its ``sensor`` field, else the file name's first ``_`` token (``WV3_example``)."""
    return str(np.asarray(d["sensor"]).ravel()[0]) if "sensor" in d else Path(path).stem.split("_")[0]


def _bands(shape: tuple[int, ...]) -> int | None:
    return int(shape[2]) if len(shape) == 3 else 1 if len(shape) == 2 else None


def list_mat(path: Path, task: str, split: str, train_fraction: float = 0.6, scene_split: str = "file"
             ) -> list[SpectralRecord]:
    """A .mat scene is one sample; a lone HS cube (Chikusei/Pavia) is split by rows: the top
    ``train_fraction`` for ``train``, the rest for ``test`` (the paper trains on the top region).
    ``scene_split="halves"`` cuts every paired MS/PAN scene by ``half_region`` (train / val / test parts
    of one scene, for test scenes that double as the only training data of their sensor)."""
    if scene_split not in SCENE_SPLITS:
        raise ValueError(f"scene_split must be one of {SCENE_SPLITS}, got {scene_split!r}")
    d = load_mat(path)
    keys = set(d)
    ms_key = _first(keys, MAT_MS_KEYS)
    paired = _first(keys, MAT_PAN_KEYS) is not None or ("HSim" in keys and "MSim" in keys)
    if paired and scene_split == "halves" and ms_key is not None:
        shape = np.shape(d[ms_key])
        rows, cols = half_region(split, int(shape[0]), int(shape[1]))
        return [SpectralRecord(path.stem, path, rows=rows, cols=cols, split=split, bands=_bands(shape),
                               sensor=usable_sensor(mat_sensor(d, path), _bands(shape) or 0))]
    if paired:
        shape = np.shape(d[ms_key or "HSim"]) if (ms_key or "HSim") in d else ()
        return [SpectralRecord(path.stem, path, split=file_split(path), bands=_bands(shape),
                               sensor=usable_sensor(mat_sensor(d, path), _bands(shape) or 0))]
    k = _first(keys, MAT_HS_KEYS) or max((k for k in keys if np.ndim(d[k]) == 3), key=lambda k: d[k].size,
                                           default=None)
    if k is None:
        raise SampleError(f"{path}: no MS/PAN or HS cube found (keys {sorted(keys)})", path=path)
    h = d[k].shape[0]
    cut = int(round(h * train_fraction))
    rows = (0, cut) if split == "train" else (cut, h)
    return [SpectralRecord(f"{path.stem}_{split}", path, rows=rows, split=split)]


def srf_matrix(bands: int, out: int = 3) -> np.ndarray:
    """Smooth Gaussian spectral responses [out, bands] (rows sum to 1) over evenly spaced band centres."""
    centres = np.linspace(0, 1, bands)
    peaks = np.linspace(0.2, 0.8, out)
    m = np.exp(-0.5 * ((centres[None] - peaks[:, None]) / 0.12) ** 2)
    return (m / m.sum(1, keepdims=True)).astype(np.float32)


def crop_region(ms: np.ndarray, b: np.ndarray, rec: SpectralRecord, ratio: int) -> tuple[np.ndarray, np.ndarray]:
    """The record's region of a full-resolution scene: ms [C, h, w] by ``rec.rows/cols``, b [c, rh, rw] alike x ratio."""
    if rec.rows is None and rec.cols is None:
        return ms, b
    (r0, r1), (c0, c1) = rec.rows or (0, ms.shape[1]), rec.cols or (0, ms.shape[2])
    if not (0 <= r0 < r1 <= ms.shape[1] and 0 <= c0 < c1 <= ms.shape[2]):
        raise SampleError(f"{rec.path}: region rows {r0}:{r1} cols {c0}:{c1} outside the MS {ms.shape[1:]}",
                          path=rec.path)
    return ms[:, r0:r1, c0:c1], b[:, r0 * ratio: r1 * ratio, c0 * ratio: c1 * ratio]


def read_mat(rec: SpectralRecord, task: str, ratio: int, max_value: float | None) -> dict[str, np.ndarray]:
    """A full-resolution .mat scene -> Wald reduced-resolution sample in [0, 1]."""
    d = load_mat(rec.path)
    keys = set(d)
    sensor = mat_sensor(d, rec.path)
    bits = _mat_bits(d)
    ms_key, pan_key = _first(keys, MAT_MS_KEYS), _first(keys, MAT_PAN_KEYS)
    if "HSim" in keys:
        ms = _to_chw(d["HSim"])
        if pan_key is not None:  # HySure HS + PAN: ratio from the sizes
            b = _to_chw(d[pan_key])
            ratio = max(1, round(b.shape[1] / ms.shape[1]))
            sample = wald_reduce(ms, b, ratio, sensor)
        else:  # HS + co-registered MS of the same size: the MS plays the HR-MSI, HS degraded by ratio
            b = _to_chw(d["MSim"])
            if b.shape[1:] != ms.shape[1:]:
                raise SampleError(f"{rec.path}: HSim {ms.shape[1:]} and MSim {b.shape[1:]} sizes differ", path=rec.path)
            h, w = ms.shape[1] // ratio * ratio, ms.shape[2] // ratio * ratio
            ms, b = ms[:, :h, :w], b[:, :h, :w]
            ms_lr = mtf_degrade(ms, ratio)
            sample = {"gt": ms, "ms": ms_lr, "lms": upsample(ms_lr, (h, w)), "b": b}
    elif ms_key is not None and pan_key is not None:
        ms, b = _to_chw(d[ms_key]), _to_chw(d[pan_key])
        if "ratio" in d:
            ratio = int(np.asarray(d["ratio"]).ravel()[0])
        if b.shape[1] != ms.shape[1] * ratio or b.shape[2] != ms.shape[2] * ratio:
            raise SampleError(f"{rec.path}: PAN {b.shape[1:]} is not {ratio}x the MS {ms.shape[1:]}", path=rec.path)
        ms, b = crop_region(ms, b, rec, ratio)
        sample = wald_reduce(ms, b, ratio, sensor)
    else:  # a lone HS cube (Chikusei / Pavia): HR-MSI synthesised with smooth responses
        k = _first(keys, MAT_HS_KEYS) or max((k for k in keys if np.ndim(d[k]) == 3), key=lambda k: d[k].size)
        cube = _to_chw(d[k])
        if rec.rows is not None:
            cube = cube[:, rec.rows[0]: rec.rows[1]]
        h, w = cube.shape[1] // ratio * ratio, cube.shape[2] // ratio * ratio
        cube = cube[:, :h, :w]
        b = np.tensordot(srf_matrix(cube.shape[0]), cube, axes=1).astype(np.float32)
        ms_lr = mtf_degrade(cube, ratio)
        sample = {"gt": cube, "ms": ms_lr, "lms": upsample(ms_lr, (h, w)), "b": b}
    for k, v in sample.items():
        check_finite(v, f"{rec.path}:{k}")
    mv = max_value or infer_max_value(np.concatenate([sample["gt"].ravel(), sample["b"].ravel()]), bits)
    out = {k: (v / mv).astype(np.float32) for k, v in sample.items()}
    out["lms"] = np.clip(out["lms"], 0.0, 1.0)  # interpolation overshoot; the model's input lives in [0, 1]
    out["max_value"] = np.float32(mv)
    return out
