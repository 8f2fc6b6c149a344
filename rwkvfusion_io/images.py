"""Image and array reading with errors that name the file, plus Y/CbCr splitting (``rwkvfusion_io.color``, BT.601)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class SampleError(ValueError):
    """A sample could not be loaded; the message names the sample id and the offending file."""

    def __init__(self, message: str, *, sample_id: str | None = None, path: str | Path | None = None):
        super().__init__(message)
        self.sample_id = sample_id
        self.path = str(path) if path is not None else None


def checked_class_map(cmap: np.ndarray, n_classes: int, source: str | Path, sample_id: str | None = None
                      ) -> np.ndarray:
    """Class map [H, W] -> int64 after checking that every id lies in 0 (background) .. ``n_classes``.

    The one-hot mask guidance has one channel per vocabulary class (ids 1..n); an id beyond the vocabulary is
    an error naming ``source``, never merged into another class.
    """
    out = np.asarray(cmap).astype(np.int64)
    if out.size and (out.min() < 0 or out.max() > n_classes):
        bad = sorted({int(v) for v in np.unique(out) if v < 0 or v > n_classes})
        raise SampleError(f"{source}: class ids {bad[:8]} of sample {sample_id!r} lie outside the task's "
                          f"vocabulary 1..{n_classes} (0 = background)", sample_id=sample_id, path=source)
    return out


def is_image(path: Path, exts: tuple[str, ...] = IMAGE_EXTS) -> bool:
    """A visible file with one of ``exts`` (lower-case suffixes; default the image formats)."""
    return path.is_file() and path.suffix.lower() in exts and not path.name.startswith(".")


def _decoded(path: Path, what: str, to_array: Callable[[Any], np.ndarray]) -> np.ndarray:
    """``to_array`` of the decoded PIL image of ``path``; ``SampleError`` naming the file when it is missing, too
    large to decode safely (Pillow's decompression-bomb limit), corrupt, or too big for memory."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise SampleError(f"{path}: {what} not found", path=path)
    try:
        with Image.open(path) as im:
            im.load()
            return to_array(im)
    except Image.DecompressionBombError as exc:
        raise SampleError(f"{path}: image too large to read safely ({exc})", path=path) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise SampleError(f"{path}: cannot decode {'label ' if what.startswith('label') else ''}image ({exc})",
                          path=path) from exc
    except MemoryError as exc:
        raise SampleError(f"{path}: not enough memory to decode this image", path=path) from exc


def _as_float(im: Any, dtype: type = np.float32) -> np.ndarray:
    """A decoded PIL image as float (``dtype``) in [0, 1] (16-bit by its range, float as stored)."""
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=dtype)
        return arr / (65535.0 if arr.max(initial=0) > 255 or mode.startswith("I;16") else 255.0)
    if mode == "F":
        return np.asarray(im, dtype=dtype)
    if mode not in ("L", "RGB"):
        im = im.convert("L" if mode in ("1", "LA") else "RGB")
    return np.asarray(im, dtype=dtype) / 255.0


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as float32 HxWxC in [0, 1] (C = 1 or 3); 16-bit PNGs keep their precision."""
    path = Path(path)
    arr = _decoded(path, "file", _as_float)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    check_finite(arr, path)
    return np.ascontiguousarray(arr)


def check_finite(arr: np.ndarray, what: str | Path) -> None:
    """Raise ``SampleError`` naming ``what`` when ``arr`` holds NaN or infinity."""
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise SampleError(f"{what}: {bad} non-finite values (NaN/inf)", path=str(what))


def split_y_cbcr(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """HxWxC image -> (Y [1, H, W], CbCr [2, H, W]); grey images get CbCr = 0.5."""
    if img.shape[2] == 1:
        y = img[:, :, 0]
        cbcr = np.full((2,) + y.shape, 0.5, dtype=np.float32)
        return y[None].astype(np.float32), cbcr
    from rwkvfusion_io.color import rgb_to_ycbcr

    ycc = np.asarray(rgb_to_ycbcr(np.ascontiguousarray(img[:, :, :3], dtype=np.float32)), dtype=np.float32)
    return np.ascontiguousarray(ycc[:, :, 0][None]), np.ascontiguousarray(ycc[:, :, 1:].transpose(2, 0, 1))


def read_luma(path: str | Path) -> np.ndarray:
    """Image file -> float64 HxW luma in [0, 1] (BT.601 Y of RGB via ``rwkvfusion_io.color.luma``; grey as stored)."""
    from rwkvfusion_io.color import luma

    path = Path(path)
    img = _decoded(path, "file", lambda im: _as_float(im, np.float64))
    check_finite(img, path)
    return img if img.ndim == 2 else luma(img[:, :, :3])


def read_label_map(path: str | Path) -> np.ndarray:
    """Read a segmentation label / class-map image as uint8 [H, W] (first channel of a colour PNG)."""
    path = Path(path)
    arr = _decoded(path, "label file", np.asarray)
    if arr.ndim == 3:
        arr = arr[:, :, 0]
    return arr.astype(np.uint8)
