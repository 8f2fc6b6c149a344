"""Spatial-mix kernels : Bi-WKV (Eq. 2) and the ESS cross-scan, with Triton and exact PyTorch paths.

``from rwkvfusion_kernels import bi_wkv, cross_scan, cross_merge, SCAN_K``. Importing launches no kernel, so it works
on a CPU machine without TRITON_INTERPRET; the Triton modules are imported lazily on first use.
"""


def _hand_over_the_name() -> bool:
    """This folder installs as ``rwkvfusion_kernels`` (setup.py). It is reached as ``kernels`` only through a
    checkout's root on ``sys.path`` (``python -m`` or pytest run there), where it would shadow Hugging Face's
    ``kernels`` distribution, which transformers imports. Load that one under its name instead (True), or
    stay this package when it is not installed (False)."""
    import sys
    from importlib.machinery import PathFinder
    from importlib.util import module_from_spec
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = PathFinder.find_spec("kernels", [p for p in sys.path if Path(p or ".").resolve() != root])
    if spec is None or spec.loader is None:
        return False
    module = module_from_spec(spec)
    sys.modules["kernels"] = module
    spec.loader.exec_module(module)
    return True


if __name__ != "kernels" or not _hand_over_the_name():
    from .ops.bi_wkv import bi_wkv
    from .ops.cross_scan import SCAN_K, cross_merge, cross_scan

__all__ = ["bi_wkv", "cross_scan", "cross_merge", "SCAN_K"]
