"""Batching of dataset samples: stack tensors, pad text tokens, keep ids and paths as lists."""
from __future__ import annotations

from typing import Any

import torch

LIST_KEYS = ("id", "paths")


def collate(batch: list[dict[str, Any]], text_len: int | None = None) -> dict[str, Any]:
    """Samples -> batch dict.

    Tensors are stacked (same shapes required: use batch size 1 for variable-size test sets).
    "text" [B, L, D] is zero-padded to the batch's longest L (or exactly ``text_len``, truncating) with
    "text_mask" [B, L] bool (True = real token); samples without text get an all-False row, and the key
    is absent when no sample has text. "mask" missing in some samples is filled with zeros and
    "has_mask" [B] tells which are real. "id" and "paths" stay lists; "max_value" becomes a tensor.
    """
    if not batch:
        raise ValueError("collate: empty batch")
    out: dict[str, Any] = {k: [s.get(k) for s in batch] for k in LIST_KEYS if k in batch[0]}
    keys = {k for s in batch for k in s} - set(LIST_KEYS) - {"text", "text_mask"}
    for k in sorted(keys):
        vals = [s.get(k) for s in batch]
        if k == "mask" and any(v is None for v in vals):
            ref = next(v for v in vals if v is not None)
            out["has_mask"] = torch.tensor([v is not None for v in vals])
            vals = [torch.zeros_like(ref) if v is None else v for v in vals]
        elif any(v is None for v in vals):
            missing = [s.get("id") for s, v in zip(batch, vals) if v is None]
            raise ValueError(f"collate: key {k!r} is missing in samples {missing} but present in others")
        if isinstance(vals[0], torch.Tensor):
            shapes = {tuple(v.shape) for v in vals}
            if len(shapes) > 1:
                raise ValueError(f"collate: {k!r} has different shapes {sorted(shapes)} in one batch "
                                 f"(ids {[s.get('id') for s in batch]}); use batch_size=1 or crop")
            out[k] = torch.stack(vals)
        elif isinstance(vals[0], (int, float)):
            out[k] = torch.tensor(vals, dtype=torch.float32)
        else:
            out[k] = vals
    texts = [s.get("text") for s in batch]
    if any(t is not None for t in texts):
        dim = next(t for t in texts if t is not None).shape[1]
        if any(t is not None and t.shape[1] != dim for t in texts):
            raise ValueError(f"collate: text widths differ in one batch: {[None if t is None else t.shape[1] for t in texts]}")
        L = text_len if text_len is not None else max(t.shape[0] for t in texts if t is not None)
        text = torch.zeros(len(batch), L, dim, dtype=torch.float32)
        mask = torch.zeros(len(batch), L, dtype=torch.bool)
        for i, (s, t) in enumerate(zip(batch, texts)):
            if t is None:
                continue
            n = min(L, t.shape[0])
            text[i, :n] = t[:n].float()
            tm = s.get("text_mask")
            mask[i, :n] = tm[:n] if tm is not None else True
        out["text"], out["text_mask"] = text, mask
    return out
