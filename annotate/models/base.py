"""Shared model-wrapper plumbing: source resolution (hub id or local directory), device/dtype, provenance."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".json", ".txt", ".model")


class ModelLoadError(ValueError):
    """A model source (hub id or local directory) cannot be loaded; the message names it."""


@dataclass(frozen=True)
class ModelRef:
    """Provenance of one model: its role, id (hub id or local directory name) and revision."""

    role: str
    id: str
    revision: str | None

    def as_row(self) -> dict[str, Any]:
        return {"role": self.role, "id": self.id, "revision": self.revision}


@dataclass
class Detections:
    """Boxes of one image: ``boxes`` [N, 4] float32 xyxy pixels, ``labels`` N names, ``scores`` [N] float32."""

    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    labels: list[str] = field(default_factory=list)
    scores: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))

    def __len__(self) -> int:
        return len(self.labels)


def _looks_like_path(source: str) -> bool:
    # Hub ids are "name" or "org/name"; anything else (absolute, ./, ../, ~, deeper nesting) is a path.
    return (os.path.isabs(source) or source.startswith((".", "~")) or source.count("/") > 1
            or os.sep != "/" and os.sep in source)


def resolve_source(source: str | os.PathLike[str], role: str) -> tuple[str, bool]:
    """``(source, is_local)``; raises :class:`ModelLoadError` naming ``source`` for a bad local path."""
    text = os.fspath(source)
    if not text:
        raise ModelLoadError(f"{role} model: empty model path / hub id")
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"{role} model path {text!r} is a file; expected a model directory "
                                 "(saved with save_pretrained) or a hub id")
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{role} model directory {text!r} has no config.json; "
                                 "expected a directory saved with save_pretrained")
        return str(path), True
    if _looks_like_path(text):
        raise ModelLoadError(f"{role} model directory {text!r} does not exist")
    return text, False


def local_revision(directory: str | os.PathLike[str]) -> str:
    """Content fingerprint of a local model directory: sha256 over its weight/config/tokenizer files."""
    h = hashlib.sha256()
    root = Path(directory)
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix in WEIGHT_SUFFIXES:
            h.update(p.relative_to(root).as_posix().encode() + b"\0")
            with open(p, "rb") as f:
                while block := f.read(1 << 22):
                    h.update(block)
    return "sha256:" + h.hexdigest()[:16]


def model_ref(role: str, source: str, is_local: bool, model: Any) -> ModelRef:
    """Provenance of a loaded model (local: directory name + content hash; hub: id + commit)."""
    if is_local:
        return ModelRef(role, Path(source).name, local_revision(source))
    commit = getattr(getattr(model, "config", None), "_commit_hash", None)
    return ModelRef(role, source, commit)


def load_with(loader: Any, source: str, is_local: bool, role: str, **kwargs: Any) -> Any:
    """``loader.from_pretrained(source, **kwargs)`` with errors re-raised as :class:`ModelLoadError`.

    For a model class, the checkpoint's ``model_type`` must be the class's own: transformers would
    otherwise load e.g. a T5 folder into ``SamModel`` with freshly initialised (random) weights.
    """
    try:
        expected = getattr(getattr(loader, "config_class", None), "model_type", None)
        if expected:
            from transformers import AutoConfig

            found = AutoConfig.from_pretrained(source).model_type
            if found != expected:
                raise ModelLoadError(f"{role} model {source!r} is a {found!r} checkpoint; "
                                     f"{loader.__name__} needs a {expected!r} one")
        return loader.from_pretrained(source, **kwargs)
    except ModelLoadError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as e:
        name = getattr(loader, "__name__", loader)
        if is_local:
            raise ModelLoadError(f"cannot load {role} model from local directory {source!r} with {name}: {e}") from e
        raise ModelLoadError(f"cannot load {role} model {source!r}: there is no such local directory, and as a hub "
                             f"id it is not in the Hugging Face cache or cannot be downloaded ({name}: {e})") from e


@dataclass
class Loaded:
    """What :func:`load_pretrained` returns: the processor (or tokenizer), the model in eval mode, where it runs."""

    processor: Any
    model: Any
    device: Any
    dtype: Any
    ref: ModelRef


def load_pretrained(role: str, source: str | os.PathLike[str], processor_cls: Any, model_cls: Any, *,
                    device: str | None = None, dtype: str | None = None) -> Loaded:
    """Resolve ``source`` (hub id or local directory), load processor and model, move to device, eval mode."""
    path, is_local = resolve_source(source, role)
    dev = select_device(device)
    torch_dtype = select_dtype(dev, dtype)
    processor = load_with(processor_cls, path, is_local, role)
    model = load_with(model_cls, path, is_local, role, dtype=torch_dtype)
    model.to(dev).eval()
    return Loaded(processor, model, dev, torch_dtype, model_ref(role, path, is_local, model))


def select_device(device: str | None = None) -> Any:
    """``torch.device``: the given one, else ``cuda`` (LOCAL_RANK under torchrun) when available, else CPU."""
    import torch

    if device:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def select_dtype(device: Any, dtype: str | None = None) -> Any:
    """``torch.dtype``: the given name, else bfloat16 on CUDA and float32 elsewhere."""
    import torch

    if dtype:
        names = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16,
                 "float16": torch.float16, "fp32": torch.float32, "float32": torch.float32}
        if dtype not in names:
            raise ValueError(f"dtype must be one of {sorted(names)}, got {dtype!r}")
        return names[dtype]
    return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32


def chunks(items: list[Any], size: int) -> list[list[Any]]:
    """Consecutive slices of ``items`` with at most ``size`` elements each."""
    if size < 1:
        raise ValueError(f"batch size must be >= 1, got {size}")
    return [items[i:i + size] for i in range(0, len(items), size)]


def clip_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Clip xyxy boxes [N, 4] to the image rectangle (float32)."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    return boxes
