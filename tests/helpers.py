"""Shared pieces of the tests: tiny files, CLI invocation, tiny training runs, crafted checkpoints, manifests."""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import torch
import typer
from PIL import Image
from typer.testing import CliRunner

import manifests

REPO = Path(__file__).resolve().parents[1]
TINY = {"crop_size": (32, 32), "drop_path": 0.0}
BAD_NAME = os.fsdecode(b"caf\xe9")  # a Latin-1 file name: not valid UTF-8



def make_app(*modules: str) -> typer.Typer:
    import importlib

    app = typer.Typer()
    for m in modules:
        importlib.import_module(m).register(app)
    return app


FUSION = make_app("fusion.train.cli", "fusion.metrics.cli")


def invoke(app: typer.Typer, *args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def write_png(path: Path, h: int = 24, w: int = 24, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(30, 220, (h, w)).astype(np.uint8)).save(path)
    return path


def write_float_tiff(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(arr, np.float32), mode="F").save(path)
    return path


def file_digests(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (what must survive a failed job unchanged)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def error_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith("error:") or "warning:" in ln]


def copy_demo(demo_root: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "demo"
    shutil.copytree(demo_root, dst)
    return dst


def tiny_run(demo_dir: Path, out: Path, **kw):
    from fusion.train.runner import run_training

    args = dict(demo_dir=demo_dir, steps=3, batch_size=2, overrides=TINY, evaluate=False, progress=False,
                checkpoint_every=100, log_every=1, device="cpu")
    args.update(kw)
    return run_training("mef", out, **args)


def annotate_vif(data: Path, out: Path, models: Path, **kw):
    from annotate.runner import run_annotation
    from annotate.smoke import SMOKE_OVERRIDES

    return run_annotation("vif", data, out, model_dir=models, progress=False, overrides=SMOKE_OVERRIDES,
                          batch_size=2, **kw)


def make_vif_dir(root: Path, names: list[str]) -> Path:
    for i, n in enumerate(names):
        write_png(root / "ir" / f"{n}.png", seed=i)
        write_png(root / "vi" / f"{n}.png", seed=100 + i)
    return root


class Evil:
    """Unpickling this runs a shell command (what a crafted checkpoint does)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def evil_checkpoint(path: Path, marker: Path) -> Path:
    torch.save({"model": {}, "config": {"task": "mef"}, "payload": Evil(marker)}, path)
    return path


def manifest_table(tmp_path: Path, ids: list[str], *, caption: str = "a") -> Path:
    images = tmp_path / "images"
    rows = []
    for i, sid in enumerate(ids):
        pa_, pb_ = write_png(images / "ir" / f"{sid}.png", seed=i), write_png(images / "vi" / f"{sid}.png", seed=9 + i)
        rows.append({"sample_id": sid, "dataset": "toy", "split": "test", "task": "vif", "status": "ok",
                     "path_a": f"ir/{sid}.png", "path_b": f"vi/{sid}.png", "sha256_a": manifests.sha256_file(pa_),
                     "sha256_b": manifests.sha256_file(pb_), "height": 24, "width": 24, "caption_a": caption,
                     "caption_b": "b"})
    return manifests.rows_to_table(rows)


def manifests_cli(*args):
    from manifests.cli import app

    return invoke(app, *args)
