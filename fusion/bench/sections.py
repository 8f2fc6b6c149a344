"""Bench sections 1-3: kernel scaling, model cost per task (Table 4), RWKV vs attention against resolution;
sections 5-6: annotation cost and the metrics suites' speed."""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fusion.bench.machine import _median, fit_exponent
from fusion.bench.probe import _time_call, jsonable, run_probe
from fusion.bench.settings import PAPER_TABLE4, BenchSettings


# ============================================================================ 1. kernels
def cross_scan_table(sizes: tuple[int, ...], channels: int = 32, repeats: int = 7) -> dict[str, Any]:
    """Time of ``cross_scan`` and ``cross_merge`` (K2, K4) per image side, with the achieved bandwidth
    (bytes read + written) as a fraction of the measured copy bandwidth of a same-size ``clone``."""
    import torch

    from rwkvfusion_kernels import SCAN_K, cross_merge, cross_scan

    device = "cuda" if torch.cuda.is_available() else "cpu"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    rows = []
    for side in sizes:
        x = torch.rand(1, channels, side, side, device=device)
        copy_s = _median(_time_call(lambda x=x: x.clone(), repeats + 1, sync)[1:])
        for mode in ("K2", "K4"):
            k = SCAN_K[mode]
            y = cross_scan(x, mode=mode)
            scan_s = _median(_time_call(lambda x=x, m=mode: cross_scan(x, mode=m), repeats + 1, sync)[1:])
            merge_s = _median(_time_call(lambda y=y, s=side, m=mode: cross_merge(y, hw=(s, s), mode=m),
                                         repeats + 1, sync)[1:])
            nbytes = x.numel() * x.element_size()
            # scan reads x once and writes K copies; merge reads K copies and writes x; a clone moves 2x
            rows.append({"device": device, "side": side, "tokens": side * side, "C": channels, "mode": mode,
                         "scan_s": scan_s, "merge_s": merge_s, "copy_s": copy_s,
                         "scan_bw_fraction": ((1 + k) * nbytes / scan_s) / (2 * nbytes / copy_s),
                         "merge_bw_fraction": ((1 + k) * nbytes / merge_s) / (2 * nbytes / copy_s)})
    exps = {f"exponent_{m}_{w}": fit_exponent([r["tokens"] for r in rows if r["mode"] == m],
                                              [r[f"{w}_s"] for r in rows if r["mode"] == m])
            for m in ("K2", "K4") for w in ("scan", "merge")}
    return {"rows": rows, **exps}


def section_kernels(out_dir: Path, st: BenchSettings) -> dict[str, Any]:
    """Bi-WKV scaling table of the kernels package (CPU; CUDA when present) and the cross-scan table."""
    from rwkvfusion_kernels.bench import run_kernel_bench

    sizes = (16, 32) if st.quick else (64, 128, 256, 512)
    return {"result": run_kernel_bench(out_dir, st.quick), "cross_scan": cross_scan_table(sizes)}


# ============================================================================ 2. model cost
def section_cost(out_dir: Path, st: BenchSettings) -> dict[str, Any]:
    """Params, FLOPs, forward and forward+backward images/s and peak memory per task at cost_size^2."""
    rows = []
    for task in st.tasks:
        r = run_probe({"task": task, "size": st.cost_size, "modes": ["forward", "train"],
                       "repeats": st.cost_repeats, "train_repeats": st.cost_train_repeats, "flops": True})
        rows.append({"task": task, **r})
    return {"size": st.cost_size, "batch": 1, "paper": PAPER_TABLE4, "rows": rows,
            "note": (f"text and mask absent (the paper's 'without semantics' column); median of "
                     f"{st.cost_repeats} forward and {st.cost_train_repeats} forward+backward passes after a "
                     "warm-up pass")}


