"""Score a model against every classical baseline on the shared real TEST sets (never trained on).

For each test set of a task (``rwkvfusion_io.layouts.fusion_pairs``: VIF TNO / RoadScene, MIF MRI-SPECT / MRI-PET /
MRI-CT, MEF U2Fusion dataset1 / dataset2 / IFCNN sequences (darkest and brightest exposure), MFF Lytro /
U2Fusion) the sources are written as PNG to ``<out>/<set>/a`` and ``b``, each method's fused images (full
size, colour restored from the sources' chroma, as ``python -m fusion fuse`` writes them) to
``<out>/<set>/<method>/``, and everything is scored with ``fusion.metrics.cli.run_metrics`` -- exactly
``python -m fusion metrics --task T --a <set>/a --b <set>/b --fused <set>/<method> ...`` (grey = MATLAB
rgb2gray of the colour images, 0-255).
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

# the metrics of the acceptance criterion (Qcv: lower is better)
TEST_METRICS = ("Qabf", "MI", "VIF", "SF", "Qcb", "Qy", "Qcv", "SSIM")
LOWER = {"Qcv"}


def _set_name(pid: str) -> str:
    return pid.split("/", 1)[0]


def evaluate_testsets(task: str, data_root: Path, out: Path, *, model_fuse_y: Callable | None = None,
                      model_name: str = "rwkvfusion", max_pairs: int | None = None,
                      progress: bool = False) -> dict[str, Any]:
    """Fuse and score every test set of ``task``; returns {"protocol", "sets": {set: {"pairs", "metrics",
    "means": {method: {metric: mean}}, "best": {metric: method}, "verdict", "command"}}}."""
    from fusion.baselines import methods_for
    from fusion.evaluation import best_per_metric
    from fusion.metrics.cli import run_metrics
    from fusion.train.inference import fuse_arrays, read_image, write_image
    from rwkvfusion_io.layouts import fusion_pairs

    methods: dict[str, Callable] = {}
    if model_fuse_y is not None:
        methods[model_name] = model_fuse_y
    for spec in methods_for(task):
        methods[spec.name] = spec.fn
    sets: dict[str, Any] = {}
    for group in fusion_pairs(task, Path(data_root)):
        name = _set_name(group[0][0])
        pairs = group[:max_pairs] if max_pairs else group
        d = out / name
        for pid, pa, pb in pairs:
            stem = pid.split("/", 1)[1].replace("/", "_")
            img_a, img_b = read_image(pa), read_image(pb)
            write_image(d / "a" / f"{stem}.png", img_a)
            write_image(d / "b" / f"{stem}.png", img_b)
            for m, fn in methods.items():
                target = d / m / f"{stem}.png"
                if m != model_name and target.is_file():
                    continue  # baselines are deterministic: reuse earlier outputs
                write_image(target, fuse_arrays(fn, img_a, img_b))
        means: dict[str, dict[str, float]] = {}
        problems: list[str] = []
        for m in methods:  # one method at a time: deterministic baselines' scores are cached beside their images
            cache = d / m / "scores.json"
            key = {"metrics": list(TEST_METRICS), "pairs": sorted(p[0] for p in pairs)}
            if m != model_name and cache.is_file() and json.loads(cache.read_text()).get("key") == key:
                means[m] = json.loads(cache.read_text())["means"]
                continue
            rep = run_metrics(task, [d / m], d / "a", d / "b", metrics=list(TEST_METRICS), progress=progress)
            means[m] = {k: float(v[0]) for k, v in next(iter(rep.summary.values()), {}).items()}
            problems += rep.problems
            if m != model_name and not rep.problems:
                cache.write_text(json.dumps({"key": key, "means": means[m]}))
        best = best_per_metric({m: means[m] for m in methods}, TEST_METRICS, LOWER)
        entry = {"pairs": len(pairs), "metrics": list(TEST_METRICS), "means": means, "best": best,
                 "problems": problems[:10],
                 "command": (f"python -m fusion metrics --task {task} --a {d / 'a'} --b {d / 'b'} "
                             + " ".join(f"--fused {d / m}" for m in methods))}
        if model_fuse_y is not None:
            entry["verdict"] = verdict(means, model_name)
        sets[name] = entry
    return {"protocol": (f"Test sets under {data_root} (never trained on), full size; fused images written as PNG "
                         "with colour restored from the sources; scored with `python -m fusion metrics` "
                         "(grey = MATLAB rgb2gray, 0-255). Bold = best per column (Qcv: lowest)."),
            "sets": sets}


def verdict(means: dict[str, dict[str, float]], model: str) -> str:
    """Whether ``model`` beats every baseline on Qabf and on at least 4 of the other metrics."""
    others = [m for m in means if m != model]
    wins, losses = [], []
    for k in TEST_METRICS:
        mv = means[model].get(k, float("nan"))
        ov = [means[o].get(k, float("nan")) for o in others]
        ok = all((mv < v) if k in LOWER else (mv > v) for v in ov if math.isfinite(v)) and math.isfinite(mv)
        (wins if ok else losses).append(k)
    passed = "Qabf" in wins and len([w for w in wins if w != "Qabf"]) >= 4
    return (f"{model} beats every baseline on {', '.join(wins) or 'nothing'}; not on {', '.join(losses) or '-'}: "
            f"criterion (Qabf + 4 of 7) {'MET' if passed else 'NOT met'}.")


def summary_rows(result: dict[str, Any]) -> list[list[Any]]:
    """Flat rows (set, method, metric values) for reports."""
    rows = []
    for ds, res in result["sets"].items():
        for m, means in res["means"].items():
            rows.append([ds, m] + [means.get(k, np.nan) for k in res["metrics"]])
    return rows


# --------------------------------------------------------------------------- pansharpening
PAN_TEST_METRICS = ("Q2n", "SAM", "ERGAS", "SCC", "Q")
PAN_LOWER = {"SAM", "ERGAS"}
PAN_CRITERION = ("Q2n", "SAM", "ERGAS", "SCC")
PAN_REFERENCE = "mtf-glp-hpm"


def evaluate_pan_testsets(model: Any, data_root: Path, *, model_name: str = "rwkvfusion", split: str = "test",
                          images: Path | None = None) -> dict[str, Any]:
    """Reduced-resolution scores of a pansharpening ``model`` and every pan baseline on the held-back bottom
    halves (``rwkvfusion_io.spectral.half_region``) of the shared scenes with the model's band count.

    Each region is degraded by Wald's protocol (sensor MTF, ratio of the file); methods fuse in sensor DN
    and are scored against the original MS with ``fusion.metrics.pansharpening_metrics``. Returns the
    ``evaluate_testsets`` shape: {"protocol", "sets": {scene: {"pairs", "metrics", "means", "best", "verdict"}}}.
    ``split="val"`` scores the validation regions instead (the baselines' side of the selection metric).
    ``images``: write false-colour previews (one stretch, the reference's) of the PAN, the reference and every
    method to ``<images>/<scene>_<method>.png``, listed per set under "images" as (caption, path).
    """
    import torch

    from fusion.baselines import methods_for
    from fusion.data import build_dataset
    from fusion.evaluation import best_per_metric, model_fuser, pan_regions, score_pan

    run = model_fuser(model)
    cfg = model.cfg.replace(scene_split="halves")
    ds = build_dataset("pan", Path(data_root) / "pan", split, cfg=cfg)
    sets: dict[str, Any] = {}
    for i, s in pan_regions(ds):
        rec = ds.samples[i]
        mv, ratio = float(s["max_value"]), int(round(s["b"].shape[-1] / s["ms"].shape[-1]))
        ms, pan = s["ms"].double().numpy().transpose(1, 2, 0) * mv, s["b"][0].double().numpy() * mv
        fused: dict[str, np.ndarray] = {}
        with torch.no_grad():
            fused[model_name] = run(s["a"], s["b"]).astype(np.float64).transpose(1, 2, 0) * mv
        for spec in methods_for("pan"):
            kw = {"sensor": rec.sensor} if spec.name == PAN_REFERENCE else {}
            fused[spec.name] = np.clip(spec.fn(ms, pan, ratio, **kw), 0, mv)
        means = {m: {k: v for k, v in score_pan(f, s, sensor=rec.sensor).items() if k in PAN_TEST_METRICS}
                 for m, f in fused.items()}
        sets[rec.id] = {"pairs": 1, "metrics": list(PAN_TEST_METRICS), "means": means,
                        "best": best_per_metric(means, PAN_TEST_METRICS, PAN_LOWER),
                        "region": {"rows": rec.rows, "cols": rec.cols, "sensor": rec.sensor, "max_value": mv},
                        "verdict": pan_verdict(means, model_name)}
        if images is not None:
            gt = s["gt"].double().numpy().transpose(1, 2, 0) * mv
            sets[rec.id]["images"] = _previews(images, rec.id, pan, gt, fused)
    if not sets:
        raise ValueError(f"{data_root}/pan: no test scene with {model.cfg.model.a_channels} bands")
    return {"protocol": (f"Held-back bottom halves of the shared scenes under {data_root}/pan (the top halves "
                         "trained the model), reduced resolution by Wald's protocol (sensor MTF gains, the file's "
                         "ratio), reference = original MS; metrics in sensor DN (Vivone's toolbox conventions; "
                         "SAM, ERGAS: lower is better). Bold = best per column."),
            "sets": sets}


def _previews(folder: Path, scene: str, pan: np.ndarray, gt: np.ndarray, fused: dict[str, np.ndarray]
              ) -> list[tuple[str, str]]:
    """False-colour PNGs of the reference and each method [H, W, C] (the reference's stretch) and the PAN."""
    from fusion.train.inference import write_image
    from rwkvfusion_io.color import false_colour, false_colour_stretch

    stretch = false_colour_stretch(gt.transpose(2, 0, 1))
    lo, hi = np.percentile(pan, 2), np.percentile(pan, 98)
    out = [("PAN (degraded)", write_image(folder / f"{scene}_pan.png", np.clip((pan - lo) / max(hi - lo, 1e-6), 0, 1))),
           ("reference MS", write_image(folder / f"{scene}_reference.png", false_colour(gt.transpose(2, 0, 1), stretch)))]
    for m, f in fused.items():
        out.append((m, write_image(folder / f"{scene}_{m.replace(':', '_')}.png", false_colour(f.transpose(2, 0, 1), stretch))))
    return [(c, str(p)) for c, p in out]


def pan_verdict(means: dict[str, dict[str, float]], model: str) -> str:
    """Whether ``model`` beats MTF-GLP-HPM on Q2n, SAM, ERGAS and SCC (and which baselines it beats on all)."""
    def better(k: str, x: float, y: float) -> bool:
        return x < y if k in PAN_LOWER else x > y

    mv = means[model]
    wins = [k for k in PAN_CRITERION if better(k, mv[k], means[PAN_REFERENCE][k])]
    beaten = [m for m in means if m != model and all(better(k, mv[k], means[m][k]) for k in PAN_CRITERION)]
    met = len(wins) == len(PAN_CRITERION)
    return (f"{model} beats {PAN_REFERENCE} on {len(wins)} of {len(PAN_CRITERION)} ({', '.join(wins) or '-'}); "
            f"beats on all of {', '.join(PAN_CRITERION)}: {', '.join(beaten) or 'none'}: "
            f"criterion {'MET' if met else 'NOT met'}.")

