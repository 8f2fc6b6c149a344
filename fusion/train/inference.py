"""Inference: rebuild a trained model from its checkpoint and fuse images (Y fused, colour restored).

Fusion tasks fuse the BT.601 Y channel; colour comes back from the sources' CbCr (main paper sec. 3): one colour
source -> its CbCr, two -> ``rwkvfusion_io.color.fuse_chroma`` (SwinFusion |C - 0.5| weighting).
"""
from __future__ import annotations

import io
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fusion.train.checkpoint import load_checkpoint
from rwkvfusion_io.images import IMAGE_EXTS
from rwkvfusion_io.layouts import images_by_stem

logger = logging.getLogger(__name__)



# --------------------------------------------------------------------------- model
def model_from_config(config: dict[str, Any]) -> nn.Module:
    """``build_model`` from a ``TaskConfig.to_dict()`` dict (what checkpoints store; the older flat form too)."""
    from fusion.config import TaskConfig
    from fusion.model.build import build_model

    return build_model(TaskConfig.from_dict(dict(config)))


def load_model(checkpoint: str | Path, device: str | torch.device = "cpu", *,
               use_ema: bool = True, compile_model: bool = False) -> tuple[nn.Module, dict[str, Any]]:
    """Model (eval mode, EMA weights unless ``use_ema=False``) and the raw checkpoint dict.

    ``compile_model``: the elementwise regions of every block run through ``torch.compile``
    (``fusion.model.pointwise.compile_model``; compiled on first use, any input size).
    """
    ckpt = load_checkpoint(checkpoint)
    model = model_from_config(ckpt["config"])
    state = ckpt["ema"]["module"] if use_ema and ckpt.get("ema") else ckpt["model"]
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"checkpoint {checkpoint}: weights do not match the stored config: {err}") from err
    model = model.to(device).eval()
    if compile_model:
        from fusion.model.pointwise import compile_regions

        compile_regions(model)
    return model, ckpt


@torch.no_grad()
def run_model(model: nn.Module, a: torch.Tensor, b: torch.Tensor, *, text: torch.Tensor | None = None,
              text_mask: torch.Tensor | None = None, mask: torch.Tensor | None = None,
              tile: int | None = None, overlap: int = 64, bf16: bool | None = None) -> torch.Tensor:
    """``model(a, b, ...)`` on the model's device, output clipped to [0, 1] (float32).

    ``bf16``: bfloat16 autocast (None: on CUDA only; True also on CPU, see the bench for its speed and
    accuracy). ``tile``: run :func:`fuse_tiled` with that tile side and ``overlap`` (images larger than a
    tile only); ``model`` may be a compiled module (``torch.compile``).
    """
    p = next(model.parameters())
    dev = p.device

    def put(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t.to(dev)

    use_bf16 = dev.type == "cuda" if bf16 is None else bf16
    ctx = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_bf16)
    with ctx:
        if tile and max(a.shape[-2:]) > tile:
            out = fuse_tiled(model, put(a), put(b), tile=tile, overlap=overlap, text=put(text),
                             text_mask=put(text_mask), mask=put(mask))
        else:
            out = model(put(a), put(b), text=put(text), text_mask=put(text_mask), mask=put(mask))
    return out.float().clamp(0.0, 1.0)


