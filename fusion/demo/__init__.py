"""Embedded demo datasets (``python -m fusion demo-data``): small, deterministic stand-ins for the real datasets, built offline.

Every task's data is simulated from real photographs bundled with scikit-image (``skimage.data``:
astronaut, chelsea, immunohistochemistry, retina, hubble_deep_field for ``train``; coffee, rocket for
``test``) plus its Shepp-Logan head phantom for the medical stand-in. The files follow the layouts the
real adapters read (``rwkvfusion_io.layouts`` / ``rwkvfusion_io.spectral``)::

    <root>/README.txt
    <root>/vif/{train,test}/{vi,ir,Segmentation_labels}/NNNN.png   MSRS layout
    <root>/mif/{train,test}/{MRI,SPECT}/NNNN.png                   Harvard layout (+ split)
    <root>/mef/{train,test}/{ue,oe,gt}/NNNN.png                    under/over pairs + reference
    <root>/mff/{train,test}/{far,near,gt}/NNNN.png                 far/near-focus pairs + all-in-focus
    <root>/pan/{train,test}.h5                                     PanCollection keys gt, ms, lms, pan (8 bands, 11-bit DN)
    <root>/hmif/{train,test}.h5                                    GT, LRHSI, RGB (128 + 3 bands, 12-bit DN)
    <root>/<task>/info.json                                        what was simulated and how

Determinism: one ``numpy`` generator per (task, split, sample) from a fixed seed, PNGs written by
Pillow (no timestamps), h5 datasets written with ``track_times=False`` - two builds are byte-identical.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from fusion.demo.common import COUNTS, TEST_PHOTOS, TRAIN_PHOTOS
from fusion.demo.images import IMAGE_SIMS, build_images
from fusion.demo.spectral import build_spectral
from rwkvfusion_io.tasks import TASKS

README = """Embedded demo data of rwkvfusion (built by `make demo-data` / `python -m fusion demo-data`).

THESE ARE STAND-INS FOR THE REAL DATASETS, made offline and deterministically from the sample
photographs bundled with scikit-image (skimage.data) and its Shepp-Logan head phantom. They exist so
that `make train TASK=<task>` and the tests run anywhere in minutes; numbers measured on them say
nothing about MSRS, M3FD, TNO, RoadScene, LLVIP, Harvard, SICE, MEFB, RealMFF, MFI-WHU, Lytro,
PanCollection, Chikusei or Pavia. Train photos: {train}; test photos: {test}.

vif   MSRS layout {{train,test}}/{{vi,ir,Segmentation_labels}}. "ir" is a thermal-like rendering (smooth
      temperature from low-passed luminance, warm blob-shaped objects, sensor noise and column
      fixed-pattern noise), NOT a real infrared image; "vi" is the photo under uneven low light;
      Segmentation_labels marks the warm objects (class 1).
mif   Harvard layout {{MRI,SPECT}}: "MRI" is the Shepp-Logan phantom (random pose) textured with a
      real photograph; "SPECT" a simulated low-resolution functional uptake map in a rainbow colour map.
mef   {{ue,oe,gt}}: under/over exposures of an HDR scene made from one photo (illumination layer expanded
      to 12-20 stops, veiling glare), bracketed so 25-55 % of the over exposure clips (Y >= 250) and 5-30 %
      of the under exposure is crushed (Y <= 5) as in real SICE/MEFB/U2Fusion pairs; shot + read noise,
      sensor clipping, sRGB camera response, 8-bit; gt = the original photo.
mff   {{far,near,gt}}: complementary Gaussian defocus blended by a smooth random focus map;
      gt = the sharp photo.
pan   PanCollection-like h5 (gt, ms, lms, pan; [N, C, H, W] float DN, 11-bit, max 2047, ratio 4,
      64x64 patches): 8 WorldView-3-like bands and a broad PAN integrated from per-pixel spectra
      simulated from the photo (smooth visible bases, a vegetation-like red edge, a random spectral
      tilt); Wald protocol: full-resolution PAN (4x) and MS are low-passed with a Gaussian MTF
      (Nyquist gain 0.3 MS, 0.15 PAN) and decimated by 4.
hmif  h5 (GT, LRHSI, RGB; uint16 12-bit DN, max 4095, ratio 4, 64x64; the reader makes HSI_up by
      bicubic upsampling): a Chikusei-like 128-band 363-1018 nm cube from the same spectral model;
      RGB = HR-MSI through 3 Gaussian responses; LRHSI = Gaussian-MTF degraded cube.
"""


def build_demo_data(root: str | Path, tasks=None) -> dict[str, Any]:
    """(Re)build the demo datasets of ``tasks`` (default all six) under ``root``; returns per-task info.

    Each task is written to a temporary folder and renamed into place, so an interrupted build never
    leaves a half-written task behind. Output is byte-identical across runs.
    """
    root = Path(root)
    tasks = tuple(TASKS if tasks is None else ([tasks] if isinstance(tasks, str) else tasks))
    bad = [t for t in tasks if t not in TASKS]
    if bad:
        raise ValueError(f"build_demo_data: unknown task(s) {bad}; expected some of {TASKS}")
    root.mkdir(parents=True, exist_ok=True)
    (root / "README.txt").write_text(README.format(train=", ".join(TRAIN_PHOTOS), test=", ".join(TEST_PHOTOS)))
    result: dict[str, Any] = {}
    for task in tasks:
        tmp = root / f".{task}.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        info = build_images(task, tmp) if task in IMAGE_SIMS else build_spectral(task, tmp)
        (tmp / "info.json").write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
        dest = root / task
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
        result[task] = {"root": str(dest), "train": COUNTS["train"], "test": COUNTS["test"],
                        **{k: v for k, v in info.items() if k != "samples"}}
    return result


def ensure_demo_data(root: str | Path, tasks=None) -> dict[str, Any]:
    """Build only the tasks whose ``<root>/<task>/info.json`` is missing (what training calls on demand)."""
    root = Path(root)
    tasks = tuple(TASKS if tasks is None else ([tasks] if isinstance(tasks, str) else tasks))
    missing = [t for t in tasks if not (root / t / "info.json").is_file()]
    return build_demo_data(root, missing) if missing else {}


def register(app) -> None:
    """Add ``demo-data`` to the ``python -m fusion`` typer app."""
    import typer

    @app.command("demo-data")
    def demo_data(out: Path = typer.Option(Path("demo_data"), "--out", help="output folder"),
                  task: list[str] = typer.Option(None, "--task", help="task(s) to build (default: all six)")) -> None:
        """Build the embedded demo datasets (deterministic stand-ins made from skimage photos)."""
        try:
            info = build_demo_data(out, task or None)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from exc
        for t, d in info.items():
            typer.echo(f"{t:5s} {d['train']} train / {d['test']} test -> {d['root']}")
        typer.echo(f"demo data (stand-ins for the real datasets, see {Path(out) / 'README.txt'}) ready")
