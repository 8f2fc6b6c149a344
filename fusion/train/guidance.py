"""Manifest guidance (captions' text tokens, masks) for ``fuse``: pairs matched to rows by file name."""
from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fusion.train.inference import FuseY, model_fuse_y

logger = logging.getLogger(__name__)


def guidance_tensors(text: np.ndarray | None, mask: np.ndarray | None) -> dict[str, torch.Tensor]:
    """Manifest text [L, D] and mask ([H, W] class map or [C, H, W] float) -> batched model inputs."""
    g: dict[str, torch.Tensor] = {}
    if text is not None:
        g["text"] = torch.from_numpy(np.asarray(text, np.float32))[None]
        g["text_mask"] = torch.ones(1, text.shape[0], dtype=torch.bool)
    if mask is not None:
        m = torch.from_numpy(np.ascontiguousarray(mask))
        g["mask"] = (m.long() if m.ndim == 2 else m.float())[None]
    return g


def manifest_guidance(model: nn.Module, manifest: str | Path, root: str | Path | None = None
                      ) -> Callable[[str, Path, Path], FuseY]:
    """``fuse_y_for(name, path_a, path_b)``: the model guided by the manifest row of that pair.

    Rows are matched by sample id (= file name without suffix), then by path_a relative to ``root``
    (default: the common folder of the two sources); the recorded sha256 of the sources must match.
    Pairs without an ``ok`` row are fused unguided and counted in the log.
    """
    from fusion.data.guidance import Guidance

    cfg = model.cfg
    cache: dict[str, Guidance] = {}

    def fuse_y_for(name: str, pa: Path, pb: Path) -> FuseY:
        base = Path(root) if root is not None else Path(os.path.commonpath([pa.resolve(), pb.resolve()]))
        key = str(base)
        if key not in cache:
            cache[key] = Guidance(manifest, cfg.task, base, cfg=cfg)
        g = cache[key]
        if not g.attach(name, None, {"a": pa, "b": pb}):
            logger.warning("%s: no usable row in manifest %s; fused without guidance", name, manifest)
            return model_fuse_y(model)
        mask = g.mask(name)
        if mask is not None:
            size = mask.shape[-2:]
            from PIL import Image
            with Image.open(pa) as im:
                w, h = im.size
            if tuple(size) != (h, w):
                raise ValueError(f"{pa}: manifest {manifest} mask of {name!r} is {size[1]}x{size[0]}, the image "
                                 f"{w}x{h}")
        return model_fuse_y(model, guidance_tensors(g.text(name), mask))

    return fuse_y_for
