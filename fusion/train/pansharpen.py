"""``fuse --task pan``: pansharpen full-resolution scenes (MS + PAN) with a trained or bundled model.

Inputs: a MATLAB .mat scene holding both images (``I_MS`` + ``I_PAN``, the toolbox convention; pass it as
``--a`` and ``--b``), or an MS file and a PAN file (.mat or .tif/.tiff, MS as [h, w, C]), or two folders
matched by file name. Output: the pansharpened image [H, W, C] in the MS's DN as a float32 TIFF
(``<name>.tif``) and a false-colour preview (``<name>.png``).
"""
from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rwkvfusion_io.color import false_colour
from rwkvfusion_io.images import SampleError, check_finite
from rwkvfusion_io.spectral import MAT_MS_KEYS, MAT_PAN_KEYS, _first, _mat_bits, infer_max_value, load_mat

SCENE_EXTS = (".mat", ".tif", ".tiff")


def read_scene_image(path: Path, role: str) -> tuple[np.ndarray, int | None]:
    """One image of a scene: MS [h, w, C] or PAN [H, W] (float64 DN) and the file's bit depth when it says."""
    if path.suffix.lower() == ".mat":
        d = load_mat(path)
        key = _first(set(d), MAT_MS_KEYS if role == "ms" else MAT_PAN_KEYS)
        if key is None:
            names = MAT_MS_KEYS if role == "ms" else MAT_PAN_KEYS
            raise SampleError(f"{path}: no {role.upper()} image (expected one of {', '.join(names)}; "
                              f"found {', '.join(sorted(d))})", path=path)
        bits = _mat_bits(d)
        arr = np.asarray(d[key], dtype=np.float64)
    elif path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        try:
            arr = np.asarray(tifffile.imread(path), dtype=np.float64)
        except (OSError, ValueError, tifffile.TiffFileError) as exc:
            raise SampleError(f"{path}: cannot read TIFF ({exc})", path=path) from exc
        bits = None
        if arr.ndim == 3 and arr.shape[0] < min(arr.shape[1:]) and arr.shape[0] <= 16:
            arr = arr.transpose(1, 2, 0)  # planar [C, h, w] -> [h, w, C]
    else:
        raise SampleError(f"{path}: unsupported scene file (expected {', '.join(SCENE_EXTS)})", path=path)
    if role == "ms" and arr.ndim == 2:
        arr = arr[:, :, None]
    if role == "pan" and arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if (role == "ms" and arr.ndim != 3) or (role == "pan" and arr.ndim != 2):
        raise SampleError(f"{path}: {role.upper()} has shape {arr.shape}", path=path)
    check_finite(arr, str(path))
    return arr, bits


def model_pansharpen(model: nn.Module, *, tile: int | None = None, overlap: int = 64
                     ) -> Callable[[np.ndarray, np.ndarray, int, float], np.ndarray]:
    """fn(ms [h, w, C], pan [H, W], ratio, max_value) -> [H, W, C] in DN: lms = 23-tap upsampling (EXP), both
    inputs divided by ``max_value`` (the training scale), the residual network's output times it."""
    from fusion.baselines.pan_interp import upsample_ms
    from fusion.evaluation import model_fuser

    run = model_fuser(model, tile=tile, overlap=overlap)

    def fn(ms: np.ndarray, pan: np.ndarray, ratio: int, max_value: float) -> np.ndarray:
        if ms.shape[2] != model.cfg.model.a_channels:
            raise ValueError(f"the model pansharpens {model.cfg.model.a_channels}-band MS; this one has {ms.shape[2]}")
        lms = np.clip(upsample_ms(ms, ratio) / max_value, 0.0, 1.0).transpose(2, 0, 1)
        with torch.no_grad():
            out = run(lms, (pan / max_value)[None])  # [C, H, W] in [0, 1]
        return out.astype(np.float64).transpose(1, 2, 0) * max_value
    return fn


def pansharpen_files(fn: Callable[..., np.ndarray], scenes: list[tuple[str, Path, Path]], out: Path, *,
                     failures: list[tuple[str, str]] | None = None) -> list[Path]:
    """Pansharpen every scene into ``out`` (a .tif file for one scene given as files, else a folder)."""
    import tifffile

    from fusion.train.inference import write_image
    from rwkvfusion_io.files import atomic_write

    written: list[Path] = []
    single = len(scenes) == 1 and out.suffix.lower() in (".tif", ".tiff")
    for name, pa, pb in scenes:
        try:
            ms, bits = read_scene_image(pa, "ms")
            pan, bits_b = read_scene_image(pb, "pan")
            ratio = pan.shape[0] // ms.shape[0]
            if ratio < 2 or pan.shape != (ms.shape[0] * ratio, ms.shape[1] * ratio):
                raise SampleError(f"{pb}: PAN {pan.shape} is not an integer multiple (>= 2) of the MS {ms.shape[:2]} "
                                  f"from {pa}", path=pb)
            bits = bits or bits_b
            mv = float(2 ** bits - 1) if bits else infer_max_value(np.concatenate([ms.ravel(), pan.ravel()]))
            fused = np.clip(fn(ms, pan, ratio, mv), 0.0, mv).astype(np.float32)
        except (SampleError, ValueError, OSError) as exc:
            if failures is None:
                raise
            failures.append((name, str(exc)))
            continue
        target = out if single else out / f"{name}.tif"
        buf = io.BytesIO()  # tifffile wants a named file; encode in memory, then write atomically
        tifffile.imwrite(buf, fused, photometric="minisblack", planarconfig="contig")
        written.append(atomic_write(target, lambda fh, data=buf.getvalue(): fh.write(data)))
        write_image(target.with_suffix(".png"), false_colour(fused.transpose(2, 0, 1) / mv))
    return written
