"""Fuse a test split with a model and a classical baseline, score both with the metrics suite, write a report.

Fusion tasks are scored on the Y channel (0-255 scale, the usual MATLAB convention: sources and result
as grey images); pan/HMIF with the reference-based pansharpening metrics against the ground truth.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from fusion.evaluation import Scores, higher_is_better, model_fuser, summarise
from fusion.train.inference import restore_colour, write_image
from fusion.train.report import write_report
from fusion.train.sampling import load_item
from rwkvfusion_io.color import false_colour

__all__ = ["evaluate_dataset", "higher_is_better", "summarise", "captions", "mask_preview"]


def _np(t: Any) -> np.ndarray | None:
    if t is None:
        return None
    return t.detach().cpu().float().numpy() if torch.is_tensor(t) else np.asarray(t, dtype=np.float32)


def _cbcr(sample: dict[str, Any], key: str) -> np.ndarray | None:
    """Sample's CbCr [2, H, W] -> HxWx2, or None when absent or grey (constant 0.5)."""
    c = _np(sample.get(key))
    if c is None or np.allclose(c, 0.5, atol=1e-6):
        return None
    return c.transpose(1, 2, 0)


def mask_preview(mask: Any) -> np.ndarray | None:
    """A mask (class map [H, W], or float [C, H, W]) as an RGB image in [0, 1] for the report."""
    m = _np(mask)
    if m is None:
        return None
    if m.ndim == 3 and m.shape[0] == 1:
        return np.clip(m[0], 0, 1)
    if m.ndim == 3 and m.shape[0] == 2:
        return np.clip(np.stack([m[0], m[1], np.zeros_like(m[0])], axis=2), 0, 1)
    cls = m.argmax(0) if m.ndim == 3 else m.astype(np.int64)
    rng = np.random.default_rng(0)
    palette = np.concatenate([np.zeros((1, 3)), rng.uniform(0.2, 1.0, (255, 3))])
    return palette[np.clip(cls, 0, 255)].astype(np.float32)


def captions(dataset: Dataset, sample: dict[str, Any]) -> dict[str, str]:
    """The manifest captions of a sample (from the sample itself or the dataset's matched manifest row)."""
    row: dict[str, Any] = {}
    g = getattr(dataset, "guidance", None)
    if g is not None:
        row = getattr(g, "matched", {}).get(str(sample.get("id")), {}) or {}
    out = {}
    for key, label in (("caption_a", "caption a"), ("caption_b", "caption b")):
        text = sample.get(key) or row.get(key)
        if text:
            out[label] = str(text)
    return out


def _batch1(sample: dict[str, Any], key: str) -> torch.Tensor | None:
    v = sample.get(key)
    return v[None] if torch.is_tensor(v) else None


def evaluate_dataset(model: nn.Module | None, dataset: Dataset, out_dir: str | Path, *, task: str,
                     baseline: str | None = None, write_images: bool = True, report_samples: int = 12,
                     title: str | None = None, progress: bool = True,
                     notes: list[str] | None = None) -> dict[str, Any]:
    """Fuse every sample of ``dataset`` with ``model`` (and ``baseline``), score, write outputs.

    Writes ``out_dir/metrics.json``, fused images under ``out_dir/fused/<method>/<id>.png`` and
    ``out_dir/report.html``; returns the metrics dict.  ``baseline`` defaults to "average" for
    fusion tasks and "exp" (upsampled MS) for pan/HMIF.
    """
    from fusion.config import FUSION_TASKS, get_config

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fusion_task = task in FUSION_TASKS
    ratio = int((model.cfg if model is not None else get_config(task)).data.ratio)
    baseline = baseline or ("average" if fusion_task else "exp")
    methods: dict[str, Callable[[dict[str, Any]], np.ndarray]] = {}
    if model is not None:
        model.eval()
        fuse = model_fuser(model)
        methods["ours"] = lambda s: fuse(s["a"], s["b"], text=_batch1(s, "text"), text_mask=_batch1(s, "text_mask"),
                                         mask=_batch1(s, "mask"))
    methods[baseline] = _baseline_fn(baseline, task)
    methods = {name: _checked(name, fn) for name, fn in methods.items()}

    scores = Scores(rows={k: [] for k in methods})
    report: list[dict[str, Any]] = []
    idx = range(len(dataset))  # type: ignore[arg-type]
    if progress:
        from tqdm.auto import tqdm
        idx = tqdm(idx, desc=f"evaluate {task}", dynamic_ncols=True)
    for i in idx:
        s = load_item(dataset, i)
        sid = str(s.get("id", i))
        a, b = _np(s["a"]), _np(s["b"])
        entry: dict[str, Any] = {"id": sid, "images": [], "metrics": {}, "captions": captions(dataset, s)}
        show = len(report) < report_samples
        if write_images and show:
            entry["images"] += _source_previews(out, sid, s, a, b, fusion_task)

        def score(fused: np.ndarray, s: dict[str, Any], a: np.ndarray = a, b: np.ndarray = b) -> dict[str, float]:
            return _score(fused, s, a, b, fusion_task, task, ratio)

        def written(sid: str, name: str, fused: np.ndarray, res: dict[str, float], s: dict[str, Any] = s,
                    entry: dict[str, Any] = entry, show: bool = show) -> None:
            entry["metrics"][name] = res
            if write_images:
                img = (restore_colour(fused[0], _cbcr(s, "cbcr_a"), _cbcr(s, "cbcr_b")) if fusion_task
                       else false_colour(fused))
                p = write_image(out / "fused" / name / f"{sid}.png", img)
                if show:
                    entry["images"].append((name, p.relative_to(out).as_posix()))
        scores.run_item(sid, s, methods, score, on_fused=written)
        if show:
            report.append(entry)
    per_sample = scores.per_item
    if not per_sample:
        raise ValueError("the evaluation dataset is empty")
    summary = scores.summary()
    hb = {m: higher_is_better(m) for s in summary.values() for m in s}
    result = {"task": task, "n_samples": len(per_sample), "methods": summary, "higher_is_better": hb,
              "per_sample": per_sample}
    (out / "metrics.json").write_text(json.dumps(result, indent=2, allow_nan=True))
    if write_images:
        flat = {k: {m: st for m, st in v.items()} for k, v in summary.items()}
        write_report(out, title=title or f"RWKVFusion {task}: test split", summary=flat, samples=report,
                     higher_better=hb, notes=notes)
    return result