def _tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of ``tile`` pixels covering [0, size) with at least ``overlap`` shared pixels."""
    if size <= tile:
        return [0]
    step = tile - overlap
    n = -(-(size - overlap) // step)                          # tiles needed
    return [round(i * (size - tile) / (n - 1)) for i in range(n)]


def _ramp(length: int, start: int, end: int, size: int, overlap: int) -> torch.Tensor:
    """1-D blending weight of one tile: linear ramps over the overlaps with its neighbours, 1 inside.

    Ramps run from 1/(o+1) to o/(o+1) so that two overlapping tiles' weights sum to 1 exactly in theory
    (and the weights never vanish); edges of the image get weight 1.
    """
    w = torch.ones(length, dtype=torch.float64)
    o = min(overlap, length // 2)
    if o > 0:
        r = torch.arange(1, o + 1, dtype=torch.float64) / (o + 1)
        if start > 0:
            w[:o] = r
        if end < size:
            w[-o:] = r.flip(0)
    return w


@torch.no_grad()
def fuse_tiled(model: Callable[..., torch.Tensor], a: torch.Tensor, b: torch.Tensor, *, tile: int = 512,
               overlap: int = 64, **kwargs: Any) -> torch.Tensor:
    """``model(a, b, **kwargs)`` on overlapping tiles, blended with linear ramps: bounded memory for large images.

    a, b: [B, C, H, W]; tiles of ``tile`` x ``tile`` pixels (a multiple of the model's downsampling is best;
    the model pads otherwise) overlapping by at least ``overlap`` pixels. Each output pixel is the weighted
    mean of the tiles covering it with weights that ramp linearly across every overlap, so neighbouring
    tiles fade into each other and no seam appears. Peak memory is that of one tile's forward. A
    ``mask`` keyword ([B, ..., H, W]) is cropped with the tiles; text guidance is passed to every tile.
    The result differs from a whole-image forward (each tile sees only its own context); use it where the
    whole image does not fit. Returns [B, C_out, H, W] float32.
    """
    if tile < 8 or overlap < 0 or overlap >= tile:
        raise ValueError(f"fuse_tiled: need tile >= 8 and 0 <= overlap < tile, got tile={tile}, overlap={overlap}")
    H, W = a.shape[-2:]
    mask = kwargs.pop("mask", None)
    out: torch.Tensor | None = None
    norm = torch.zeros(H, W, dtype=torch.float64)
    for y0 in _tile_starts(H, tile, overlap):
        y1 = min(y0 + tile, H)
        wy = _ramp(y1 - y0, y0, y1, H, overlap)
        for x0 in _tile_starts(W, tile, overlap):
            x1 = min(x0 + tile, W)
            wx = _ramp(x1 - x0, x0, x1, W, overlap)
            m = None if mask is None else mask[..., y0:y1, x0:x1]
            kw = dict(kwargs) if m is None else {**kwargs, "mask": m}
            piece = model(a[..., y0:y1, x0:x1], b[..., y0:y1, x0:x1], **kw).float()
            if out is None:
                out = torch.zeros(*piece.shape[:2], H, W, dtype=torch.float32)
            wt = (wy[:, None] * wx[None, :])
            out[..., y0:y1, x0:x1] += piece * wt.float()
            norm[y0:y1, x0:x1] += wt
    assert out is not None
    return out / norm.float()


# --------------------------------------------------------------------------- colour
def split_y(img: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """HxWxC float image in [0, 1] -> (Y [H, W], CbCr [H, W, 2] or None for grey input)."""
    from rwkvfusion_io.color import rgb_to_ycbcr

    if img.ndim == 2:
        return img.astype(np.float32), None
    if img.shape[2] == 1:
        return img[:, :, 0].astype(np.float32), None
    if img.shape[2] != 3:
        raise ValueError(f"expected a grey or RGB image, got {img.shape[2]} channels")
    if np.allclose(img[:, :, 0], img[:, :, 1]) and np.allclose(img[:, :, 1], img[:, :, 2]):
        return img[:, :, 0].astype(np.float32), None  # grey stored as RGB (e.g. TNO)
    ycc = np.asarray(rgb_to_ycbcr(img.astype(np.float32)), dtype=np.float32)
    return ycc[:, :, 0], ycc[:, :, 1:]


def restore_colour(y: np.ndarray, cbcr_a: np.ndarray | None, cbcr_b: np.ndarray | None) -> np.ndarray:
    """Fused Y [H, W] + the sources' CbCr ([H, W, 2] or None) -> HxW (grey) or HxWx3 RGB in [0, 1]."""
    from rwkvfusion_io.color import fuse_chroma, ycbcr_to_rgb

    if cbcr_a is None and cbcr_b is None:
        return np.clip(y, 0.0, 1.0).astype(np.float32)
    if cbcr_a is not None and cbcr_b is not None:
        cbcr = np.asarray(fuse_chroma(cbcr_a, cbcr_b), dtype=np.float32)  # elementwise, HxWx2
    else:
        cbcr = cbcr_a if cbcr_a is not None else cbcr_b
    ycc = np.concatenate([y[:, :, None], cbcr], axis=2).astype(np.float32)
    return np.clip(np.asarray(ycbcr_to_rgb(ycc), dtype=np.float32), 0.0, 1.0)


