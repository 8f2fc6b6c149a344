"""``manifests show``: a PNG of one sample's masks and boxes over both sources, with the captions."""
from __future__ import annotations

import os
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from manifests.decode import decode_boxes, decode_class_map, decode_instance_masks
from manifests.io import resolve_inside


def load_rgb(path: Path) -> np.ndarray | None:
    """An image as ``[H, W, 3]`` float in [0, 1] (16-bit and float images scaled by their maximum); None if unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                arr = np.asarray(im, dtype=np.float64)
                arr = arr / max(float(arr.max()), 1e-12)
                return np.repeat(arr[..., None], 3, axis=-1)
            return np.asarray(im.convert("RGB"), dtype=np.float64) / 255.0
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None


def _caption(text: str | None, width: int = 70, lines: int = 6) -> str:
    if not text:
        return "(no caption)"
    wrapped = textwrap.wrap(text, width)
    return "\n".join(wrapped[:lines] + (["..."] if len(wrapped) > lines else []))


def render_sample(row: Mapping[str, Any], out: str | os.PathLike[str], *,
                  images: str | os.PathLike[str] | None = None, alpha: float = 0.45, dpi: int = 100) -> Path:
    """Draw source a, source b (instance masks + boxes + labels over each) and the class map into ``out`` (PNG).

    Instances are drawn on both sources (the pair is registered); a box is solid on the modality it
    was found in (``"both"``: solid on both) and dashed on the other. Missing images are drawn grey.
    """
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch, Rectangle

    h, w = row.get("height"), row.get("width")
    root = Path(images) if images is not None else None
    panels: list[tuple[str, np.ndarray, str]] = []
    for m in ("a", "b"):
        rel = row.get(f"path_{m}")
        img, note = None, " (image not found)"
        if root is not None and rel:
            try:
                img = load_rgb(resolve_inside(root, rel))
            except ValueError:
                note = " (outside --images: not opened)"
        if img is not None:
            note = ""
        if img is None:
            img = np.full((h or 64, w or 64, 3), 0.5)
        panels.append((f"{m}: {rel}{note}", img, _caption(row.get(f"caption_{m}"))))

    masks = decode_instance_masks(row) if row.get("masks") is not None and h else np.zeros((0, 1, 1), bool)
    boxes = decode_boxes(row)
    labels = list(row.get("labels") or [])
    modality = list(row.get("instance_modality") or [])
    vocab = list(row.get("class_vocab") or dict.fromkeys(labels))
    cmap = colormaps["tab10" if len(vocab) <= 10 else "tab20"]
    color = {c: cmap(k % cmap.N)[:3] for k, c in enumerate(vocab)}

    cls_map = decode_class_map(row)
    ncols = 3 if cls_map is not None else 2
    aspect = panels[0][1].shape[0] / max(panels[0][1].shape[1], 1)
    fig = Figure(figsize=(5.5 * ncols, 5.5 * min(max(aspect, 0.3), 3.0) + 1.5), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle(f"{row.get('sample_id')}  [{row.get('dataset')}/{row.get('split')}, {row.get('task')}, "
                 f"status {row.get('status')}]" + (f"\n{row.get('error')}" if row.get("error") else ""), fontsize=10)
    for col, (m, (title, img, caption)) in enumerate(zip(("a", "b"), panels)):
        ax = fig.add_subplot(1, ncols, col + 1)
        overlay = img.copy()
        if masks.shape[0] and masks.shape[1:] == img.shape[:2]:
            for k in range(masks.shape[0]):
                c = np.asarray(color.get(labels[k] if k < len(labels) else None, (1.0, 0.0, 0.0)))
                overlay[masks[k]] = (1 - alpha) * overlay[masks[k]] + alpha * c
        ax.imshow(overlay, interpolation="nearest")
        for k, (x1, y1, x2, y2) in enumerate(boxes):
            lab = labels[k] if k < len(labels) else "?"
            mod = modality[k] if k < len(modality) else "both"
            c = color.get(lab, (1.0, 0.0, 0.0))
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=c, linewidth=1.5,
                                   linestyle="-" if mod in (m, "both") else "--"))
            ax.text(x1, y1, f"{lab} ({mod})", color="white", fontsize=7, va="bottom",
                    bbox={"facecolor": c, "alpha": 0.7, "pad": 1, "linewidth": 0})
        ax.set_title(title, fontsize=8)
        ax.set_xlabel(caption, fontsize=7, loc="left")
        ax.set_xticks([])
        ax.set_yticks([])
    if cls_map is not None:
        ax = fig.add_subplot(1, ncols, 3)
        rgb = np.zeros((*cls_map.shape, 3))
        for k, c in enumerate(vocab):
            rgb[cls_map == k + 1] = color[c]
        ax.imshow(rgb, interpolation="nearest")
        ax.set_title("merged class map", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        present = [c for k, c in enumerate(vocab) if (cls_map == k + 1).any()]
        if present:
            ax.legend(handles=[Patch(color=color[c], label=c) for c in present], fontsize=7, loc="lower right")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", bbox_inches="tight")
    return out
