"""Reading fusion images for the metrics with an explicit bit depth and value range (never silent clipping).

Fusion metrics work on the 0..255 scale. 8-bit PNG/JPG/BMP are read as they are (uint8, so MATLAB's uint8
``rgb2gray`` rounding applies). 16-bit PNG/TIFF and float TIFF are only read when asked for
(``bit_depth="16"`` / ``"float"``) and are mapped linearly from ``value_range`` (default 0..65535 for 16-bit;
REQUIRED for float) to 0..255 floats; any value outside the declared range is an error naming the file.
The toolboxes were written for 8-bit images: their histogram metrics (EN, MI, CE, NMI, ...) then quantise
the mapped values to 256 integer levels (MATLAB ``uint8`` rounding), so 16-bit/float inputs are scored at
8-bit histogram resolution.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

BIT_DEPTHS = ("8", "16", "float")


def _png_bit_depth(path: Path) -> int | None:
    """Bit depth from a PNG's IHDR chunk (None if the file is not a PNG)."""
    with open(path, "rb") as fh:
        head = fh.read(26)
    if len(head) < 25 or head[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    return head[24]


def _raw(path: Path) -> np.ndarray:
    """The file's samples at their stored bit depth; ValueError naming the file when it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    try:
        return _decode(path)
    except Image.DecompressionBombError as err:
        raise ValueError(f"{path}: image too large to read safely ({err})") from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        if str(err).startswith(str(path)):
            raise
        raise ValueError(f"{path}: cannot decode image ({err})") from err


def _decode(path: Path) -> np.ndarray:
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        import tifffile

        return np.asarray(tifffile.imread(path))
    if _png_bit_depth(path) == 16:  # Pillow reduces 16-bit colour PNGs to 8 bits; OpenCV keeps all 16
        import cv2

        arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if arr is None:
            raise ValueError(f"{path}: cannot read the 16-bit PNG")
        if arr.ndim == 3:
            arr = arr[:, :, 2::-1] if arr.shape[2] in (3, 4) else arr  # BGR(A) -> RGB, alpha dropped
        return np.ascontiguousarray(arr)
    from PIL import Image

    with Image.open(path) as img:
        if img.mode in ("P", "PA", "LA", "RGBA", "CMYK", "YCbCr", "1"):
            img = img.convert("RGB")  # palette / alpha / other 8-bit modes: their RGB rendering
        return np.asarray(img)


def read_fusion_image(path: str | Path, bit_depth: str = "8", value_range: tuple[float, float] | None = None
                      ) -> np.ndarray:
    """HxW (grey, also for grey stored as 3 equal channels) or HxWx3 array on the 0..255 scale.

    ``bit_depth="8"``: the file must hold uint8 samples; returned as uint8 (``value_range`` must then be None
    or (0, 255)). ``"16"``: uint16 samples, mapped from ``value_range`` (default (0, 65535)). ``"float"``:
    floating-point samples (e.g. float TIFF), ``value_range`` required. Raises ValueError on a bit-depth
    mismatch, on values outside ``value_range`` and on shapes other than HxW, HxWx1, HxWx3.
    """
    path = Path(path)
    if bit_depth not in BIT_DEPTHS:
        raise ValueError(f"bit depth must be one of {BIT_DEPTHS}, got {bit_depth!r}")
    arr = _raw(path)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise ValueError(f"{path}: expected a grey or RGB image, got shape {arr.shape}")
    expected = {"8": "uint8", "16": "uint16", "float": "floating point"}[bit_depth]
    ok = {"8": arr.dtype == np.uint8, "16": arr.dtype == np.uint16, "float": arr.dtype.kind == "f"}[bit_depth]
    if not ok:
        raise ValueError(f"{path}: samples are {arr.dtype}, but --bit-depth {bit_depth} expects {expected}; "
                         "pass the matching --bit-depth (and --range)")
    if bit_depth == "8":
        if value_range is not None and tuple(value_range) != (0, 255):
            raise ValueError("8-bit images are on the 0..255 scale already; --range applies to 16-bit/float")
        out = arr
    else:
        if value_range is None:
            if bit_depth == "float":
                raise ValueError(f"{path}: float images need an explicit --range LO,HI (e.g. 0,1)")
            value_range = (0.0, 65535.0)
        lo, hi = (float(v) for v in value_range)
        if not hi > lo:
            raise ValueError(f"--range must have LO < HI, got {value_range}")
        data = arr.astype(np.float64)
        if not np.all(np.isfinite(data)):
            raise ValueError(f"{path}: contains NaN or infinite values")
        if data.min() < lo or data.max() > hi:
            raise ValueError(f"{path}: values {data.min():.6g}..{data.max():.6g} fall outside the declared range "
                             f"{lo:g}..{hi:g} (nothing is clipped; widen --range)")
        out = (data - lo) / (hi - lo) * 255.0
    if out.ndim == 3 and np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2]):
        out = out[..., 0]  # grey stored as 3 channels
    return out