def fuse_arrays(fuse_y: Callable[[np.ndarray, np.ndarray], np.ndarray], img_a: np.ndarray,
                img_b: np.ndarray) -> np.ndarray:
    """Fuse two HxW[xC] images in [0, 1] through ``fuse_y(Y_a, Y_b) -> Y`` and rebuild colour.

    Output is HxW for two grey sources, else HxWx3.
    """
    if img_a.shape[:2] != img_b.shape[:2]:
        raise ValueError(f"sources differ in size: {img_a.shape[1]}x{img_a.shape[0]} vs "
                         f"{img_b.shape[1]}x{img_b.shape[0]} (W x H)")
    ya, ca = split_y(img_a)
    yb, cb = split_y(img_b)
    y = np.asarray(fuse_y(ya, yb), dtype=np.float32)
    if y.shape != ya.shape:
        raise ValueError(f"the fusion method returned shape {y.shape}, expected {ya.shape}")
    return restore_colour(y, ca, cb)


def model_fuse_y(model: nn.Module, guidance: dict[str, torch.Tensor] | None = None, *, tile: int | None = None,
                 overlap: int = 64, bf16: bool | None = None) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """A ``fuse_y(Y_a, Y_b) -> Y`` callable (HxW planes, any size; the model pads): ``fusion.evaluation.model_fuser``.

    ``tile``/``overlap``/``bf16``: see :func:`run_model` (tiled inference for large images, bf16 autocast).
    """
    from fusion.evaluation import model_fuser

    return model_fuser(model, guidance=guidance, tile=tile, overlap=overlap, bf16=bf16)


# --------------------------------------------------------------------------- files
def read_image(path: str | Path) -> np.ndarray:
    """HxWxC float32 in [0, 1] (the data package's reader: errors name the file)."""
    from rwkvfusion_io.images import read_image as _read

    return _read(path)


def write_image(path: str | Path, img: np.ndarray) -> Path:
    """Write HxW or HxWx3 float in [0, 1] as 8-bit (format from the suffix; PNG when there is none)."""
    from PIL import Image

    from rwkvfusion_io.files import atomic_write

    path = Path(path)
    if path.suffix.lower() not in IMAGE_EXTS:
        path = path.with_suffix(".png")
    arr = np.asarray(img)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    u8 = np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(u8).save(buf, format=Image.registered_extensions()[path.suffix.lower()])
    # atomic: an interrupted run never leaves a truncated image (or a half-replaced earlier one)
    return atomic_write(path, lambda fh: fh.write(buf.getbuffer()))


def pair_inputs(a: str | Path, b: str | Path, exts: tuple[str, ...] | None = None) -> list[tuple[str, Path, Path]]:
    """Pairs ``(name, path_a, path_b)``: two files, or two folders matched by file name (without suffix);
    ``exts``: the suffixes to match in folders (default: the image formats)."""
    a, b = Path(a), Path(b)
    for p, flag in ((a, "--a"), (b, "--b")):
        if not p.exists():
            raise FileNotFoundError(f"{flag} {p} does not exist")
    if a.is_file() and b.is_file():
        return [(a.stem, a, b)]
    if a.is_dir() and b.is_dir():
        fa, fb = images_by_stem(a, exts), images_by_stem(b, exts)
        only_a, only_b = sorted(set(fa) - set(fb)), sorted(set(fb) - set(fa))
        if only_a or only_b:
            msg = [f"--a {a} and --b {b} do not hold the same image names"]
            if only_a:
                msg.append(f"only in {a}: {', '.join(fa[n].name for n in only_a)}")
            if only_b:
                msg.append(f"only in {b}: {', '.join(fb[n].name for n in only_b)}")
            raise ValueError("; ".join(msg))
        if not fa:
            raise ValueError(f"--a {a}: no images ({', '.join(exts or IMAGE_EXTS)})")
        return [(n, fa[n], fb[n]) for n in sorted(fa)]
    raise ValueError(f"--a {a} and --b {b} must both be files or both be folders")


