"""Checkpoint files: atomic writing, safe reading, and the RNG state needed to resume a run exactly.

A checkpoint is read without running code from the file: ``.pt`` files (``torch.save`` of plain
containers, tensors and numbers) are loaded with ``torch.load(weights_only=True)``, which refuses
pickled objects of any other type; ``.safetensors`` files hold the weights with the model config as
JSON metadata. A crafted file therefore fails with a one-line error instead of executing anything.
"""
from __future__ import annotations

import io
import json
import logging
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rwkvfusion_io.files import atomic_write, stale_temporaries

logger = logging.getLogger(__name__)

# 2: RNG states as tensors/plain Python values (readable with weights_only=True)
CHECKPOINT_FORMAT = 2
SAFETENSORS_SUFFIX = ".safetensors"


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, unsafe or not an rwkvfusion checkpoint (names the file)."""


def save_atomic(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file in the same folder, then ``os.replace`` (never a torn file)."""
    def write(fh: Any) -> None:
        buf = io.BytesIO()
        torch.save(obj, buf)
        fh.write(buf.getbuffer())

    return atomic_write(path, write)


def clean_stale_temporaries(path: str | Path) -> list[Path]:
    """Remove the temporary files an interrupted :func:`save_atomic` of ``path`` left behind."""
    removed = []
    for tmp in stale_temporaries(path):
        try:
            tmp.unlink()
        except OSError as err:
            logger.warning("cannot remove the stale temporary file %s: %s", tmp, err)
            continue
        removed.append(tmp)
    if removed:
        logger.info("removed %d stale temporary checkpoint file(s) beside %s", len(removed), path)
    return removed


def _numpy_globals() -> list[Any]:
    """What unpickling a numeric NumPy array needs (the NumPy RNG state of format-1 checkpoints)."""
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # NumPy 1.x
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    numeric = {type(np.dtype(c)) for c in "?bBhHiIlLqQefd"}
    return [_reconstruct, np.ndarray, np.dtype, *sorted(numeric, key=lambda t: t.__name__)]


def _check_arrays(obj: Any, path: Path) -> None:
    """Refuse NumPy arrays that are not plain numbers (object arrays could carry arbitrary objects)."""
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in "biuf":
            raise CheckpointError(f"checkpoint {path} holds a NumPy array of dtype {obj.dtype}; only numeric "
                                  "arrays are loaded")
    elif isinstance(obj, dict):
        for v in obj.values():
            _check_arrays(v, path)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _check_arrays(v, path)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _load_safetensors(path: Path, map_location: str | torch.device) -> dict[str, Any]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device=str(map_location)) as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path} could not be read as safetensors: {_first_line(err)}") from err
    if "config" not in meta:
        config, step = _sidecar_config(path)
        return {"format": CHECKPOINT_FORMAT, "task": config.get("task"), "config": config,
                "model": {k: v.float() for k, v in state.items()}, "ema": None,
                "step": int(meta.get("step", step))}
    try:
        config = json.loads(meta["config"])
        extra = json.loads(meta.get("extra", "{}"))
    except json.JSONDecodeError as err:
        raise CheckpointError(f"checkpoint {path}: its metadata is not valid JSON ({err})") from err
    return {"format": int(meta.get("format", CHECKPOINT_FORMAT)), "task": config.get("task"), "config": config,
            "model": state, "ema": None, "step": int(meta.get("step", 0)), **extra}


