"""Binary encodings used in manifest columns: COCO RLE masks, PNG class maps, float16 text features."""
from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

TEXT_DTYPE = np.dtype("<f2")  # float16, little-endian on every platform


def encode_masks(masks: np.ndarray) -> list[dict[str, Any]]:
    """COCO RLE of binary masks ``[N, H, W]`` -> ``[{"size": [H, W], "counts": str}, ...]`` (pycocotools)."""
    from pycocotools import mask as mask_utils

    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must be [N, H, W], got shape {masks.shape}")
    if masks.shape[0] == 0:
        return []
    encoded = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    return [{"size": [int(s) for s in r["size"]], "counts": r["counts"].decode("ascii")} for r in encoded]


def decode_masks(rles: Sequence[dict[str, Any]], shape: tuple[int, int] | None = None) -> np.ndarray:
    """Inverse of :func:`encode_masks`: ``[N, H, W]`` bool. ``shape`` gives ``(H, W)`` when ``rles`` is empty."""
    from pycocotools import mask as mask_utils

    if len(rles) == 0:
        if shape is None:
            raise ValueError("decode_masks: no masks and no shape given")
        return np.zeros((0, *shape), dtype=bool)
    coco = []
    for i, r in enumerate(rles):
        size = [int(s) for s in r["size"]]
        if len(size) != 2 or min(size) < 0:
            raise ValueError(f"mask {i}: RLE size must be [H, W], got {size}")
        counts = r["counts"]
        coco.append({"size": size, "counts": counts.encode("ascii") if isinstance(counts, str) else counts})
    sizes = {tuple(c["size"]) for c in coco}
    if len(sizes) != 1:
        raise ValueError(f"masks of one sample have different sizes: {sorted(sizes)}")
    if shape is not None and tuple(shape) != next(iter(sizes)):
        raise ValueError(f"mask size {next(iter(sizes))} does not match the image size {tuple(shape)}")
    with warnings.catch_warnings():  # pycocotools' Cython decode trips numpy 2's copy-keyword deprecation
        warnings.simplefilter("ignore", DeprecationWarning)
        out = mask_utils.decode(coco)  # [H, W, N] uint8
    return np.ascontiguousarray(out.transpose(2, 0, 1).astype(bool))


def encode_png(image: np.ndarray) -> bytes:
    """Lossless PNG bytes of a ``[H, W]`` uint8 array (deterministic: fixed zlib settings)."""
    from PIL import Image

    image = np.asarray(image)
    if image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError(f"class map must be an [H, W] uint8 array, got {image.dtype} {image.shape}")
    buf = io.BytesIO()
    Image.fromarray(image, mode="L").save(buf, format="PNG", compress_level=6, optimize=False)
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    """Inverse of :func:`encode_png`: ``[H, W]`` uint8."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        if im.mode != "L":
            raise ValueError(f"class map PNG must be 8-bit grey (mode L), got mode {im.mode}")
        return np.array(im, dtype=np.uint8)


def encode_text(features: Any) -> tuple[bytes, list[int]]:
    """Text features ``[L, D]`` (numpy or torch, real tokens only) -> (float16 little-endian bytes, ``[L, D]``)."""
    if hasattr(features, "detach"):  # torch tensor, without importing torch
        features = features.detach().float().cpu().numpy()
    arr = np.asarray(features)
    if arr.ndim != 2:
        raise ValueError(f"text features must be [L, D], got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("text features contain NaN or inf")
    return np.ascontiguousarray(arr.astype(TEXT_DTYPE)).tobytes(), [int(arr.shape[0]), int(arr.shape[1])]


def decode_text_bytes(data: bytes, shape: Sequence[int]) -> np.ndarray:
    """Inverse of :func:`encode_text`: ``[L, D]`` float16 (native byte order)."""
    shape = [int(s) for s in shape]
    if len(shape) != 2:
        raise ValueError(f"text shape must be [L, D], got {shape}")
    expected = shape[0] * shape[1] * TEXT_DTYPE.itemsize
    if len(data) != expected:
        raise ValueError(f"text bytes have length {len(data)}, shape {shape} needs {expected}")
    return np.frombuffer(data, dtype=TEXT_DTYPE).reshape(shape).astype(np.float16)