FuseY = Callable[[np.ndarray, np.ndarray], np.ndarray]


def fuse_files(fuse_y: FuseY, pairs: list[tuple[str, Path, Path]], out: str | Path, *,
               fuse_y_for: Callable[[str, Path, Path], FuseY] | None = None, progress: bool = True,
               failures: list[tuple[str, str]] | None = None) -> list[Path]:
    """Fuse each pair and write it; ``out`` is a file for one pair given as files, else a folder.

    ``fuse_y_for(name, path_a, path_b)``, when given, returns the ``fuse_y`` of one pair (per-pair guidance).
    With a ``failures`` list a pair that cannot be read or fused is appended as ``(name, one-line reason)``
    and the remaining pairs are still fused; without it the first failure raises.
    """
    out = Path(out)
    single = len(pairs) == 1 and out.suffix.lower() in IMAGE_EXTS
    written: list[Path] = []
    it = pairs
    if progress and len(pairs) > 1:
        from tqdm.auto import tqdm
        it = tqdm(pairs, desc="fuse", dynamic_ncols=True)
    for name, pa, pb in it:
        try:
            written.append(_fuse_pair(fuse_y, name, pa, pb, out if single else out / f"{name}.png", fuse_y_for))
        except (ValueError, OSError, RuntimeError, MemoryError) as err:
            if failures is None:
                raise
            lines = str(err).strip().splitlines()
            failures.append((name, lines[0] if lines else type(err).__name__))
    return written


def _fuse_pair(fuse_y: FuseY, name: str, pa: Path, pb: Path, target: Path,
               fuse_y_for: Callable[[str, Path, Path], FuseY] | None) -> Path:
    img_a, img_b = read_image(pa), read_image(pb)
    if img_a.shape[:2] != img_b.shape[:2]:
        raise ValueError(f"pair {name!r}: {pa} is {img_a.shape[1]}x{img_a.shape[0]} but {pb} is "
                         f"{img_b.shape[1]}x{img_b.shape[0]} (W x H); fusion needs registered images "
                         "of one size")
    fy = fuse_y_for(name, pa, pb) if fuse_y_for is not None else fuse_y
    return write_image(target, fuse_arrays(fy, img_a, img_b))


def guess_task(*paths: str | Path) -> str | None:
    """The fusion task whose role folder names (``ir``/``vi``, ``mri``/``spect``, ...) name ``paths``.

    Looks at the folder of each path and its parent (a file's folder and that folder's parent). None when
    no task's names occur, or when several tasks' names do.
    """
    from rwkvfusion_io.layouts import ROLE_ALIASES

    words: set[str] = set()
    for p in paths:
        p = Path(p)
        folder = p.parent if p.is_file() else p
        words |= {folder.name.lower(), folder.parent.name.lower()}
    hits = {task for task, roles in ROLE_ALIASES.items()
            if words & {n for names in roles.values() for n in names if len(n) > 1}}
    return hits.pop() if len(hits) == 1 else None


def warn_task_mismatch(checkpoint: str | Path, task: str, *paths: str | Path) -> str | None:
    """Log a warning (and return the guessed task) when ``paths`` look like another task's data than ``task``."""
    guessed = guess_task(*paths)
    if guessed is not None and guessed != task:
        logger.warning("checkpoint %s is a %s model but %s look like %s data (folder names); a model of "
                       "another task gives poor results", checkpoint, task, ", ".join(str(p) for p in paths),
                       guessed)
        return guessed
    return None
