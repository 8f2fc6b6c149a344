"""One model measurement in a fresh interpreter: time, FLOPs and peak memory (:class:`PeakRSS`)."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fusion.bench.machine import _median
from fusion.bench.settings import REPO


# ============================================================================ model probe (subprocess)
def _model_inputs(cfg: Any, size: int, device: str) -> tuple[Any, Any]:
    """Random inputs of the model's task at size x size (fusion: Y pairs; pan/hmif: lms + PAN/HR-MSI)."""
    import torch

    gen = torch.Generator().manual_seed(0)
    a = torch.rand(1, cfg.model.a_channels, size, size, generator=gen)
    b = torch.rand(1, cfg.model.b_channels, size, size, generator=gen)
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


def jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
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
