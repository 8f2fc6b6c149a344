"""Package structure: distinct import names and the layering (annotate and manifests never import fusion)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run_elsewhere(tmp_path: Path, code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_kernels_install_under_a_distinct_name(tmp_path):
    """``import kernels`` outside the checkout never finds this project (the name is Hugging Face's)."""
    res = _run_elsewhere(tmp_path, (
        "import importlib.util, json, rwkvfusion_kernels\n"
        "spec = importlib.util.find_spec('kernels')\n"
        "print(json.dumps({'ours': rwkvfusion_kernels.__file__, 'kernels': spec.origin if spec else None}))"))
    assert Path(res["ours"]).resolve().is_relative_to(REPO)
    assert res["kernels"] is None or not Path(res["kernels"]).resolve().is_relative_to(REPO / "kernels")


def test_kernels_name_inside_the_checkout_is_hugging_faces(tmp_path):
    """With the checkout's root on sys.path (``python -m`` or pytest there) ``import kernels`` still gives the
    installed ``kernels`` distribution (transformers imports it), and this project's kernels still work."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        version("kernels")
    except PackageNotFoundError:
        pytest.skip("Hugging Face's kernels package is not installed")
    res = _run_elsewhere(REPO, (
        "import json, sys\n"
        "sys.path.insert(0, '')\n"
        "import kernels, rwkvfusion_kernels\n"
        "import transformers.integrations.hub_kernels\n"
        "print(json.dumps({'kernels': kernels.__file__, 'ours': rwkvfusion_kernels.bi_wkv.__module__}))"))
    assert not Path(res["kernels"]).resolve().is_relative_to(REPO / "kernels")
    assert res["ours"].startswith("rwkvfusion_kernels.")


def test_annotate_and_manifests_import_nothing_from_fusion(tmp_path):
    res = _run_elsewhere(tmp_path, (
        "import json, sys\n"
        "import annotate.cli, annotate.discover, annotate.pipeline, annotate.runner, annotate.smoke, manifests.cli\n"
        "print(json.dumps(sorted(m for m in sys.modules if m == 'fusion' or m.startswith('fusion.'))))"))
    assert res == []