def _checked(name: str, fn: Callable[[dict[str, Any]], np.ndarray]) -> Callable[[dict[str, Any]], np.ndarray]:
    """``fn(sample)`` -> [C, H, W], raising when its size differs from the sample's source a."""
    def run(s: dict[str, Any]) -> np.ndarray:
        fused = fn(s)
        if tuple(fused.shape[-2:]) != tuple(s["a"].shape[-2:]):
            raise ValueError(f"{name} returned {fused.shape} for sample {s.get('id')}, expected size "
                             f"{tuple(s['a'].shape[-2:])}")
        return fused
    return run


def _baseline_fn(name: str, task: str) -> Callable[[dict[str, Any]], np.ndarray]:
    from fusion.baselines import get_method

    spec = get_method(name)
    if spec.kind == "fusion":
        def fuse(s: dict[str, Any]) -> np.ndarray:
            y = spec.fn(_np(s["a"])[0], _np(s["b"])[0])
            return np.clip(np.asarray(y, dtype=np.float32), 0, 1)[None]
        return fuse
    if name == "exp":
        # the network's own input `lms` is the upsampled MS: the EXP baseline without re-interpolating
        return lambda s: np.clip(_np(s["a"]), 0, 1)

    def pan(s: dict[str, Any]) -> np.ndarray:
        ms = _np(s.get("ms"))
        if ms is None:
            raise ValueError(f"baseline {name!r} needs the low-resolution 'ms' in the samples")
        ratio = int(round(_np(s["b"]).shape[-1] / ms.shape[-1]))
        f = spec.fn(ms.transpose(1, 2, 0), _np(s["b"])[0], ratio)
        return np.clip(np.asarray(f, dtype=np.float32).transpose(2, 0, 1), 0, 1)
    return pan


def _score(fused: np.ndarray, s: dict[str, Any], a: np.ndarray, b: np.ndarray, fusion_task: bool,
           task: str, ratio: int) -> dict[str, float]:
    if fusion_task:
        from fusion.evaluation import score_fusion

        return score_fusion(fused[0], a[0], b[0])
    else:
        from fusion.evaluation import numeric, score_pan
        from fusion.metrics import hmif_metrics

        gt = _np(s.get("gt"))
        if gt is None:
            raise ValueError(f"sample {s.get('id')}: pan/HMIF evaluation needs a ground truth 'gt'")
        if task == "pan":  # samples are normalised to [0, 1]; "max_value" is the sensor's DN of 1.0
            return score_pan(fused.transpose(1, 2, 0).astype(np.float64) * float(_np(s["max_value"])), s)
        return numeric(hmif_metrics(fused.transpose(1, 2, 0), gt.transpose(1, 2, 0), ratio, data_range=1.0))


def _source_previews(out: Path, sid: str, s: dict[str, Any], a: np.ndarray, b: np.ndarray,
                     fusion_task: bool) -> list[tuple[str, str]]:
    imgs: list[tuple[str, str]] = []
    if fusion_task:
        srcs = [("source a", restore_colour(a[0], _cbcr(s, "cbcr_a"), None)),
                ("source b", restore_colour(b[0], None, _cbcr(s, "cbcr_b")))]
    else:
        srcs = [("lms", false_colour(a)), ("second source", false_colour(b))]
    gt = _np(s.get("gt"))
    if gt is not None:
        srcs.append(("ground truth", restore_colour(gt[0], None, None) if fusion_task else false_colour(gt)))
    mp = mask_preview(s.get("mask"))
    if mp is not None:
        srcs.append(("mask", mp))
    for cap, img in srcs:
        p = write_image(out / "inputs" / f"{sid}_{cap.replace(' ', '_')}.png", img)
        imgs.append((cap, p.relative_to(out).as_posix()))
    return imgs
