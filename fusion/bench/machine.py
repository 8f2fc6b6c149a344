"""The machine a bench ran on (CPU, versions, load) and the fitting of scaling exponents."""
from __future__ import annotations

import datetime as _dt
import math
import os
import platform
import statistics
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from fusion.bench.settings import REPO


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
