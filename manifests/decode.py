"""Decode one manifest row (a dict from :func:`manifests.rows_by_id`, ``Table.to_pylist()`` or HF datasets)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from manifests.rle import decode_masks, decode_png, decode_text_bytes


def _rle_list(masks: Any) -> list[dict[str, Any]]:
    # HF datasets may hand a list<struct> column back as a dict of lists.
    if isinstance(masks, Mapping):
        return [{"size": s, "counts": c} for s, c in zip(masks["size"], masks["counts"])]
    return list(masks)


def decode_text(row: Mapping[str, Any], modality: str) -> np.ndarray | None:
    """Text features of ``modality`` ("a" or "b"): ``[L, D]`` float16, real tokens only; None when absent."""
    if modality not in ("a", "b"):
        raise ValueError(f"modality must be 'a' or 'b', got {modality!r}")
    data, shape = row.get(f"text_{modality}"), row.get(f"text_{modality}_shape")
    if data is None:
        return None
    if shape is None:
        raise ValueError(f"sample {row.get('sample_id')!r}: text_{modality} present without text_{modality}_shape")
    return decode_text_bytes(data, shape)


def decode_class_map(row: Mapping[str, Any]) -> np.ndarray | None:
    """Merged class map ``[H, W]`` uint8 (0 = background, k = ``class_vocab[k-1]``); None when absent."""
    data = row.get("class_map")
    if data is None:
        return None
    out = decode_png(data)
    h, w = row.get("height"), row.get("width")
    if h is not None and w is not None and out.shape != (h, w):
        raise ValueError(f"sample {row.get('sample_id')!r}: class map is {out.shape}, image is {(h, w)}")
    return out


def decode_instance_masks(row: Mapping[str, Any]) -> np.ndarray:
    """Instance masks ``[N, H, W]`` bool (``N = 0`` when the row has none)."""
    h, w = row.get("height"), row.get("width")
    shape = (int(h), int(w)) if h is not None and w is not None else None
    masks = row.get("masks")
    if masks is None:
        return np.zeros((0, *(shape or (0, 0))), dtype=bool)
    return decode_masks(_rle_list(masks), shape)


def decode_boxes(row: Mapping[str, Any]) -> np.ndarray:
    """Boxes ``[N, 4]`` float32 xyxy pixels (``N = 0`` when absent)."""
    boxes = row.get("boxes")
    if not boxes:
        return np.zeros((0, 4), dtype=np.float32)
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
