"""Atomic checkpoint files and the RNG state needed to resume a run exactly."""
from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_FORMAT = 1


def save_atomic(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file in the same folder, then ``os.replace`` (never a torn file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_atomic`; clear errors for missing or foreign files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # noqa: BLE001 - re-raised with the file name
        raise ValueError(f"checkpoint {path} could not be read: {err}") from err
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise ValueError(f"checkpoint {path} is not an rwkvfusion checkpoint (needs 'model' and 'config')")
    if ckpt.get("format", CHECKPOINT_FORMAT) > CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint {path} has format {ckpt['format']}, newer than this code ({CHECKPOINT_FORMAT})")
    return ckpt


def capture_rng() -> dict[str, Any]:
    """Python, NumPy, torch CPU (and CUDA) generator states."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([c.cpu() for c in cuda])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def export_checkpoint(model: torch.nn.Module, path: str | Path, *, extra: dict[str, Any] | None = None) -> Path:
    """Write an inference-only checkpoint of ``model`` (which carries ``model.cfg``): config + weights."""
    cfg = getattr(model, "cfg", None)
    if cfg is None:
        raise ValueError("export_checkpoint: the model has no .cfg (build it with fusion.build_model)")
    state = {"format": CHECKPOINT_FORMAT, "task": cfg.task, "config": cfg.to_dict(),
             "model": model.state_dict(), "ema": None, "step": 0, **(extra or {})}
    return save_atomic(state, path)
