"""Test-wide environment: Triton interpreter on CPU, private caches, the ``realdata`` marker.

Triton tests take the ``triton_device`` fixture: "cuda" when a GPU is present (the compiled kernels run
there), else "cpu" with TRITON_INTERPRET=1 (set below, before any kernel module is imported).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

_TMP = Path(tempfile.mkdtemp(prefix="rwkvfusion-tests-"))
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
for _var, _sub in (("HF_HOME", "hf"), ("TORCHINDUCTOR_CACHE_DIR", "inductor"), ("MPLCONFIGDIR", "mpl"),
                   ("TRITON_CACHE_DIR", "triton"), ("RWKVFUSION_KERNEL_CACHE", "kernels")):
    os.environ.setdefault(_var, str(_TMP / _sub))
os.environ.setdefault("MPLBACKEND", "Agg")

import torch  # noqa: E402  (after the environment is set)

TRITON_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
if TRITON_DEVICE == "cpu":
    # Must happen before any @triton.jit decorator runs (i.e. before rwkvfusion_kernels.* is imported).
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RWKVFUSION_SHARED_DATA", REPO.parent / "shared" / "data"))


def pytest_collection_modifyitems(config, items):
    if SHARED_DATA.is_dir():
        return
    skip = pytest.mark.skip(reason=f"real data folder {SHARED_DATA} is absent (set RWKVFUSION_SHARED_DATA)")
    for item in items:
        if "realdata" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def triton_device() -> str:
    """Where the Triton kernels run in tests: the GPU when present, else the interpreter on the CPU."""
    return TRITON_DEVICE


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of ../shared/data; tests using it must carry ``@pytest.mark.realdata``."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    return SHARED_DATA


# ---------------------------------------------------------- module fixtures shared by several test files
@pytest.fixture(scope="module")
def demo_root(tmp_path_factory) -> Path:
    from fusion.demo import build_demo_data

    root = tmp_path_factory.mktemp("demo")
    build_demo_data(root, tasks=["mef"])
    return root


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> Path:
    from annotate.smoke import build_tiny_models

    root = tmp_path_factory.mktemp("tiny") / "models"
    build_tiny_models(root)
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from fusion.model.build import build_model
    from fusion.train.checkpoint import export_checkpoint

    torch.manual_seed(0)
    return export_checkpoint(build_model("mef"), tmp_path_factory.mktemp("ckpt") / "checkpoint.pt")
