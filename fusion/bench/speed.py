"""The bench's "speed" section: VIF forward images/s and peak RSS at 256/512/1024 for eager, compiled and
bf16, and the training step, beside the previous implementation measured in the same run.

"previous" is the tree of git revision ``BASELINE_REV`` (the last commit before the CPU fast path; override
with ``RWKVFUSION_BENCH_BASELINE=<rev>``), exported with ``git archive`` and measured by the same probe
script (``fusion/bench/speed_probe.py``) in fresh interpreters, alternating with the current tree, so the ratios
compare both under the same machine load. Each configuration runs in its own process (clean ``ru_maxrss``:
the reported peak RSS is the whole process's, torch included). Ratios are previous / current time
(> 1 = faster now), from wall-clock medians and, less sensitive to other processes, CPU-time medians.

Run it alone with ``python -m fusion bench --sections speed`` (``make bench`` runs every section).
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from fusion.bench.settings import DEFAULT_DATA, REPO

PROBE = Path(__file__).resolve().with_name("speed_probe.py")
BASELINE_REV = "bf365d5"
FORWARD_SIZES = (256, 512, 1024)
FORWARD_MODES = ("previous", "eager", "bf16", "compile")
TRAIN_SPEC = {"size": 128, "batch": 4}
TRAIN_MODES = ("previous", "eager", "bf16", "compile")


def export_baseline(rev: str, dest: Path) -> Path | None:
    """``git archive rev`` of this repository into ``dest``; None when git or the revision is unavailable."""
    try:
        arch = subprocess.run(["git", "-C", str(REPO), "archive", rev], capture_output=True, timeout=120, check=True)
        subprocess.run(["tar", "-x", "-C", str(dest)], input=arch.stdout, capture_output=True, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return dest if (dest / "fusion").is_dir() else None


def run_speed_probe(spec: dict[str, Any], tree: Path, timeout: float) -> dict[str, Any]:
    """``speed_probe.py`` in a fresh interpreter importing ``fusion`` from ``tree``."""
    from fusion.bench.probe import run_json_process

    env = {**os.environ, "PYTHONPATH": str(tree)}
    env.pop("TRITON_INTERPRET", None)
    return run_json_process([sys.executable, str(PROBE), json.dumps(spec)], tree, env, timeout)


def _merge(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"error": runs[-1].get("error", "no run") if runs else "not run"}
    times = [t for r in ok for t in (r["times_s"] or [r["warmup_s"]])]
    cpus = [t for r in ok for t in r["cpu_times_s"]]
    med = statistics.median(times)
    return {"median_s": med, "median_cpu_s": statistics.median(cpus) if cpus else None,
            "images_per_s": ok[0]["batch"] / med, "times_s": times, "peak_rss_mib": min(r["peak_rss_mib"] for r in ok),
            "peak_rss_mib_runs": [r["peak_rss_mib"] for r in ok], "warmup_s": [r["warmup_s"] for r in ok],
            "processes": len(ok)}


def _ratio(prev: dict[str, Any], cur: dict[str, Any], key: str) -> float | None:
    if prev.get(key) and cur.get(key):
        return prev[key] / cur[key]
    return None


def bf16_accuracy(pairs: int = 4, max_side: int = 512, data_root: Path | None = None) -> dict[str, Any]:
    """Output and metric change of bf16 autocast against fp32 on real VIF pairs (or seeded noise when absent).

    The model is the bundled VIF model (trained weights; seeded, perturbed "trained-like" weights when no
    bundle is installed). The change is reported as max/mean absolute difference of the fused Y in [0, 1], the
    PSNR of bf16 against fp32, and the means of Qabf, MI, VIF and SSIM (``fusion.metrics``, 0-255 scale) of both.
    """
    import numpy as np
    import torch
    import torch.nn.functional as F

    from fusion import build_model
    from fusion.metrics import fusion_metrics
    from rwkvfusion_io.images import read_luma
    from rwkvfusion_io.layouts import fusion_pairs

    try:
        from fusion.pretrained import load_pretrained

        model, weights = load_pretrained("vif"), "bundled VIF model"
    except Exception:  # noqa: BLE001 - no bundle (e.g. a bare checkout): seeded weights
        torch.manual_seed(0)
        model, weights = build_model("vif").eval(), "seeded trained-like VIF weights"
        g0 = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=g0) if not name.endswith(".lam")
                       else 0.5 * torch.randn(p.shape, generator=g0))
    g = torch.Generator().manual_seed(1)
    imgs: list[tuple[torch.Tensor, torch.Tensor]] = []
    source = "seeded noise (../shared/data absent)"
    root = data_root or DEFAULT_DATA
    tno = [g for g in fusion_pairs("vif", root) if g[0][0].startswith("tno/")]
    for _, p, q in (tno[0][:pairs] if tno else []):
        t = [torch.from_numpy(read_luma(f)).float()[None, None] for f in (p, q)]
        s = max(t[0].shape[-2:])
        if s > max_side:
            t = [F.interpolate(x, scale_factor=max_side / s, mode="area") for x in t]
        imgs.append((t[0], t[1]))
    if imgs:
        source = f"{len(imgs)} TNO pairs ({root / 'vif' / 'tno'})"
    if not imgs:
        imgs = [(torch.rand(1, 1, 256, 256, generator=g), torch.rand(1, 1, 256, 256, generator=g))]
    names = ("Qabf", "MI", "VIF", "SSIM")
    diffs, psnrs, scores = [], [], {"fp32": [], "bf16": []}
    for a, b in imgs:
        with torch.inference_mode():
            y32 = model(a, b).clamp(0, 1)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                y16 = model(a, b).float().clamp(0, 1)
        d = (y16 - y32).abs()
        diffs.append((float(d.max()), float(d.mean())))
        psnrs.append(float(10 * torch.log10(1.0 / d.pow(2).mean().clamp_min(1e-20))))
        src = [255.0 * x[0, 0].numpy().astype(np.float64) for x in (a, b)]
        for key, y in (("fp32", y32), ("bf16", y16)):
            scores[key].append(fusion_metrics(255.0 * y[0, 0].numpy().astype(np.float64), *src, metrics=names))
    means = {k: {n: float(np.mean([r[n] for r in v])) for n in names} for k, v in scores.items()}
    return {"source": source, "weights": weights, "max_abs_diff": max(x for x, _ in diffs),
            "mean_abs_diff": statistics.mean(y for _, y in diffs), "psnr_bf16_vs_fp32_db": statistics.mean(psnrs),
            "metrics": means, "note": "fused Y in [0, 1]; bf16 autocast vs fp32; metrics: means over the pairs"}


def section_speed(out_dir: Path, quick: bool = False, sizes: tuple[int, ...] = FORWARD_SIZES,
                  rounds: int = 2, data_root: Path | None = None, log: Any = print,
                  with_compile: bool = True) -> dict[str, Any]:
    """Measure forward and training speed of the current tree beside the previous revision (see module doc)."""
    if quick:                                   # plumbing only: tiny size, one round, no compile warm-ups
        sizes, rounds, with_compile = (32,), 1, False
    rev = os.environ.get("RWKVFUSION_BENCH_BASELINE", BASELINE_REV)
    tmp = Path(tempfile.mkdtemp(prefix="rwkvfusion-baseline-"))
    try:
        base = export_baseline(rev, tmp)
        trees = {"current": REPO, "previous": base}
        res: dict[str, Any] = {"baseline_rev": rev, "baseline_available": base is not None, "forward": {},
                               "train": {}, "settings": {"threads": 2, "batch": 1, "dtype": "fp32 unless bf16",
                                                         "grad": "torch.inference_mode", "text": None, "mask": None,
                                                         "MALLOC": {k: os.environ.get(k) for k in (
                                                             "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_",
                                                             "MALLOC_TOP_PAD_")}}}

        def measure(kind: str, size: int, mode: str, repeats: int, n_rounds: int, extra: dict) -> dict:
            tree = trees["previous" if mode == "previous" else "current"]
            if tree is None:
                return {"error": f"baseline revision {rev} unavailable (git archive failed)"}
            spec = {"size": size, "kind": kind, "mode": "eager" if mode == "previous" else mode,
                    "repeats": repeats, "threads": 2, **extra}
            runs = []
            for _ in range(n_rounds):
                r = run_speed_probe(spec, tree, timeout=1800.0)
                runs.append(r)
                log(f"[bench] speed {kind} {size} {mode}: " + (r["error"] if "error" in r else
                                                                 f"{r['median_s']:.3f} s, {r['peak_rss_mib']:.0f} MiB"))
            return _merge(runs)

        for size in sizes:
            reps = 5 if size <= 256 else (3 if size <= 512 else 1)
            row: dict[str, Any] = {}
            for rnd in range(rounds):                       # alternate the order between rounds
                order = [m for m in FORWARD_MODES if m != "compile"]
                for mode in (order if rnd % 2 == 0 else order[::-1]):
                    row.setdefault(mode, []).append(measure("forward", size, mode, reps, 1, {}))
            row = {m: _combine(runs) for m, runs in row.items()}
            row["compile"] = (measure("forward", size, "compile", reps, 1, {}) if with_compile
                              else {"error": "not measured (--no-compile)"})
            for m in ("eager", "bf16", "compile"):
                row[f"speedup_{m}"] = _ratio(row["previous"], row[m], "median_s")
                row[f"speedup_cpu_{m}"] = _ratio(row["previous"], row[m], "median_cpu_s")
            res["forward"][str(size)] = row
        tr: dict[str, Any] = {}
        for mode in TRAIN_MODES:
            if mode == "compile" and not with_compile:
                tr[mode] = {"error": "not measured (--no-compile)"}
                continue
            tr[mode] = measure("train", TRAIN_SPEC["size"], mode, 2 if quick else 5,
                               1 if quick or mode == "compile" else rounds, {"batch": TRAIN_SPEC["batch"]})
        for m in ("eager", "bf16", "compile"):
            tr[f"speedup_{m}"] = _ratio(tr["previous"], tr[m], "median_s")
            tr[f"speedup_cpu_{m}"] = _ratio(tr["previous"], tr[m], "median_cpu_s")
        res["train"] = {"spec": TRAIN_SPEC, **tr}
        try:
            res["bf16_accuracy"] = bf16_accuracy(pairs=1 if quick else 4, max_side=64 if quick else 512,
                                                 data_root=data_root)
        except Exception as err:  # noqa: BLE001 - reported, not raised
            res["bf16_accuracy"] = {"error": f"{type(err).__name__}: {err}"}
        (Path(out_dir) / "speed.json").write_text(json.dumps(res, indent=1))
        return res
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _combine(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Pool already merged measurements of one configuration (several processes)."""
    ok = [r for r in results if "error" not in r]
    if not ok:
        return results[-1] if results else {"error": "not run"}
    times = [t for r in ok for t in r["times_s"]]
    cpus = [r["median_cpu_s"] for r in ok if r.get("median_cpu_s") is not None]
    med = statistics.median(times)
    return {"median_s": med, "median_cpu_s": statistics.median(cpus) if cpus else None,
            "images_per_s": ok[0]["images_per_s"] * ok[0]["median_s"] / med, "times_s": times,
            "peak_rss_mib": min(r["peak_rss_mib"] for r in ok),
            "peak_rss_mib_runs": [x for r in ok for x in r["peak_rss_mib_runs"]],
            "warmup_s": [x for r in ok for x in r["warmup_s"]], "processes": sum(r["processes"] for r in ok)}


