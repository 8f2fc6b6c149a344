"""Validation on the split carved from the training data, and best-checkpoint selection.

``validate`` fuses up to ``max_pairs`` validation pairs of every dataset (evenly spaced, area-downscaled to
``max_side``) with a model and scores them with the fusion metrics (0-255 Y, MATLAB conventions); the
selection score is the mean over datasets of the per-dataset mean Qabf (each dataset counts once).
``Validator`` runs it from the trainer's checkpoint hook every ``every`` steps, keeps the history in
``<run>/val.json`` and the best EMA weights in ``<run>/best.safetensors`` (safetensors, float32), so a
resumed run continues with the same best-so-far; the EMA weights of every validated step are kept too
(``<run>/val_weights/step_<n>.safetensors``), so another selection can be studied without retraining.
"""
from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

VAL_METRICS = ("Qabf", "MI", "VIF", "SF", "Qy", "SSIM")
SELECT_METRIC = "Qabf"
# pansharpening: reduced-resolution metrics against the reference (Vivone's toolbox), selection on Q2n
PAN_VAL_METRICS = ("Q2n", "SAM", "ERGAS", "SCC")
PAN_SELECT_METRIC = "Q2n"


def _downscale(y: torch.Tensor, max_side: int) -> torch.Tensor:
    """[1, H, W] -> area-downscaled so the longer side is at most ``max_side``."""
    h, w = y.shape[-2:]
    s = max_side / max(h, w)
    if s >= 1.0:
        return y
    size = (max(16, int(round(h * s))), max(16, int(round(w * s))))
    return F.interpolate(y[None], size=size, mode="area")[0]


def validation_indices(dataset: Any, max_pairs: int) -> dict[str, list[int]]:
    """Per dataset name, up to ``max_pairs`` evenly spaced sample indices of a ``MultiDataset``."""
    names = [n for n, _, _ in getattr(dataset, "datasets", [])]  # full names (harvard/SPECT-MRI)
    out: dict[str, list[int]] = {}
    for i, sid in enumerate(dataset.ids):
        name = next((n for n in names if sid.startswith(n + "/")), sid.split("/", 1)[0])
        out.setdefault(name, []).append(i)
    picked = {}
    for name, idx in out.items():
        if len(idx) > max_pairs:
            idx = [idx[int(j)] for j in np.linspace(0, len(idx) - 1, max_pairs).round()]
        picked[name] = sorted(set(idx))
    return picked


@torch.no_grad()
def validate(model: nn.Module | Any, dataset: Any, *, max_pairs: int = 16, max_side: int = 512,
             metrics: tuple[str, ...] = VAL_METRICS) -> dict[str, Any]:
    """Scores of ``model`` (a network, or a classical ``fn(ya, yb) -> y`` on [H, W] arrays) on the validation
    ``dataset``: {"score", "per_dataset": {name: {metric: mean}}, "mean": {metric: mean over datasets},
    "pairs", "seconds"}."""
    from fusion.evaluation import as_fuser, score_fusion

    if getattr(dataset, "task", None) == "pan":
        return validate_pan(model, dataset)
    t0 = time.perf_counter()
    is_net = isinstance(model, nn.Module)
    was_training = model.training if is_net else False
    if is_net:
        model.eval()
    fuse = as_fuser(model)
    per_dataset: dict[str, dict[str, float]] = {}
    n = 0
    with torch.random.fork_rng(devices=[]):
        for name, idx in validation_indices(dataset, max_pairs).items():
            rows = []
            for i in idx:
                s = dataset[i]
                a, b = _downscale(s["a"], max_side), _downscale(s["b"], max_side)
                ya, yb = a[0].numpy(), b[0].numpy()
                f = np.clip(np.asarray(fuse(ya, yb), dtype=np.float32), 0, 1)
                rows.append(score_fusion(f, ya, yb, metrics=metrics))
                n += 1
            per_dataset[name] = {m: float(np.nanmean([r[m] for r in rows])) for m in metrics}
    if is_net:
        model.train(was_training)
    mean = {m: float(np.mean([d[m] for d in per_dataset.values()])) for m in metrics}
    return {"score": mean[SELECT_METRIC], "select_metric": SELECT_METRIC, "mean": mean,
            "per_dataset": per_dataset, "pairs": n, "seconds": time.perf_counter() - t0}


