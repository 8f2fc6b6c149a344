"""``python -m fusion bench``: one report of speed, memory scaling and quality.

Sections: 1. kernels (``rwkvfusion_kernels.bench.run_kernel_bench``); 2. model cost per task at 256x256 next to the
paper's Table 4; 3. time and peak memory against resolution, RWKV vs softmax attention, with fitted
exponents; 4. quality of the classical baselines (and trained checkpoints in ``runs/*/checkpoint.pt``)
on the real pairs of ../shared/data; 5. annotation cost (tiny models on CPU: a plumbing check).

Writes ``<out>/results.json``, ``<out>/report.md`` (PNG plots beside it) and ``<out>/report.html``
(plots embedded). The benchmark reports, it does not assert: a section that cannot run records why.

Timing: every figure is the median of repeated runs after one warm-up run. Peak memory: on CUDA
``torch.cuda.max_memory_allocated``; on CPU the resident-set increase during the warm-up pass
(:class:`PeakRSS`: ``ru_maxrss`` high-water mark, or a 1 ms RSS sampler when the mark does not move),
in a fresh subprocess per configuration so earlier runs cannot mask it. It includes allocator slack;
tracemalloc is not used because it does not see torch's allocations.
"""
from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SECTIONS: tuple[str, ...] = ("kernels", "cost", "scaling", "speed", "quality", "annotate", "metrics")
PAPER_TABLE4 = {"params_M": 0.352, "GFLOPs": 15.08, "images_per_s": 136.6,
                "images_per_s_with_semantics": 112.7, "device": "NVIDIA RTX 3090", "size": 256}
REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("RWKVFUSION_SHARED_DATA", REPO.parent / "shared" / "data"))


# ============================================================================ settings
@dataclass
class BenchSettings:
    """What one bench run measures; ``quick_settings()`` gives the tiny sizes used by the tests."""

    cost_size: int = 256
    cost_repeats: int = 3                # forward passes timed per task
    cost_train_repeats: int = 2          # forward+backward passes timed per task (the costly part)
    scaling_sizes: tuple[int, ...] = (64, 128, 256, 512, 1024)
    attention_sizes: tuple[int, ...] = (32, 48, 64, 96, 128, 160, 256)
    scaling_repeats: int = 3
    attn_matrix_cap_gib: float = 3.0     # skip attention sizes whose K x T x T score matrices exceed this
    time_cap_s: float = 60.0             # skip a size whose predicted single pass exceeds this
    max_pairs: int = 8
    max_side: int = 512                  # quality: larger pairs are area-downscaled to this longer side
    pan_full_crop: int = 256             # PAN side of the full-resolution (QNR) crop
    quick: bool = False
    tasks: tuple[str, ...] = ("vif", "mif", "mef", "mff", "pan", "hmif")   # model-cost configurations
    quality_tasks: tuple[str, ...] = ("vif", "mif", "mef", "mff", "pan")
    speed_compile: bool = True           # speed section: also measure torch.compile (slow warm-up)

    @classmethod
    def quick_settings(cls) -> BenchSettings:
        return cls(cost_size=32, cost_repeats=1, cost_train_repeats=1, scaling_sizes=(16, 32), attention_sizes=(16, 32),
                   scaling_repeats=1, time_cap_s=20.0, max_pairs=1, pan_full_crop=128, quick=True,
                   tasks=("vif",), quality_tasks=("vif", "pan"))


# ============================================================================ environment
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(mod: str) -> str | None:
    try:
        m = __import__(mod)
        return str(getattr(m, "__version__", "unknown"))
    except Exception:  # noqa: BLE001 - an absent optional package is recorded as None
        return None