def _sidecar_config(path: Path) -> tuple[dict[str, Any], int]:
    """(config, step) of a weights-only safetensors file: an exported model's ``<name>.json`` beside it
    (``fusion.pretrained.export_run``), else the ``checkpoint.pt`` of the run folder it lies in (a run's
    ``best.safetensors``, or ``val_weights/step_<n>.safetensors`` one level down, written before the validator
    stored the config in their metadata)."""
    card = path.with_suffix(".json")
    runs = [path.parent / "checkpoint.pt"] + ([path.parent.parent / "checkpoint.pt"]
                                              if path.parent.name == "val_weights" else [])
    if card.is_file():
        from fusion.pretrained import read_card

        try:
            info = read_card(card)
        except ValueError as err:
            raise CheckpointError(f"checkpoint {path}: {err}") from err
        return info["config"], int((info.get("training") or {}).get("step", 0))
    for run_ckpt in runs:
        if run_ckpt.is_file():
            return load_checkpoint(run_ckpt)["config"], 0
    raise CheckpointError(f"checkpoint {path} is not an rwkvfusion checkpoint (no 'config' in its metadata, and "
                          f"neither {card.name} nor checkpoint.pt beside it)")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint (``.pt`` of :func:`save_atomic` or ``.safetensors``) without unpickling objects.

    Raises :class:`CheckpointError` (a ``ValueError``) naming the file when it is missing, corrupt, holds
    anything but tensors and plain values, or is not an rwkvfusion checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.suffix.lower() == SAFETENSORS_SUFFIX:
        ckpt = _load_safetensors(path, map_location)
    else:
        try:
            # numeric NumPy arrays are allowed for the RNG state of checkpoints written before format 2
            with torch.serialization.safe_globals(_numpy_globals()):
                ckpt = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as err:  # noqa: BLE001 - re-raised with the file name
            msg = _first_line(err)
            refused = re.search(r"Unsupported global: [^\n]*|unsupported GLOBAL [^\n]*|got <class [^>]*>", str(err))
            if refused or "weights_only" in str(err):
                detail = refused.group(0).removeprefix("got ").strip().rstrip(".") if refused else msg
                msg = f"it holds pickled Python objects, which are never loaded (only tensors and plain values): {detail}"
            raise CheckpointError(f"checkpoint {path} could not be read: {msg}") from err
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise CheckpointError(f"checkpoint {path} is not an rwkvfusion checkpoint (needs 'model' and 'config')")
    _check_arrays(ckpt.get("rng"), path)
    if ckpt.get("format", CHECKPOINT_FORMAT) > CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {path} has format {ckpt['format']}, newer than this code "
                              f"({CHECKPOINT_FORMAT})")
    return ckpt


def read_model_checkpoint(path: str | Path, *, use_ema: bool = True,
                          map_location: str | torch.device = "cpu") -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(config, state_dict)`` of a checkpoint, read safely: the EMA weights when present and ``use_ema``."""
    ckpt = load_checkpoint(path, map_location)
    ema = ckpt.get("ema")
    state = ema["module"] if use_ema and isinstance(ema, dict) and "module" in ema else ckpt["model"]
    if not isinstance(ckpt["config"], dict):
        raise CheckpointError(f"checkpoint {path}: 'config' is not a mapping")
    return dict(ckpt["config"]), dict(state)


def capture_rng() -> dict[str, Any]:
    """Python, NumPy, torch CPU (and CUDA) generator states, as tensors and plain values."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(),
             "numpy": {"name": str(name), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                       "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    random.setstate(state["python"])
    npst = state["numpy"]
    if isinstance(npst, dict):
        keys = np.asarray(npst["keys"].cpu().numpy() if torch.is_tensor(npst["keys"]) else npst["keys"],
                          dtype=np.uint32)
        npst = (npst["name"], keys, npst["pos"], npst["has_gauss"], npst["cached_gaussian"])
    np.random.set_state(npst)
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([c.cpu() for c in cuda])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def export_checkpoint(model: torch.nn.Module, path: str | Path, *, extra: dict[str, Any] | None = None,
                      step: int = 0) -> Path:
    """Write an inference-only checkpoint of ``model`` (which carries ``model.cfg``) at ``step``: config + weights.

    A ``.safetensors`` path gets safetensors weights with the config (and ``extra``) as JSON metadata;
    any other path a ``.pt`` file readable by :func:`load_checkpoint`.
    """
    cfg = getattr(model, "cfg", None)
    if cfg is None:
        raise ValueError("export_checkpoint: the model has no .cfg (build it with fusion.build_model)")
    if Path(path).suffix.lower() == SAFETENSORS_SUFFIX:
        from safetensors.torch import save

        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        meta = {"format": str(CHECKPOINT_FORMAT), "config": json.dumps(cfg.to_dict()), "step": str(int(step)),
                "extra": json.dumps(extra or {})}
        data = save(state, metadata=meta)
        return atomic_write(path, lambda fh: fh.write(data))
    state = {"format": CHECKPOINT_FORMAT, "task": cfg.task, "config": cfg.to_dict(),
             "model": model.state_dict(), "ema": None, "step": int(step), **(extra or {})}
    return save_atomic(state, path)