@torch.no_grad()
def validate_pan(model: nn.Module, dataset: Any) -> dict[str, Any]:
    """Pansharpening validation: every region of ``dataset`` (a reduced-resolution ``SpectralDataset``) fused
    whole and scored against its reference in sensor DN (``fusion.evaluation.score_pan``); score = mean Q2n."""
    from fusion.evaluation import PAN_MIN_SIDE, model_fuser, pan_regions, score_pan

    run = model_fuser(model)
    t0 = time.perf_counter()
    was_training = model.training
    model.eval()
    per_dataset: dict[str, dict[str, float]] = {}
    with torch.random.fork_rng(devices=[]):
        for _, s in pan_regions(dataset):
            f = run(s["a"], s["b"]).astype(np.float64).transpose(1, 2, 0) * float(s["max_value"])
            res = score_pan(f, s)
            per_dataset[str(s["id"])] = {m: res[m] for m in PAN_VAL_METRICS}
    model.train(was_training)
    if not per_dataset:
        raise ValueError(f"no validation region of at least {PAN_MIN_SIDE} px in {getattr(dataset, 'root', '?')}")
    mean = {m: float(np.mean([d[m] for d in per_dataset.values()])) for m in PAN_VAL_METRICS}
    return {"score": mean[PAN_SELECT_METRIC], "select_metric": PAN_SELECT_METRIC, "mean": mean,
            "per_dataset": per_dataset, "pairs": len(per_dataset), "seconds": time.perf_counter() - t0}


VAL_WEIGHTS_DIR = "val_weights"


def snapshot_path(run: str | Path, step: int) -> Path:
    """Where the Validator keeps the EMA weights validated at ``step`` (float32 safetensors)."""
    return Path(run) / VAL_WEIGHTS_DIR / f"step_{int(step)}.safetensors"


class Validator:
    """Trainer checkpoint hook: validate the EMA weights every ``every`` steps (and at the last step),
    log to ``<out>/val.json``, keep the best in ``<out>/best.safetensors``."""

    def __init__(self, dataset: Any, out_dir: str | Path, *, every: int, max_pairs: int, max_side: int,
                 resume: bool = False) -> None:
        self.dataset, self.out = dataset, Path(out_dir)
        self.every, self.max_pairs, self.max_side = every, max_pairs, max_side
        self.log_path, self.best_path = self.out / "val.json", self.out / "best.safetensors"
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        if resume and self.log_path.is_file():  # resumed run: keep the best so far
            state = json.loads(self.log_path.read_text())
            self.history, self.best = state.get("history", []), state.get("best")

    def __call__(self, trainer: Any) -> None:
        step = trainer.step
        if not trainer.env.is_main or (step % self.every and step < trainer.total_steps):
            return
        if any(h["step"] == step for h in self.history):
            return
        res = validate(trainer.ema.module, self.dataset, max_pairs=self.max_pairs, max_side=self.max_side)
        entry = {"step": step, **res}
        self.history.append(entry)
        from fusion.train.checkpoint import export_checkpoint
        from rwkvfusion_io.files import atomic_write

        # self-contained checkpoints (config in the metadata): --checkpoint takes them; the step's weights are
        # serialised once and a new best is an atomic copy of that file
        snap = export_checkpoint(trainer.ema.module, snapshot_path(self.out, step), step=step,
                                 extra={"score": res["score"]})
        if self.best is None or (math.isfinite(res["score"]) and res["score"] > self.best["score"]):
            self.best = entry
            data = snap.read_bytes()
            atomic_write(self.best_path, lambda fh: fh.write(data))
        tmp = self.log_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"select_metric": res["select_metric"], "best": self.best, "history": self.history},
                                  indent=2))
        tmp.replace(self.log_path)
        logger.info("validation step %d: %s %.4f (best %.4f at step %d) in %.0f s", step, res["select_metric"],
                    res["score"], self.best["score"], self.best["step"], res["seconds"])