# ============================================================================ 3. scaling
def _attn_matrix_gib(size: int, head_dim: int = 32, channels: int = 32, scans: int = 2) -> float:
    """GiB of the float32 T x T score matrices of one full-resolution attention call (T = size^2):
    one per scan direction (K2: 2) and head (base 32 channels / head_dim 32 = 1); SDPA's CPU math path
    materialises them (a 256 x 256 input asks for 32 GiB)."""
    heads = max(1, channels // head_dim)
    return scans * heads * float(size * size) ** 2 * 4 / 2**30


def section_scaling(out_dir: Path, st: BenchSettings) -> dict[str, Any]:
    """Forward time and peak memory against resolution, RWKV (bi_wkv) vs softmax attention (SDPA)."""
    series: dict[str, list[dict[str, Any]]] = {}
    for op, sizes in (("bi_wkv", st.scaling_sizes), ("attention", st.attention_sizes)):
        pts: list[dict[str, Any]] = []
        for size in sizes:
            row: dict[str, Any] = {"size": size, "pixels": size * size}
            if op == "attention" and _attn_matrix_gib(size) > st.attn_matrix_cap_gib:
                row["skipped"] = (f"T x T attention scores at full resolution need {_attn_matrix_gib(size):.1f} GiB "
                                  f"> cap {st.attn_matrix_cap_gib:g} GiB")
                pts.append(row)
                continue
            done = [p for p in pts if "median_s" in p]
            if len(done) >= 1:
                p_exp = 2.0 if op == "attention" else 1.0
                if len(done) >= 2:
                    p_exp = max(p_exp, fit_exponent([d["pixels"] for d in done], [d["median_s"] for d in done]) or 0)
                pred = done[-1]["median_s"] * (row["pixels"] / done[-1]["pixels"]) ** p_exp
                row["predicted_s"] = pred
                if pred > st.time_cap_s:
                    row["skipped"] = f"predicted {pred:.0f} s per pass > time cap {st.time_cap_s:g} s"
                    pts.append(row)
                    continue
                repeats = st.scaling_repeats if pred * (st.scaling_repeats + 1) < st.time_cap_s else 1
                if pred < 1.0:  # cheap sizes: more repeats against the noise of a shared machine
                    repeats = max(repeats, 5)
            else:
                repeats = st.scaling_repeats
            r = run_probe({"task": "vif", "size": size, "overrides": {"spatial_op": op}, "modes": ["forward"],
                           "repeats": repeats}, timeout=max(120.0, 10 * st.time_cap_s))
            if "error" in r:
                row["skipped"] = r["error"]
            else:
                row.update(median_s=r["forward"]["median_s"], times_s=r["forward"]["times_s"],
                           median_cpu_s=r["forward"]["median_cpu_s"],
                           peak_mem_mib=r["forward"]["peak_mem_mib"], params=r["params"], device=r["device"])
            pts.append(row)
        series[op] = pts
    fits = {}
    for op, pts in series.items():
        ok = [p for p in pts if "median_s" in p]
        fits[op] = {"largest_three": fit_exponent([p["pixels"] for p in ok[-3:]], [p["median_s"] for p in ok[-3:]]),
                    "largest_three_sizes": [p["size"] for p in ok[-3:]],
                    "all": fit_exponent([p["pixels"] for p in ok], [p["median_s"] for p in ok]),
                    "last_two": fit_exponent([p["pixels"] for p in ok[-2:]], [p["median_s"] for p in ok[-2:]]),
                    "cpu_largest_three": fit_exponent([p["pixels"] for p in ok[-3:]],
                                                      [p["median_cpu_s"] for p in ok[-3:]]),
                    "cpu_all": fit_exponent([p["pixels"] for p in ok], [p["median_cpu_s"] for p in ok]),
                    "memory_all": fit_exponent([p["pixels"] for p in ok], [max(p["peak_mem_mib"], 1e-3) for p in ok]),
                    "points": len(ok)}
    return {"task": "vif", "batch": 1, "series": series, "exponents": fits,
            "note": "forward pass, no text/mask; exponent p in time ~ pixels^p (least squares in log-log); "
                    "headline fit over the three largest measured sizes, where fixed per-call overheads matter "
                    "least"}


# ============================================================================ 5. annotation
def _metrics_triple(root: Path, h: int, w: int) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
    """An h x w (grey IR, colour visible, colour fused) triple: a RoadScene pair resized when the shared data
    are present, else scikit-image's astronaut; the fused image is the per-channel average."""
    from PIL import Image

    vi_dir, ir_dir = root / "vif/roadscene/vi", root / "vif/roadscene/ir"
    if vi_dir.is_dir() and ir_dir.is_dir() and any(vi_dir.iterdir()):
        name = sorted(p.name for p in vi_dir.iterdir())[0]
        vi = Image.open(vi_dir / name).convert("RGB").resize((w, h), Image.BICUBIC)
        ir = Image.open(ir_dir / name).convert("L").resize((w, h), Image.BICUBIC)
        source = f"RoadScene {name} resized to {w}x{h}"
    else:
        from skimage import data

        img = Image.fromarray(data.astronaut())
        vi = img.resize((w, h), Image.BICUBIC)
        ir = img.convert("L").transpose(Image.FLIP_LEFT_RIGHT).resize((w, h), Image.BICUBIC)
        source = f"scikit-image astronaut (and its mirrored grey) resized to {w}x{h}"
    vi_a, ir_a = np.asarray(vi), np.asarray(ir)
    fused = ((vi_a.astype(np.int64) + ir_a[..., None]) // 2).astype(np.uint8)
    return source, ir_a, vi_a, fused


def section_metrics(out_dir: Path, st: BenchSettings, data_root: Path, repeats: int = 3) -> dict[str, Any]:
    """Speed of the VIFB suite (and the MEFB suite) on one 640 x 480 triple, grey and colour fused image,
    median of ``repeats`` runs, with per-metric times; budget: the whole VIFB suite under 2 s on the CPU.
    Also written to ``<out>/metrics_speed.json``."""
    from fusion.metrics._common import clear_content_caches
    from fusion.metrics.suites import MEFB_METRICS, VIFB_METRICS, mefb_suite, vifb_suite

    h, w = (120, 160) if st.quick else (480, 640)
    source, ir, vi, fused = _metrics_triple(data_root, h, w)
    grey_f = np.asarray(fused.mean(axis=2).round(), dtype=np.uint8)
    grey_vi = np.asarray(vi.mean(axis=2).round(), dtype=np.uint8)
    reps = 1 if st.quick else repeats

    def timed(fn: Callable[[], Any]) -> float:
        ts = []
        for _ in range(reps):
            clear_content_caches()  # every run scores the triple afresh
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return _median(ts)

    vifb_suite(grey_f, grey_vi, ir)  # warm caches (FFT plans, filter kernels)
    res: dict[str, Any] = {
        "image": source, "size": [h, w], "repeats": reps, "budget_s": 2.0,
        "vifb_grey_s": timed(lambda: vifb_suite(grey_f, grey_vi, ir)),
        "vifb_colour_s": timed(lambda: vifb_suite(fused, vi, ir)),
        "mefb_grey_s": timed(lambda: mefb_suite(grey_f, grey_vi, ir)),
        "per_metric_vifb_colour_s": {n: timed(lambda n=n: vifb_suite(fused, vi, ir, [n])) for n in VIFB_METRICS},
        "per_metric_mefb_grey_s": {n: timed(lambda n=n: mefb_suite(grey_f, grey_vi, ir, [n])) for n in MEFB_METRICS},
        "threads": os.environ.get("OMP_NUM_THREADS"),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,  # other users of the CPU
    }
    res["vifb_within_budget"] = bool(max(res["vifb_grey_s"], res["vifb_colour_s"]) < res["budget_s"])
    (out_dir / "metrics_speed.json").write_text(json.dumps(jsonable(res), indent=1))
    return res


def section_annotate(out_dir: Path, st: BenchSettings) -> dict[str, Any]:
    """Per-model annotation cost (``annotate.smoke.time_models``: tiny random-weight models, generated images).

    On CPU these tiny models are a plumbing check, not a speed figure; the median over repeats is reported.
    """
    import shutil
    import tempfile

    import torch

    from annotate.smoke import time_models

    repeats = 1 if st.quick else 3
    work = Path(tempfile.mkdtemp(prefix="rwkvfusion-bench-annotate-"))  # tiny models, deleted afterwards
    try:
        runs = [time_models(work, n_images=4, device=None) for _ in range(repeats)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = []
    for name in runs[0]:
        rows.append({"model": name, "load_s": _median([r[name]["load_seconds"] for r in runs]),
                     "s_per_image": _median([r[name]["seconds_per_image"] for r in runs]), "repeats": repeats})
    device = f"CUDA {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "CPU"
    label = ("tiny random-weight models on CPU: a plumbing check, not a speed figure" if device == "CPU"
             else "tiny random-weight models: pipeline overheads only, not full-size model cost")
    return {"rows": rows, "device": device, "label": label, "images": 4,
            "source": "annotate.smoke.time_models (4 generated 48x64 images per call)",
            "paper": "full online pipeline in the paper: T5 35.3 M + Florence/DINO 765.2 M + SAM 481.8 M "
                     "parameters, 0.742 images/s on an RTX 3090 (Table 4)"}
