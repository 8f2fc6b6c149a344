"""Build a small C source into a shared library on first use (``cc``, no PyTorch headers) and load it.

The library is cached per user under ``$RWKVFUSION_KERNEL_CACHE`` (default ``~/.cache/rwkvfusion/kernels``),
keyed by the source text, the compiler, its flags and the CPU, and replaced atomically. ``-march=native`` is
tried first, then portable flags. Returns None when no compiler works; callers then use PyTorch.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import subprocess
import tempfile
from pathlib import Path

FLAGS = (["-O3", "-march=native", "-fPIC", "-shared"], ["-O3", "-fPIC", "-shared"])


def cpu_id() -> str:
    """CPU flags and model name (part of the cache key: a -march=native build only runs where it was built)."""
    try:
        txt = Path("/proc/cpuinfo").read_text()
        flags = next((ln for ln in txt.splitlines() if ln.startswith(("flags", "Features"))), "")
        model = next((ln for ln in txt.splitlines() if ln.startswith("model name")), "")
        return flags + model
    except OSError:
        return platform.processor()


def cache_dir() -> Path:
    root = os.environ.get("RWKVFUSION_KERNEL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "rwkvfusion", "kernels")
    return Path(root)


def build(name: str, src: Path, extra: tuple[Path, ...] = (), native_flags: tuple[str, ...] = ()) -> ctypes.CDLL | None:
    """Compile ``src`` (which may #include the ``extra`` files) into ``<cache>/<name>_<key>.so`` and load it.

    ``native_flags`` are tried first with the ``-march=native`` flags (a compiler that rejects them falls back to
    the plain flag sets)."""
    text = src.read_bytes() + b"".join(p.read_bytes() for p in extra)
    cc, cpu = os.environ.get("CC", "cc"), cpu_id().encode()
    for flags in ((FLAGS[0] + list(native_flags),) if native_flags else ()) + FLAGS:
        key = hashlib.sha256(text + " ".join([cc, *flags]).encode() + cpu).hexdigest()[:16]
        out = cache_dir() / f"{name}_{key}.so"
        if not out.exists():
            try:
                out.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
                os.close(fd)
                res = subprocess.run([cc, *flags, "-o", tmp, str(src), "-lm"], capture_output=True, timeout=120)
                if res.returncode != 0:
                    os.unlink(tmp)
                    continue
                os.replace(tmp, out)                     # atomic: concurrent builders never see half a file
            except (OSError, subprocess.SubprocessError):
                continue
        try:
            return ctypes.CDLL(str(out))
        except OSError:
            continue
    return None