def machine_info() -> dict[str, Any]:
    """CPU model, cores, threads, GPU, library versions, git commit and the UTC date of the run."""
    import torch

    info: dict[str, Any] = {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "cpu": _cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(), "python": platform.python_version(),
        "versions": {m: _version(m) for m in ("torch", "numpy", "triton", "cv2", "scipy", "skimage", "kornia")},
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "load_average_1_5_15": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    try:
        info["git_commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                            text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        info["git_commit"] = None
    info["device_label"] = (f"CUDA {info['cuda']}" if info["cuda"]
                            else f"CPU {info['cpu']} ({info['cores']} cores, {info['torch_threads']} torch threads)")
    return info


def _median(xs: list[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def fit_exponent(pixels: list[float], times: list[float]) -> float | None:
    """Least-squares slope of log(time) against log(pixels): time ~ pixels^p (None with < 2 points)."""
    pts = [(p, t) for p, t in zip(pixels, times) if p > 0 and t and t > 0 and math.isfinite(t)]
    if len(pts) < 2:
        return None
    x, y = np.log([p for p, _ in pts]), np.log([t for _, t in pts])
    return float(np.polyfit(x, y, 1)[0])


# ============================================================================ model probe (subprocess)
def _model_inputs(cfg: Any, size: int, device: str) -> tuple[Any, Any]:
    """Random inputs of the model's task at size x size (fusion: Y pairs; pan/hmif: lms + PAN/HR-MSI)."""
    import torch

    gen = torch.Generator().manual_seed(0)
    a = torch.rand(1, cfg.a_channels, size, size, generator=gen)
    b = torch.rand(1, cfg.b_channels, size, size, generator=gen)
    return a.to(device), b.to(device)


def _maxrss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _current_rss_mib() -> float:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return _maxrss_mib()


class PeakRSS:
    """Peak resident-set increase [MiB] over a block of code (CPU).

    Freed heap is first returned to the OS (glibc ``malloc_trim``) so the baseline is the live RSS; the peak
    is the kernel's ``ru_maxrss`` high-water mark when the block raised it, else the maximum of a 1 ms RSS
    sampler thread (a lower bound). ``delta`` = peak - baseline.
    """

    def __enter__(self) -> PeakRSS:
        try:
            import ctypes

            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass
        self.base, self.max0 = _current_rss_mib(), _maxrss_mib()
        self.sampled = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.001):
            self.sampled = max(self.sampled, _current_rss_mib())

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        max1 = _maxrss_mib()
        self.source = "ru_maxrss" if max1 > self.max0 else "sampled"
        top = max1 if max1 > self.max0 else max(self.sampled, _current_rss_mib())
        self.delta = max(0.0, top - self.base)


def _count_flops(model: Any, size: int) -> dict[str, Any]:
    """Forward FLOPs without text or mask: ``fusion.model.count_flops`` (flop counter + analytic Bi-WKV)."""
    from fusion.model import count_flops

    total, parts = count_flops(model, size, size, text_len=None, with_mask=False, breakdown=True)
    return {"flops": float(total), "flops_parts": parts,
            "counter": "fusion.model.count_flops (torch flop counter + analytic Bi-WKV; 2 FLOPs per MAC)"}


def _time_call(fn: Callable[[], Any], repeats: int, sync: Callable[[], None],
               cpu_times: list[float] | None = None) -> list[float]:
    """Wall times [s] of ``repeats`` calls; the process CPU times (all threads) go to ``cpu_times``."""
    out = []
    for _ in range(max(1, repeats)):
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        sync()
        out.append(time.perf_counter() - t0)
        if cpu_times is not None:
            cpu_times.append(time.process_time() - c0)
    return out


def probe(spec: dict[str, Any]) -> dict[str, Any]:
    """Build one model and measure it (runs inside a fresh subprocess; see :func:`run_probe`).

    spec: task, size, overrides (build_model kwargs), modes ("forward", "train"), repeats, flops (bool).
    Returns params, flops, per-mode times [s], median, images/s and peak memory [MiB].
    """
    import torch

    from fusion import build_model

    device = "cuda" if torch.cuda.is_available() and not spec.get("cpu") else "cpu"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    torch.manual_seed(0)
    model = build_model(spec["task"], **spec.get("overrides", {})).to(device)
    a, b = _model_inputs(model.cfg, int(spec["size"]), device)
    res: dict[str, Any] = {"params": int(sum(p.numel() for p in model.parameters())), "device": device,
                           "memory_method": "torch.cuda.max_memory_allocated" if device == "cuda"
                           else "peak RSS increase during the warm-up pass (PeakRSS)"}
    if spec.get("flops"):
        model.eval()
        res.update(_count_flops(model, int(spec["size"])))
    for mode in spec.get("modes", ("forward",)):
        if mode == "forward":
            model.eval()

            def step() -> None:
                with torch.no_grad():
                    model(a, b)
        else:
            model.train()

            def step() -> None:
                model.zero_grad(set_to_none=True)
                model(a, b).float().mean().backward()
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            warm = _time_call(step, 1, sync)
            peak, source = (torch.cuda.max_memory_allocated() - base) / 2**20, "cuda"
        else:
            with PeakRSS() as mem:
                warm = _time_call(step, 1, sync)
            peak, source = mem.delta, mem.source
        cpu: list[float] = []
        times = _time_call(step, int(spec.get("train_repeats" if mode == "train" else "repeats", 3)), sync, cpu)
        med = _median(times)
        res[mode] = {"warmup_s": warm[0], "times_s": times, "median_s": med, "images_per_s": 1.0 / med,
                     "cpu_times_s": cpu, "median_cpu_s": _median(cpu),
                     "peak_mem_mib": peak, "peak_mem_source": source}
    return res


def run_probe(spec: dict[str, Any], timeout: float = 900.0) -> dict[str, Any]:
    """Run :func:`probe` in a fresh interpreter (clean peak-RSS high-water mark); errors become {"error"}."""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return run_json_process([sys.executable, "-m", "fusion.bench", "probe", json.dumps(spec)], REPO, env, timeout)


def run_json_process(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float) -> dict[str, Any]:
    """The last JSON line a child process prints; a failure or time-out becomes ``{"error": ...}``."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": f"probe exited {proc.returncode}: " + " | ".join(tail)}
    return json.loads(lines[-1])


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


# ============================================================================ 4. quality
def _imread_y(path: Path) -> np.ndarray:
    """Read an image as float64 luma Y (BT.601) in [0, 1], HxW."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError(f"{path}: could not be read as an image")
    scale = 65535.0 if img.dtype == np.uint16 else 255.0
    img = img.astype(np.float64) / scale
    if img.ndim == 3:
        bgr = img[..., :3]
        img = 0.114 * bgr[..., 0] + 0.587 * bgr[..., 1] + 0.299 * bgr[..., 2]
    return img


def _pairs_by_stem(a_dir: Path, b_dir: Path) -> list[tuple[str, Path, Path]]:
    exts = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
    a = {p.stem: p for p in sorted(a_dir.iterdir()) if p.suffix.lower() in exts} if a_dir.is_dir() else {}
    b = {p.stem: p for p in sorted(b_dir.iterdir()) if p.suffix.lower() in exts} if b_dir.is_dir() else {}
    return [(f"{a_dir.parent.name}/{s}", a[s], b[s]) for s in sorted(a) if s in b]


def fusion_pairs(task: str, root: Path) -> list[list[tuple[str, Path, Path]]]:
    """Real pairs of ``task`` under the shared data root, one list per dataset (a, b as in the model)."""
    groups: list[list[tuple[str, Path, Path]]] = []
    if task == "vif":
        for ds in ("tno", "roadscene"):
            groups.append(_pairs_by_stem(root / "vif" / ds / "ir", root / "vif" / ds / "vi"))
    elif task == "mif":
        for ds, other in (("mri_spect", "SPECT"), ("mri_pet", "PET"), ("mri_ct", "CT")):
            groups.append(_pairs_by_stem(root / "mif" / ds / "MRI", root / "mif" / ds / other))
    elif task == "mef":
        for ds in ("dataset1", "dataset2"):
            groups.append(_pairs_by_stem(root / "mef" / "u2fusion" / ds / "ue", root / "mef" / "u2fusion" / ds / "oe"))
        seqs = []
        base = root / "mef" / "ifcnn_sequences"
        for scene in sorted(base.iterdir()) if base.is_dir() else []:
            imgs = sorted(p for p in scene.iterdir() if p.suffix.lower() in (".jpg", ".png"))
            if len(imgs) >= 2:  # darkest and brightest exposure of the sequence
                lum = sorted(imgs, key=lambda p: float(_imread_y(p).mean()))
                seqs.append((f"ifcnn/{scene.name}", lum[0], lum[-1]))
        groups.append(seqs)
    elif task == "mff":
        lytro = root / "mff" / "lytro"
        pairs = []
        for pa in sorted(lytro.glob("lytro-*-A.*")) if lytro.is_dir() else []:
            pb = pa.with_name(pa.name.replace("-A.", "-B."))
            if pb.is_file():
                pairs.append((f"lytro/{pa.stem[:-2]}", pa, pb))
        groups.append(pairs)
        groups.append(_pairs_by_stem(root / "mff" / "u2fusion" / "far", root / "mff" / "u2fusion" / "near"))
    else:
        raise ValueError(f"fusion_pairs: task {task!r} is not a fusion task")
    return [g for g in groups if g]


def _take(groups: list[list[Any]], n: int) -> list[Any]:
    """Round-robin over the datasets so each contributes, at most ``n`` items in all."""
    out: list[Any] = []
    i = 0
    while len(out) < n and any(i < len(g) for g in groups):
        for g in groups:
            if i < len(g) and len(out) < n:
                out.append(g[i])
        i += 1
    return out


def _summarise(scores: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, dict[str, float]]]:
    """method -> metric -> {mean, std, n} (population std over pairs; NaNs dropped)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for method, rows in scores.items():
        keys = sorted({k for r in rows for k, v in r.items() if isinstance(v, (int, float))})
        out[method] = {}
        for k in keys:
            vals = np.array([r[k] for r in rows if isinstance(r.get(k), (int, float)) and math.isfinite(r[k])])
            if vals.size:
                out[method][k] = {"mean": float(vals.mean()), "std": float(vals.std()), "n": int(vals.size)}
    return out


def find_checkpoints(task: str, runs_dir: Path | None = None) -> tuple[list[Path], list[str]]:
    """``runs/*/checkpoint.pt`` files trained for ``task`` (and notes on unreadable ones)."""
    from fusion.train.checkpoint import load_checkpoint

    found, notes = [], []
    for p in sorted((runs_dir or REPO / "runs").glob("*/checkpoint.pt")):
        try:
            ck = load_checkpoint(p)
        except (ValueError, FileNotFoundError) as err:
            notes.append(str(err))
            continue
        if str(ck.get("task", (ck.get("config") or {}).get("task"))) == task:
            found.append(p)
            notes.append(f"model:{p.parent.name} = {p} (step {ck.get('step')}, epoch {ck.get('epoch')}; EMA "
                         "weights, no text or mask)")
    return found, notes


def _model_fuser(path: Path) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Fusion fn(a, b) of a checkpoint (EMA weights; no text or mask: the paper's Proposed* setting)."""
    import torch

    from fusion.train.inference import load_model, run_model

    model, _ = load_model(path)

    def fn(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        t = lambda x: torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None, None]  # noqa: E731
        return run_model(model, t(a), t(b))[0, 0].double().numpy()
    return fn


def _bundled_fuser(task: str, notes: list[str]) -> Callable[[np.ndarray, np.ndarray], np.ndarray] | None:
    """Fusion fn(a, b) of the package's bundled model of ``task`` (``fusion.pretrained``), or None."""
    import torch

    from fusion.pretrained import NoBundledModel, bundled_info, load_pretrained
    from fusion.train.inference import run_model

    try:
        model = load_pretrained(task)
    except NoBundledModel:
        notes.append(f"no bundled {task} model in fusion/pretrained/weights")
        return None
    tr = bundled_info(task)["training"]
    notes.append(f"bundled:{task} = fusion/pretrained/weights/{task}.safetensors ({tr['weights']}, recipe "
                 f"{(tr.get('recipe') or {}).get('name')}; no text or mask)")

    def fn(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        t = lambda x: torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None, None]  # noqa: E731
        return run_model(model, t(a), t(b))[0, 0].double().numpy()
    return fn


def _pan_model_fuser(path: Path) -> Callable[..., np.ndarray]:
    """Pan fn(ms, pan, ratio, max_value) of a checkpoint: inputs scaled by ``max_value`` to [0, 1], lms = EXP."""
    import torch

    from fusion.baselines.pan_interp import upsample_ms
    from fusion.train.inference import load_model, run_model

    model, _ = load_model(path)

    def fn(ms: np.ndarray, pan: np.ndarray, ratio: int, max_value: float = 2047.0) -> np.ndarray:
        if ms.shape[2] != model.cfg.a_channels:
            raise ValueError(f"checkpoint {path} expects {model.cfg.a_channels} bands, image has {ms.shape[2]}")
        lms = torch.from_numpy(upsample_ms(ms, ratio).transpose(2, 0, 1) / max_value).float()[None]
        p = torch.from_numpy(pan / max_value).float()[None, None]
        return run_model(model, lms, p)[0].double().numpy().transpose(1, 2, 0) * max_value
    return fn


def _quality_fusion(task: str, root: Path, st: BenchSettings) -> dict[str, Any]:
    from fusion.baselines import methods_for
    from fusion.metrics import fusion_metrics

    pairs = _take(fusion_pairs(task, root), st.max_pairs)
    methods: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {s.name: s.fn for s in methods_for(task)}
    cks, notes = find_checkpoints(task)
    bundled = _bundled_fuser(task, notes)
    if bundled is not None:
        methods[f"bundled:{task}"] = bundled
    for ck in cks:
        try:
            methods[f"model:{ck.parent.name}"] = _model_fuser(ck)
        except Exception as err:  # noqa: BLE001 - reported
            notes.append(f"checkpoint {ck}: {type(err).__name__}: {err}")
    scores: dict[str, list[dict[str, float]]] = {m: [] for m in methods}
    seconds: dict[str, list[float]] = {m: [] for m in methods}
    for pid, pa, pb in pairs:
        import cv2

        a, b = _imread_y(pa), _imread_y(pb)
        if a.shape != b.shape:
            notes.append(f"{pid}: shapes {a.shape} vs {b.shape}; b resized to a")
            b = cv2.resize(b, (a.shape[1], a.shape[0]), interpolation=cv2.INTER_AREA)
        scale = st.max_side / max(a.shape)
        if scale < 1.0:  # same downscaled inputs for every method (keeps metrics and CPU models in budget)
            size = (max(16, round(a.shape[1] * scale)), max(16, round(a.shape[0] * scale)))
            a, b = (cv2.resize(x, size, interpolation=cv2.INTER_AREA) for x in (a, b))
        for name, fn in methods.items():
            t0 = time.perf_counter()
            fused = np.clip(fn(a, b), 0.0, 1.0)
            seconds[name].append(time.perf_counter() - t0)
            m = fusion_metrics(fused * 255.0, a * 255.0, b * 255.0)
            scores[name].append({k: float(v) for k, v in m.items() if isinstance(v, (int, float, np.floating))})
    return {"pairs": [p[0] for p in pairs], "summary": _summarise(scores),
            "seconds_per_pair": {m: _median(v) for m, v in seconds.items()}, "notes": notes,
            "protocol": (f"luma Y (BT.601) of each source in [0, 1], pairs larger than {st.max_side} px on the "
                         "longer side area-downscaled to it (same inputs for every method); metrics on the "
                         "0-255 scale (fusion.metrics.fusion_metrics, grey)")}


def _load_pan(path: Path) -> dict[str, Any]:
    from scipy.io import loadmat

    d = loadmat(str(path))
    ms = d.get("I_MS", d.get("I_MS_LR"))
    pan = d.get("I_PAN")
    if ms is None or pan is None:
        raise ValueError(f"{path}: expected keys I_MS (or I_MS_LR) and I_PAN, found {sorted(d)}")
    sensor = str(d["sensor"][0]) if "sensor" in d else ("WV3" if "WV3" in path.name else None)
    bits = int(np.asarray(d["L"]).ravel()[0]) if "L" in d else 11
    ratio = int(np.asarray(d["ratio"]).ravel()[0]) if "ratio" in d else pan.shape[0] // ms.shape[0]
    return {"ms": ms.astype(np.float64), "pan": pan.astype(np.float64), "sensor": sensor, "bits": bits, "ratio": ratio}


def _wald(ms: np.ndarray, pan: np.ndarray, ratio: int, sensor: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Reduced-resolution pair by Wald's protocol (``rwkvfusion_io.wald.wald_degrade``: sensor MTF + decimation)."""
    from rwkvfusion_io.wald import wald_degrade

    return wald_degrade(ms, pan, ratio=ratio, sensor=sensor)


def _quality_pan(root: Path, st: BenchSettings) -> dict[str, Any]:
    from fusion.baselines import methods_for
    from fusion.metrics import pansharpening_metrics

    files = sorted((root / "pan").glob("*.mat"))[: st.max_pairs]
    methods: dict[str, Callable[..., np.ndarray]] = {s.name: s.fn for s in methods_for("pan")}
    cks, notes = find_checkpoints("pan")
    for ck in cks:
        try:
            methods[f"model:{ck.parent.name}"] = _pan_model_fuser(ck)
        except Exception as err:  # noqa: BLE001 - reported
            notes.append(f"checkpoint {ck}: {type(err).__name__}: {err}")
    rr: dict[str, list[dict[str, float]]] = {m: [] for m in methods}
    fr: dict[str, list[dict[str, float]]] = {m: [] for m in methods}
    for f in files:
        d = _load_pan(f)
        ms, pan, ratio, sensor = d["ms"], d["pan"], d["ratio"], d["sensor"]
        maxv = float(2 ** d["bits"] - 1)
        ms_lr, pan_lr = _wald(ms, pan, ratio, sensor)
        # full resolution: a centre crop keeps QNR cheap
        c = min(st.pan_full_crop, pan.shape[0]) // ratio
        y0, x0 = (ms.shape[0] - c) // 2, (ms.shape[1] - c) // 2
        ms_c, pan_c = ms[y0:y0 + c, x0:x0 + c], pan[y0 * ratio:(y0 + c) * ratio, x0 * ratio:(x0 + c) * ratio]
        for name, fn in methods.items():
            kw: dict[str, Any] = ({"sensor": sensor} if name == "mtf-glp-hpm" else
                                  {"max_value": maxv} if name.startswith("model:") else {})
            try:
                fused = np.clip(fn(ms_lr, pan_lr, ratio, **kw), 0, maxv)
            except ValueError as err:  # e.g. a checkpoint trained for another band count
                notes.append(f"{f.name} {name}: {err}")
                continue
            m = pansharpening_metrics(fused, ms, ratio=ratio, sensor=sensor, max_value=maxv)
            rr[name].append({k: float(v) for k, v in m.items() if isinstance(v, (int, float, np.floating))})
            try:
                fused_full = np.clip(fn(ms_c, pan_c, ratio, **kw), 0, maxv)
                m = pansharpening_metrics(fused_full, None, ms=ms_c, pan=pan_c, ratio=ratio, sensor=sensor,
                                          max_value=maxv)
                fr[name].append({k: float(v) for k, v in m.items() if isinstance(v, (int, float, np.floating))})
            except Exception as err:  # noqa: BLE001 - full resolution is optional
                notes.append(f"{f.name} {name} full resolution: {type(err).__name__}: {err}")
    return {"images": [f.name for f in files], "reduced": _summarise(rr), "full": _summarise(fr), "notes": notes,
            "protocol": "reduced resolution by Wald's protocol (rwkvfusion_io.wald.wald_degrade, sensor MTF gains), "
                        "reference = original MS; "
                        f"full resolution (D_lambda, D_s, HQNR) on a centre crop of {st.pan_full_crop} PAN pixels"}


def section_quality(out_dir: Path, st: BenchSettings, data_root: Path) -> dict[str, Any]:
    """Every applicable baseline (and checkpoint) on the real pairs, mean and std per method."""
    if not data_root.is_dir():
        return {"skipped": f"real data folder {data_root} is absent (set RWKVFUSION_SHARED_DATA)"}
    res: dict[str, Any] = {"data_root": str(data_root), "max_pairs": st.max_pairs, "tasks": {}}
    for task in st.quality_tasks:
        try:
            res["tasks"][task] = _quality_pan(data_root, st) if task == "pan" else _quality_fusion(task, data_root, st)
        except Exception as err:  # noqa: BLE001 - one task failing must not hide the others
            res["tasks"][task] = {"error": f"{type(err).__name__}: {err}", "trace": traceback.format_exc(limit=3)}
    return res


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
    (out_dir / "metrics_speed.json").write_text(json.dumps(_jsonable(res), indent=1))
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


# ============================================================================ report
class Report:
    """Blocks (heading, text, table, image) rendered to Markdown and self-contained HTML."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.blocks: list[tuple[str, Any]] = []

    def h(self, text: str, level: int = 2) -> None:
        self.blocks.append(("h", (level, text)))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def table(self, header: list[str], rows: list[list[Any]]) -> None:
        self.blocks.append(("table", (header, rows)))

    def image(self, name: str, caption: str) -> None:
        self.blocks.append(("img", (name, caption)))

    def markdown(self) -> str:
        out = []
        for kind, val in self.blocks:
            if kind == "h":
                out.append("#" * val[0] + " " + val[1])
            elif kind == "p":
                out.append(val)
            elif kind == "table":
                header, rows = val
                out.append("| " + " | ".join(header) + " |")
                out.append("| " + " | ".join("---" for _ in header) + " |")
                out += ["| " + " | ".join(_fmt(c) for c in r) + " |" for r in rows]
            else:
                out.append(f"![{val[1]}]({val[0]})")
            out.append("")
        return "\n".join(out)

    def html(self) -> str:
        body = []
        for kind, val in self.blocks:
            if kind == "h":
                body.append(f"<h{val[0]}>{html.escape(val[1])}</h{val[0]}>")
            elif kind == "p":
                body.append(f"<p>{html.escape(val)}</p>")
            elif kind == "table":
                header, rows = val
                th = "".join(f"<th>{html.escape(h)}</th>" for h in header)
                trs = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in r) + "</tr>" for r in rows)
                body.append(f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>")
            else:
                data = base64.b64encode((self.out_dir / val[0]).read_bytes()).decode()
                body.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(val[1])}">'
                            f"<figcaption>{html.escape(val[1])}</figcaption></figure>")
        style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;}table{border-collapse:collapse;"
                 "margin:1em 0;font-size:13px}td,th{border:1px solid #bbb;padding:3px 7px;text-align:right}"
                 "th{background:#eee}img{max-width:100%}")
        return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>rwkvfusion bench</title>"
                f"<style>{style}</style></head><body>{''.join(body)}</body></html>")


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        if not math.isfinite(x):
            return "-"
        return f"{x:.4g}" if abs(x) < 1e5 else f"{x:.3e}"
    return str(x).replace("|", "/")


def _plot_scaling(out_dir: Path, sc: dict[str, Any]) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs = []
    for key, ylabel, fname in (("median_s", "forward time [s]", "scaling_time.png"),
                               ("peak_mem_mib", "peak memory increase [MiB]", "scaling_memory.png")):
        fig, ax = plt.subplots(figsize=(6, 4))
        for op, pts in sc["series"].items():
            ok = [p for p in pts if key in p and p[key] is not None and p[key] > 0]
            if not ok:
                continue
            px = np.array([p["pixels"] for p in ok], dtype=float)
            ax.loglog(px, [p[key] for p in ok], "o-", label=op)
            if key == "median_s" and sc["exponents"][op]["largest_three"] is not None:
                ax.plot([], [], " ", label=f"{op}: time ~ pixels^{sc['exponents'][op]['largest_three']:.2f}")
        pts0 = [p for pts in sc["series"].values() for p in pts if p.get(key)]
        if pts0:  # reference slopes through the smallest measured point
            p0 = min(pts0, key=lambda p: p["pixels"])
            xs = np.array([p0["pixels"], max(p["pixels"] for p in pts0)], dtype=float)
            for slope, style in ((1, ":"), (2, "--")):
                ax.loglog(xs, p0[key] * (xs / xs[0]) ** slope, "k" + style, lw=0.8, label=f"slope {slope}")
        ax.set_xlabel("pixels (H x W)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out_dir / fname, dpi=100)
        plt.close(fig)
        figs.append((fname, f"{ylabel} vs pixels, RWKV (bi_wkv) vs softmax attention, log-log"))
    return figs


def _plot_cost(out_dir: Path, cost: dict[str, Any]) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in cost["rows"] if "forward" in r]
    if not rows:
        return []
    fig, ax = plt.subplots(figsize=(6, 3.5))
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [r["forward"]["images_per_s"] for r in rows], 0.4, label="forward")
    ax.bar(x + 0.2, [r["train"]["images_per_s"] for r in rows if "train" in r] + [0] * (len(rows) - sum(
        "train" in r for r in rows)), 0.4, label="forward+backward")
    ax.set_xticks(x, [r["task"] for r in rows])
    ax.set_ylabel(f"images/s at {cost['size']}x{cost['size']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "cost_throughput.png", dpi=100)
    plt.close(fig)
    return [("cost_throughput.png", "throughput per task configuration (batch 1)")]


def _tables_from(obj: Any, path: str = "") -> list[tuple[str, list[dict[str, Any]]]]:
    """Every list of dicts inside ``obj``, as (dotted path, rows with their scalar fields only)."""
    scalar = (int, float, str, bool, type(None))
    if isinstance(obj, list) and obj and all(isinstance(r, dict) for r in obj):
        return [(path or "table", [{k: v for k, v in r.items() if isinstance(v, scalar)} for r in obj])]
    found: list[tuple[str, list[dict[str, Any]]]] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            found += _tables_from(v, f"{path}.{k}" if path else str(k))
    return found


def _leaf_scalars(obj: Any, path: str = "", skip: tuple[str, ...] = ()) -> list[list[Any]]:
    """[dotted key, value] for every scalar inside nested dicts (lists are left to :func:`_tables_from`)."""
    if not isinstance(obj, dict):
        return []
    out: list[list[Any]] = []
    for k, v in obj.items():
        key = f"{path}.{k}" if path else str(k)
        if k in skip:
            continue
        if isinstance(v, dict):
            out += _leaf_scalars(v, key, skip)
        elif isinstance(v, (int, float, str, bool)) or v is None:
            out.append([key, v])
    return out


def build_report(results: dict[str, Any], out_dir: Path) -> Report:
    """Turn ``results`` into the report (tables and plots)."""
    rep = Report(out_dir)
    mi = results["machine"]
    rep.h("rwkvfusion benchmark report", 1)
    rep.p(f"Measured on {mi['device_label']}; {mi['platform']}; Python {mi['python']}; date {mi['date_utc']}; "
          f"git {mi.get('git_commit')}; OMP_NUM_THREADS={mi.get('OMP_NUM_THREADS')}; load average at start "
          f"{mi.get('load_average_1_5_15')}, at end {results.get('load_average_end')} (other processes share "
          "the CPU: high load inflates times). Versions: "
          + ", ".join(f"{k} {v}" for k, v in mi["versions"].items() if v) + ". "
          f"{'QUICK run (tiny sizes: plumbing only). ' if results['settings']['quick'] else ''}"
          "Times are medians of repeated runs after one warm-up; the benchmark reports, it does not assert.")
    sec = results["sections"]

    if "speed" in sec:
        _report_speed(rep, sec.get("speed"))
    rep.h("1. Kernels: Bi-WKV and cross-scan scaling")
    _section_status(rep, sec.get("kernels"))
    kern = sec.get("kernels") or {}
    if kern.get("result") is not None:
        res = kern["result"]
        rep.p("Bi-WKV: exact O(T) PyTorch path (and Triton kernels on CUDA) against scaled_dot_product_attention, "
              "from rwkvfusion_kernels.bench (full report: kernels.md beside this file).")
        for name, rows in _tables_from(res):
            keys = list(dict.fromkeys(k for r in rows for k in r))
            rep.p(f"`{name}`")
            rep.table(keys, [[r.get(k) for k in keys] for r in rows])
        sc = _leaf_scalars(res, skip=("machine",))
        if sc:
            rep.table(["field", "value"], sc)
    if kern.get("cross_scan") is not None:
        cs = kern["cross_scan"]
        rep.p("Cross-scan / cross-merge (ESS), batch 1: median times and achieved bandwidth as a fraction of a "
              "same-size clone's copy bandwidth; exponents of time vs tokens: "
              + ", ".join(f"{k[9:]} {_fmt(v)}" for k, v in cs.items() if k.startswith("exponent_")) + ".")
        keys = list(cs["rows"][0]) if cs["rows"] else []
        rep.table(keys, [[r.get(k) for k in keys] for r in cs["rows"]])

    rep.h("2. Model cost per task configuration")
    cost = sec.get("cost")
    _section_status(rep, cost)
    if cost and "rows" in cost:
        pp = cost["paper"]
        rep.p(f"{cost['size']}x{cost['size']}, batch {cost['batch']}, {cost['note']}. Paper (Table 4, "
              f"{pp['device']}, VIF): {pp['params_M']} M parameters, {pp['GFLOPs']} GFLOPs, {pp['images_per_s']} "
              f"images/s ({pp['images_per_s_with_semantics']} with offline semantics). Measured on: "
              f"{mi['device_label']}. Peak memory: {_mem_method(cost)}. Papers' FLOP tools (thop/fvcore) "
              "usually count one multiply-add as one FLOP: compare the paper's figure with the GMAC column. "
              "CPU columns: median process CPU time (all threads) per pass, less sensitive than wall time to the "
              "load of other processes on a shared machine.")
        header = ["task", "params [M]", "GFLOPs", "GMAC", "fwd images/s", "fwd+bwd images/s", "fwd CPU [s]",
                  "fwd+bwd CPU [s]", "fwd peak [MiB]", "fwd+bwd peak [MiB]", "device", "FLOP counter"]
        rows = [["paper (VIF)", pp["params_M"], pp["GFLOPs"], None, pp["images_per_s"], None, None, None, None, None,
                 pp["device"], "paper"]]
        for r in cost["rows"]:
            if "error" in r:
                rows.append([r["task"], "error: " + r["error"]] + [None] * 10)
                continue
            fw, tr = r.get("forward", {}), r.get("train", {})
            rows.append([r["task"], r["params"] / 1e6, r.get("flops", float("nan")) / 1e9,
                         r.get("flops", float("nan")) / 2e9, fw.get("images_per_s"), tr.get("images_per_s"),
                         fw.get("median_cpu_s"), tr.get("median_cpu_s"), fw.get("peak_mem_mib"), tr.get("peak_mem_mib"), r["device"], r.get("counter")])
        rep.table(header, rows)
        for fname, cap in _plot_cost(out_dir, cost):
            rep.image(fname, cap)

    rep.h("3. Scaling with resolution: RWKV vs softmax attention")
    sc = sec.get("scaling")
    _section_status(rep, sc)
    if sc and "series" in sc:
        ex = sc["exponents"]
        rep.p(f"Task {sc['task']} configuration, batch {sc['batch']}, {sc['note']}. Fitted exponents: "
              + "; ".join(f"{op}: p = {_fmt(e['largest_three'])} over sizes {e['largest_three_sizes']} (all "
                          f"{e['points']} sizes: {_fmt(e['all'])}; last two: {_fmt(e['last_two'])}; process CPU "
                          f"time: {_fmt(e.get('cpu_largest_three'))} over the same sizes, {_fmt(e.get('cpu_all'))} "
                          f"over all; peak memory vs pixels: {_fmt(e['memory_all'])})" for op, e in ex.items())
              + ". On a shared machine wall time is inflated by other processes' load; the process CPU time "
                "(all threads) is less sensitive to it"
              + ". Linear cost means p = 1, full softmax attention p = 2 (its convolutions and MLPs add a "
                "linear part, so the fitted p approaches 2 from below as the attention share grows).")
        rows = []
        for op, pts in sc["series"].items():
            for p in pts:
                rows.append([op, f"{p['size']}x{p['size']}", p["pixels"], p.get("median_s"), p.get("median_cpu_s"),
                             p.get("peak_mem_mib"), p.get("skipped", "")])
        rep.table(["spatial mix", "size", "pixels", "forward wall [s]", "forward CPU [s]", "peak mem [MiB]",
                   "skipped because"], rows)
        for fname, cap in _plot_scaling(out_dir, sc):
            rep.image(fname, cap)

    rep.h("4. Quality on real data")
    q = sec.get("quality")
    _section_status(rep, q)
    if q and "tasks" in q:
        rep.p(f"Data: {q['data_root']}; at most {q['max_pairs']} pairs (or images) per task, round-robin over "
              "the task's datasets. Cells: mean ± std (population) over pairs.")
        for task, tr in q["tasks"].items():
            rep.h(task.upper(), 3)
            if "error" in tr:
                rep.p(f"error: {tr['error']}")
                continue
            rep.p(tr["protocol"] + ". " + ("pairs: " + ", ".join(tr.get("pairs", tr.get("images", [])))))
            for label, summ in ((("reduced resolution", tr["reduced"]), ("full resolution", tr["full"]))
                                if task == "pan" else (("", tr["summary"]),)):
                if not summ:
                    continue
                metrics = list(dict.fromkeys(k for m in summ.values() for k in m))
                if label:
                    rep.p(label)
                rep.table(["method"] + metrics,
                          [[m] + [f"{v[k]['mean']:.4g} ± {v[k]['std']:.2g}" if k in v else None for k in metrics]
                           for m, v in summ.items()])
            if tr.get("seconds_per_pair"):
                rep.p("median seconds per pair: "
                      + ", ".join(f"{m} {s:.3g}" for m, s in tr["seconds_per_pair"].items()))
            for n in tr.get("notes", [])[:10]:
                rep.p("note: " + n)

    rep.h("5. Annotation cost per model")
    an = sec.get("annotate")
    _section_status(rep, an)
    if an and "rows" in an:
        reps = an["rows"][0]["repeats"] if an["rows"] else 0
        rep.p(f"{an['label']} ({an['device']}; {an['source']}; median of {reps} runs). For scale: {an['paper']}.")
        rep.table(["model", "load [s]", "seconds per image"], [[r["model"], r["load_s"], r["s_per_image"]]
                                                                for r in an["rows"]])

    rep.h("6. Metric suite speed")
    ms = sec.get("metrics")
    _section_status(rep, ms)
    if ms and "vifb_grey_s" in ms:
        rep.p(f"{ms['image']}; median of {ms['repeats']} runs; budget {ms['budget_s']} s for the whole VIFB suite "
              f"({'met' if ms['vifb_within_budget'] else 'NOT met'}).")
        rep.table(["suite", "seconds"], [["VIFB, grey fused", ms["vifb_grey_s"]],
                                         ["VIFB, colour fused (per channel)", ms["vifb_colour_s"]],
                                         ["MEFB, grey fused", ms["mefb_grey_s"]]])
        rep.table(["VIFB metric (colour)", "seconds"], [[k, v] for k, v in ms["per_metric_vifb_colour_s"].items()])
        rep.table(["MEFB metric (grey)", "seconds"], [[k, v] for k, v in ms["per_metric_mefb_grey_s"].items()])
    return rep


def _mem_method(cost: dict[str, Any]) -> str:
    dev = next((r.get("device") for r in cost["rows"] if "device" in r), "cpu")
    return ("torch.cuda.max_memory_allocated above the model and inputs" if dev == "cuda" else
            "increase of the resident set during the warm-up pass over the built model and inputs, in a fresh "
            "subprocess (ru_maxrss high-water mark, or a 1 ms RSS sampler when the mark did not move); it "
            "includes allocator slack")


def _section_speed(out: Path, st: BenchSettings, root: Path, log: Callable[[str], None]) -> dict[str, Any]:
    from fusion.bench_speed import section_speed

    return section_speed(out, quick=st.quick, data_root=root, log=log, with_compile=st.speed_compile)


def _report_speed(rep: Report, sec: dict[str, Any] | None) -> None:
    from fusion.bench_speed import report_lines

    rep.h("Speed: CPU fast path beside the previous implementation")
    _section_status(rep, sec)
    if not sec or "forward" not in sec:
        return
    head, rows, trows, notes = report_lines(sec)
    rep.p("VIF forward, batch 1, 2 threads, torch.inference_mode, no text or mask; modes: previous (git "
          f"{sec.get('baseline_rev')}, fp32 eager), eager (fp32), bf16 (CPU autocast), compile (torch.compile, fp32).")
    rep.table(head, rows)
    spec = sec.get("train", {}).get("spec", {})
    rep.p(f"Training step (batch {spec.get('batch')}, {spec.get('size')}x{spec.get('size')}, forward + backward + "
          "AdamW step):")
    rep.table(["mode", "median s", "median CPU s", "peak RSS MiB", "speedup (wall)", "speedup (CPU)"], trows)
    for n in notes:
        rep.p(n)


def _section_status(rep: Report, sec: dict[str, Any] | None) -> None:
    if sec is None:
        rep.p("not run (not selected).")
    elif "skipped" in sec:
        rep.p(f"skipped: {sec['skipped']}")
    elif "error" in sec:
        rep.p(f"could not run: {sec['error']}")
    if sec is not None and "seconds" in sec:
        rep.p(f"(section wall time {sec['seconds']:.0f} s)")


# ============================================================================ driver
def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return repr(obj)


def run_bench(out_dir: str | Path, *, quick: bool = False, data_root: str | Path | None = None,
              sections: tuple[str, ...] = SECTIONS, settings: BenchSettings | None = None,
              log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the selected sections and write results.json, report.md and report.html into ``out_dir``."""
    bad = [s for s in sections if s not in SECTIONS]
    if bad:
        raise ValueError(f"sections: unknown {bad}; valid: {', '.join(SECTIONS)}")
    st = settings or (BenchSettings.quick_settings() if quick else BenchSettings())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    root = Path(data_root) if data_root is not None else DEFAULT_DATA
    results: dict[str, Any] = {"machine": machine_info(), "settings": _jsonable(st.__dict__), "sections": {}}
    runners: dict[str, Callable[[], dict[str, Any]]] = {
        "kernels": lambda: section_kernels(out, st), "cost": lambda: section_cost(out, st),
        "scaling": lambda: section_scaling(out, st), "quality": lambda: section_quality(out, st, root),
        "speed": lambda: _section_speed(out, st, root, log),
        "annotate": lambda: section_annotate(out, st), "metrics": lambda: section_metrics(out, st, root)}
    t_all = time.perf_counter()
    for name in sections:
        log(f"[bench] {name} ...")
        t0 = time.perf_counter()
        try:
            res = runners[name]()
        except Exception as err:  # noqa: BLE001 - a section that cannot run records why
            res = {"error": f"{type(err).__name__}: {err}", "trace": traceback.format_exc(limit=4)}
        res["seconds"] = time.perf_counter() - t0
        results["sections"][name] = _jsonable(res)
        (out / "results.json").write_text(json.dumps(_jsonable(results), indent=1))  # partial results so far
        log(f"[bench] {name} done in {res['seconds']:.0f} s" + (f" ({res['error']})" if "error" in res else ""))
    results["total_seconds"] = time.perf_counter() - t_all
    results["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    (out / "results.json").write_text(json.dumps(_jsonable(results), indent=1))
    rep = build_report(results, out)
    rep.p(f"Total bench wall time: {results['total_seconds']:.0f} s.")
    (out / "report.md").write_text(rep.markdown())
    (out / "report.html").write_text(rep.html())
    sc = results["sections"].get("scaling", {})
    for op, e in sc.get("exponents", {}).items():
        log(f"[bench] fitted exponent time ~ pixels^p, {op}: p = {_fmt(e['largest_three'])} over sizes "
            f"{e['largest_three_sizes']} (all {e['points']} sizes: {_fmt(e['all'])})")
    return results


def register(app: Any) -> None:
    """Add the ``bench`` command to the fusion CLI."""
    import typer

    @app.command("bench")
    def bench(out: Path = typer.Option(Path("bench"), "--out", help="output folder"),
              quick: bool = typer.Option(False, "--quick", help="tiny sizes (tests / plumbing check)"),
              data: Path | None = typer.Option(None, "--data", help="real data root (default ../shared/data)"),
              sections: str = typer.Option(",".join(SECTIONS), "--sections", help="comma-separated subset"),
              max_pairs: int | None = typer.Option(None, "--max-pairs", help="pairs per task in the quality section"),
              compile_model: bool = typer.Option(True, "--compile/--no-compile",
                                                 help="speed section: also measure torch.compile'd models"),
              ) -> None:
        """Speed, memory scaling and quality report: bench/results.json, report.md, report.html."""
        st = BenchSettings.quick_settings() if quick else BenchSettings()
        if max_pairs is not None:
            st.max_pairs = max_pairs
        st.speed_compile = compile_model
        try:
            run_bench(out, quick=quick, data_root=data, settings=st,
                      sections=tuple(s.strip() for s in sections.split(",") if s.strip()))
        except ValueError as err:
            raise typer.BadParameter(str(err)) from err
        typer.echo(f"wrote {out}/results.json, {out}/report.md, {out}/report.html")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "probe":
        print(json.dumps(_jsonable(probe(json.loads(sys.argv[2])))))
    else:
        sys.exit("usage: python -m fusion.bench probe '<json spec>' (internal; use `python -m fusion bench`)")
