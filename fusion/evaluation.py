"""Fuse-and-score: the one evaluation layer behind ``python -m fusion train``/``evaluate``/``metrics``, the bench
quality section and the bundled models' test-set tables.

* :func:`as_fuser` / :func:`model_fuser`: a method (checkpoint path, ``nn.Module``, classical baseline name or a
  callable) -> a fusion function on arrays;
* :func:`score_fusion`: ``fusion.metrics.fusion_metrics`` of one fused image (values as plain floats);
* :class:`Scores` / :func:`evaluate_items`: the loop fusing items with several methods and scoring each result;
* :func:`summarise`, :func:`means`, :func:`best_per_metric`: per-set mean/std/n, the mean tables and the best method
  per metric (``fusion.metrics.LOWER_IS_BETTER`` decides the direction).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: fn(Y_a, Y_b) -> Y: two HxW planes in [0, 1] -> one HxW plane
Fuser = Callable[[np.ndarray, np.ndarray], np.ndarray]


# ---------------------------------------------------------------- methods -> functions
def _batched(x: Any, planes: bool) -> Any:
    """HxW plane -> [1, 1, H, W] tensor, CxHxW array/tensor -> [1, C, H, W] float32 tensor."""
    import torch

    t = x.float() if torch.is_tensor(x) else torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return t[None, None] if planes else t[None]


def model_fuser(model: Any, *, guidance: dict[str, Any] | None = None, tile: int | None = None, overlap: int = 64,
                bf16: bool | None = None) -> Callable[..., np.ndarray]:
    """fn(a, b, **guidance) running ``model``: a, b HxW planes -> HxW, or CxHxW arrays/tensors -> C_out x H x W
    (float32 numpy in [0, 1]); ``guidance`` (batched text/text_mask/mask tensors), tile/overlap/bf16 as in
    ``fusion.train.inference.run_model``."""
    from fusion.train.inference import run_model

    fixed = dict(guidance or {})

    def fn(a: Any, b: Any, **kw: Any) -> np.ndarray:
        planes = np.ndim(a) == 2
        g = {**fixed, **kw}
        out = run_model(model, _batched(a, planes), _batched(b, planes), text=g.get("text"),
                        text_mask=g.get("text_mask"), mask=g.get("mask"), tile=tile, overlap=overlap, bf16=bf16)
        return (out[0, 0] if planes else out[0]).cpu().numpy()
    return fn


def as_fuser(method: Any, **model_kw: Any) -> Callable[..., np.ndarray]:
    """A method as a fusion function: a callable as it is, an ``nn.Module`` or a checkpoint file (EMA weights;
    ``fusion.train.inference.load_model``) via :func:`model_fuser`, else a baseline name (``fusion.baselines``)."""
    from torch import nn

    if isinstance(method, nn.Module):
        return model_fuser(method, **model_kw)
    if callable(method):
        return method
    if isinstance(method, Path) or (isinstance(method, str) and Path(method).suffix in (".pt", ".pth")):
        from fusion.train.inference import load_model

        model, _ = load_model(method)
        return model_fuser(model, **model_kw)
    from fusion.baselines import get_method

    return get_method(str(method)).fn


# ---------------------------------------------------------------- scoring
def numeric(res: dict[str, Any]) -> dict[str, float]:
    """The numeric entries of a metrics dict as plain floats."""
    return {k: float(v) for k, v in res.items() if isinstance(v, (int, float, np.floating, np.integer))}


def score_fusion(fused: np.ndarray, a: np.ndarray, b: np.ndarray, *, scale: float = 255.0,
                 **metric_kw: Any) -> dict[str, float]:
    """``fusion.metrics.fusion_metrics`` of HxW[x3] F against A, B after multiplying all three by ``scale``
    (255 for [0, 1] data, 1 for images already on 0..255); ``metric_kw``: color, metrics, lpips_weights."""
    from fusion.metrics import fusion_metrics

    if scale != 1.0:
        fused, a, b = fused * scale, a * scale, b * scale
    return numeric(fusion_metrics(fused, a, b, **metric_kw))


PAN_MIN_SIDE = 32  # Q2n and Q need whole 32x32 blocks


def pan_regions(dataset: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    """(index, sample) of each reduced-resolution sample of a pansharpening dataset that is at least
    ``PAN_MIN_SIDE`` on both sides (smaller regions, e.g. WV3_example's halves, cannot be scored)."""
    for i in range(len(dataset)):
        s = dataset[i]
        if min(s["gt"].shape[-2:]) >= PAN_MIN_SIDE:
            yield i, s


def score_pan(fused: np.ndarray, sample: dict[str, Any], *, sensor: str | None = None) -> dict[str, float]:
    """``fusion.metrics.pansharpening_metrics`` of ``fused`` [H, W, C] in sensor DN against the sample's
    reference (``gt`` [C, H, W] in [0, 1] times ``max_value``), at the sample's ratio (PAN / MS width)."""
    from fusion.metrics import pansharpening_metrics

    mv = float(sample["max_value"])
    ratio = int(round(sample["b"].shape[-1] / sample["ms"].shape[-1]))
    gt = sample["gt"].double().numpy().transpose(1, 2, 0) * mv
    return numeric(pansharpening_metrics(fused, gt, ratio=ratio, sensor=sensor, max_value=mv))


@dataclass
class Scores:
    """Metric rows of every method: ``rows[method]`` (one dict per item), ``per_item[id][method]``, ``seconds``."""

    rows: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    per_item: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    seconds: dict[str, list[float]] = field(default_factory=dict)

    def add(self, item_id: str, method: str, scores: dict[str, float], seconds: float | None = None) -> None:
        """Record one method's scores on one item (and the seconds its fusion took)."""
        self.rows.setdefault(method, []).append(scores)
        self.per_item.setdefault(item_id, {})[method] = scores
        if seconds is not None:
            self.seconds.setdefault(method, []).append(seconds)

    def run_item(self, item_id: str, item: Any, methods: dict[str, Callable[[Any], Any]],
                 score: Callable[[Any, Any], dict[str, float]],
                 on_fused: Callable[[str, str, Any, dict[str, float]], None] | None = None) -> None:
        """Fuse ``item`` with every method (timed), score each result, then ``on_fused(id, method, fused, scores)``."""
        for name, fn in methods.items():
            t0 = time.perf_counter()
            fused = fn(item)
            dt = time.perf_counter() - t0
            res = numeric(score(fused, item))
            self.add(item_id, name, res, dt)
            if on_fused is not None:
                on_fused(item_id, name, fused, res)

    def summary(self, *, drop_nan: bool = True, keep_empty: bool = True) -> dict[str, dict[str, dict[str, float]]]:
        """method -> metric -> {mean, std, n} (:func:`summarise` of each method's rows)."""
        return {m: summarise(r, drop_nan=drop_nan, keep_empty=keep_empty) for m, r in self.rows.items()}


def evaluate_items(items: Iterable[tuple[str, Any]], methods: dict[str, Callable[[Any], Any]],
                   score: Callable[[Any, Any], dict[str, float]], **kw: Any) -> Scores:
    """:meth:`Scores.run_item` over ``(id, item)`` pairs; every method's list exists even when no item came."""
    out = Scores(rows={m: [] for m in methods}, seconds={m: [] for m in methods})
    for item_id, item in items:
        out.run_item(item_id, item, methods, score, **kw)
    return out


def fusion_pair_scores(pairs: Iterable[tuple[str, np.ndarray, np.ndarray]], methods: dict[str, Fuser],
                       **metric_kw: Any) -> Scores:
    """Fuse (id, Y_a, Y_b) pairs of HxW planes in [0, 1] with every method (result clipped to [0, 1], float64)
    and score with :func:`score_fusion` on the 0..255 scale."""
    wrapped = {name: (lambda ab, fn=fn: np.clip(np.asarray(fn(ab[0], ab[1]), dtype=np.float64), 0.0, 1.0))
               for name, fn in methods.items()}
    return evaluate_items(((pid, (a, b)) for pid, a, b in pairs), wrapped,
                          lambda f, ab: score_fusion(f, ab[0], ab[1], **metric_kw))


# ---------------------------------------------------------------- tables
def summarise(rows: Sequence[dict[str, Any]], *, drop_nan: bool = True,
              keep_empty: bool = True) -> dict[str, dict[str, float]]:
    """metric -> {mean, std (population), n} over ``rows``; ``drop_nan`` ignores NaN/inf values, ``keep_empty``
    keeps a metric without any value (mean and std NaN, n 0)."""
    keys = sorted({k for r in rows for k in r})
    out: dict[str, dict[str, float]] = {}
    for k in keys:
        vals = [r[k] for r in rows if k in r and isinstance(r[k], (int, float, np.floating, np.integer))]
        v = np.asarray([x for x in vals if math.isfinite(x)] if drop_nan else vals)  # dtype as given
        if v.size:
            out[k] = {"mean": float(v.mean()), "std": float(v.std()), "n": int(v.size)}
        elif keep_empty:
            out[k] = {"mean": float("nan"), "std": float("nan"), "n": 0}
    return out


def means(summary: dict[str, dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """method -> metric -> mean, from a :meth:`Scores.summary`-shaped table."""
    return {m: {k: float(s["mean"]) for k, s in table.items()} for m, table in summary.items()}


def higher_is_better(name: str, lower: Iterable[str] | None = None) -> bool:
    """Whether a larger value of metric ``name`` is better (``lower``: default ``fusion.metrics.LOWER_IS_BETTER``)."""
    if lower is None:
        from fusion.metrics import LOWER_IS_BETTER as lower
    return name not in set(lower)


def best_per_metric(mean_table: dict[str, dict[str, float]], metrics: Iterable[str],
                    lower: Iterable[str] | None = None) -> dict[str, str]:
    """metric -> the method with the best finite mean (first of equals, in the table's order)."""
    best: dict[str, str] = {}
    for k in metrics:
        vals = {m: row.get(k, float("nan")) for m, row in mean_table.items()}
        vals = {m: v for m, v in vals.items() if math.isfinite(v)}
        if vals:
            best[k] = (max if higher_is_better(k, lower) else min)(vals, key=vals.get)
    return best


def take_round_robin(groups: Sequence[Sequence[Any]], n: int) -> list[Any]:
    """Round-robin over the groups (test sets) so each contributes, at most ``n`` items in all."""
    out: list[Any] = []
    i = 0
    while len(out) < n and any(i < len(g) for g in groups):
        for g in groups:
            if i < len(g) and len(out) < n:
                out.append(g[i])
        i += 1
    return out