def report_lines(res: dict[str, Any]) -> tuple[list[str], list[list[Any]], list[list[Any]], list[str]]:
    """Header, forward rows, train rows and notes for the bench report."""
    def f(x: Any, nd: int = 2) -> str:
        return "-" if x is None else (f"{x:.{nd}f}" if isinstance(x, float) else str(x))

    head = ["size", "mode", "images/s", "median s", "median CPU s", "peak RSS MiB", "speedup (wall)",
            "speedup (CPU)"]
    rows = []
    for size, row in res.get("forward", {}).items():
        for m in FORWARD_MODES:
            r = row.get(m, {})
            if "error" in r:
                rows.append([size, m, r["error"], "", "", "", "", ""])
                continue
            rows.append([size, m, f(r.get("images_per_s"), 3), f(r.get("median_s"), 3), f(r.get("median_cpu_s"), 3),
                         f(r.get("peak_rss_mib"), 0), f(row.get(f"speedup_{m}")), f(row.get(f"speedup_cpu_{m}"))])
    tr = res.get("train", {})
    trows = []
    for m in TRAIN_MODES:
        r = tr.get(m, {})
        trows.append([m, r.get("error") or f(r.get("median_s"), 3), f(r.get("median_cpu_s"), 3),
                      f(r.get("peak_rss_mib"), 0), f(tr.get(f"speedup_{m}")), f(tr.get(f"speedup_cpu_{m}"))])
    acc = res.get("bf16_accuracy", {})
    metric_change = "; ".join(f"{n} {f(acc['metrics']['fp32'][n], 4)} -> {f(acc['metrics']['bf16'][n], 4)}"
                              for n in acc.get("metrics", {}).get("fp32", {}))
    notes = [f"previous = git {res.get('baseline_rev')} (same probe, fresh processes, alternating with the current "
             "tree); speedup = previous time / this time.",
             "bf16 accuracy: " + (acc.get("error") or
                                  f"max |bf16 - fp32| = {f(acc.get('max_abs_diff'), 4)}, mean "
                                  f"{f(acc.get('mean_abs_diff'), 5)}, PSNR {f(acc.get('psnr_bf16_vs_fp32_db'), 1)} dB "
                                  f"({acc.get('source')}, {acc.get('weights', 'seeded weights')})"
                                  + (f"; metrics fp32 -> bf16: {metric_change}" if metric_change else ""))]
    return head, rows, trows, notes
