"""rwkvfusion_kernels.bench: the report files and their fields (tiny sizes; timings are recorded, never asserted)."""
from __future__ import annotations

import json

from rwkvfusion_kernels import bench


def test_fit_exponent_recovers_power_law():
    rows = [{"T": t, "s": 3e-9 * t ** 1.5} for t in (10, 100, 1000)]
    assert abs(bench._fit_exponent(rows, "s") - 1.5) < 1e-9
    assert bench._fit_exponent(rows[:1], "s") is None


def test_run_kernel_bench_writes_json_and_markdown(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "QUICK_SIZES", [8, 16])
    # in-process workers keep the test fast (the subprocess path is covered below)
    monkeypatch.setattr(bench, "_spawn", lambda impl, T, C, repeats, timeout, threads=0: bench._worker(impl, T, C, repeats, threads))
    res = bench.run_kernel_bench(tmp_path, quick=True)
    data = json.loads((tmp_path / "kernels.json").read_text())
    assert data["quick"] is True and data["machine"]["torch"]
    rows = data["cpu"]["bi_wkv_torch"]
    assert [r["T"] for r in rows] == [64, 256]
    for r in rows:
        assert r["fwd_s"] > 0 and r["fwd_bwd_s"] > 0 and r["fwd_bwd_peak_extra_mib"] >= 0
    assert data["cpu"]["exponent_fwd_bwd"] is not None
    assert [r["threads"] for r in data["cpu"]["bi_wkv_torch_1_thread"]] == [1, 1]
    assert data["cpu"]["single_thread"]["exponent_fwd_bwd"] is not None
    assert [r["T"] for r in data["cpu"]["sdpa"]] == [64, 256]
    md = (tmp_path / "kernels.md").read_text()
    assert "| 16^2 = 256 | torch |" in md and "exponent" in md
    assert res["cpu"]["bi_wkv_torch"][0]["T"] == 64


def test_worker_subprocess_reports_json():
    row = bench._spawn("torch", 64, 4, 1, timeout=120)
    assert row["impl"] == "torch" and row["T"] == 64 and row["fwd_bwd_s"] > 0
