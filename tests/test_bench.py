"""Benchmark plumbing (fusion.bench package): exponent fit, memory probe, report rendering, the --quick CLI run."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fusion import bench
from fusion.bench.machine import fit_exponent, machine_info
from fusion.bench.probe import PeakRSS, probe
from fusion.bench.quality import _summarise
from fusion.bench.report import build_report
from fusion.bench.sections import _attn_matrix_gib
from fusion.bench.settings import PAPER_TABLE4, SECTIONS
from fusion.evaluation import take_round_robin as _take
from rwkvfusion_io.images import read_luma
from rwkvfusion_io.layouts import fusion_pairs

REPO = Path(__file__).resolve().parents[1]


def test_fit_exponent_closed_form():
    px = [64**2, 128**2, 256**2, 512**2]
    assert fit_exponent(px, [3e-7 * p**1.5 for p in px]) == pytest.approx(1.5)
    assert fit_exponent(px, [2.0 * p for p in px]) == pytest.approx(1.0)
    assert fit_exponent(px[:1], [1.0]) is None
    # failed or missing points are ignored
    assert fit_exponent(px, [1.0, 4.0, float("nan"), 64.0]) == pytest.approx(1.0)


def test_attention_matrix_size():
    # K2 scans x 1 head x (256^2)^2 float32 scores = 32 GiB
    assert _attn_matrix_gib(256) == pytest.approx(32.0)
    assert _attn_matrix_gib(128) == pytest.approx(2.0)


def test_take_round_robin_and_summary():
    groups = [[1, 2, 3], [10], [20, 21]]
    assert _take(groups, 4) == [1, 10, 20, 2]
    assert _take(groups, 99) == [1, 10, 20, 2, 21, 3]
    s = _summarise({"m": [{"x": 1.0, "y": float("nan")}, {"x": 3.0, "y": 2.0}]})
    assert s["m"]["x"] == {"mean": 2.0, "std": 1.0, "n": 2}
    assert s["m"]["y"] == {"mean": 2.0, "std": 0.0, "n": 1}


def test_peak_rss_sees_an_allocation():
    with PeakRSS() as mem:
        block = np.ones(64 * 2**20 // 8)  # 64 MiB touched
        del block
    assert 48.0 < mem.delta < 200.0


def test_probe_in_process_tiny_model():
    res = probe({"task": "vif", "size": 16, "modes": ["forward", "train"], "repeats": 1, "flops": True})
    assert res["params"] > 0 and res["flops"] > 0
    for mode in ("forward", "train"):
        assert res[mode]["median_s"] > 0 and res[mode]["images_per_s"] == pytest.approx(1 / res[mode]["median_s"])
        assert res[mode]["peak_mem_mib"] >= 0 and res[mode]["median_cpu_s"] > 0


def _synthetic_results() -> dict:
    series = {
        "bi_wkv": [{"size": s, "pixels": s * s, "median_s": 1e-5 * s * s, "peak_mem_mib": 1e-3 * s * s}
                   for s in (64, 128)],
        "attention": [{"size": 64, "pixels": 4096, "median_s": 0.1, "peak_mem_mib": 10.0},
                      {"size": 256, "pixels": 65536, "skipped": "too big"}],
    }
    return {
        "machine": machine_info(), "settings": {"quick": True}, "total_seconds": 1.0,
        "sections": {
            "kernels": {"error": "ModuleNotFoundError: x", "seconds": 0.0},
            "cost": {"size": 32, "batch": 1, "paper": PAPER_TABLE4, "note": "n", "seconds": 1.0,
                     "rows": [{"task": "vif", "params": 341265, "flops": 2e9, "device": "cpu", "counter": "c",
                               "forward": {"images_per_s": 2.0, "peak_mem_mib": 5.0},
                               "train": {"images_per_s": 1.0, "peak_mem_mib": 9.0}},
                              {"task": "pan", "error": "boom"}]},
            "scaling": {"task": "vif", "batch": 1, "note": "n", "series": series, "exponents": {
                op: {"largest_three": 1.0, "largest_three_sizes": [64, 128], "all": 1.0, "last_two": 1.0,
                     "memory_all": 1.0, "points": 2} for op in series}},
            "quality": {"skipped": "real data folder absent"},
            "annotate": {"rows": [{"model": "sam", "load_s": 0.1, "s_per_image": 0.2, "repeats": 1}],
                         "device": "CPU", "label": "plumbing check", "source": "s", "paper": "p"},
        },
    }


def test_report_renders_markdown_and_self_contained_html(tmp_path):
    rep = build_report(_synthetic_results(), tmp_path)
    md, page = rep.markdown(), rep.html()
    assert "| vif | 0.3413 | 2 | 1 | 2 | 1 | - | - | 5 | 9 | cpu | c |" in md
    assert "could not run: ModuleNotFoundError" in md and "skipped: real data folder absent" in md
    assert "| attention | 256x256 | 65536 | - | - | - | too big |" in md
    assert (tmp_path / "scaling_time.png").is_file() and "](scaling_time.png)" in md
    assert page.count("data:image/png;base64,") == md.count("![")
    assert "<table>" in page and "plumbing check" in page


def test_merge_keeps_other_sections_and_says_where_they_came_from(tmp_path):
    out = tmp_path / "bench"
    out.mkdir()
    prior = {"machine": {"date_utc": "2026-11-01T00:00:00", "git_commit": "abc1234"}, "settings": {},
             "sections": {"cost": {"error": "ModuleNotFoundError: kept", "seconds": 1.0},
                          "quality": {"stale": True}}}
    (out / "results.json").write_text(json.dumps(prior))
    res = bench.run_bench(out, quick=True, data_root=tmp_path / "absent", sections=("quality",), merge=True,
                          log=lambda s: None)
    assert res["sections"]["cost"] == prior["sections"]["cost"]                      # kept as it was
    assert "stale" not in res["sections"]["quality"]                                 # re-measured
    assert res["kept_sections"] == {"cost": {"date_utc": "2026-11-01T00:00:00", "git_commit": "abc1234"}}
    assert json.loads((out / "results.json").read_text())["kept_sections"] == res["kept_sections"]
    md = (out / "report.md").read_text()
    assert "Sections kept from earlier runs (`--merge`): cost (2026-11-01T00:00:00, git abc1234)" in md
    # merging again keeps the kept section's own stamp, not the intermediate run's
    again = bench.run_bench(out, quick=True, data_root=tmp_path / "absent", sections=("quality",), merge=True,
                            log=lambda s: None)
    assert again["kept_sections"] == res["kept_sections"] and set(again["sections"]) == {"cost", "quality"}
    # without --merge the old sections are gone; a foreign results.json is refused with its name
    assert set(bench.run_bench(out, quick=True, data_root=tmp_path / "absent", sections=("quality",),
                               log=lambda s: None)["sections"]) == {"quality"}
    (out / "results.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="results.json: cannot merge"):
        bench.run_bench(out, quick=True, sections=("quality",), merge=True, log=lambda s: None)


def test_bench_rejects_unknown_section(tmp_path):
    with pytest.raises(ValueError, match="unknown"):
        bench.run_bench(tmp_path, sections=("nope",))


@pytest.mark.realdata
def test_real_pairs_are_found(shared_data):
    vif = fusion_pairs("vif", shared_data)
    assert [len(g) for g in vif] == [25, 50]
    assert all(a.parent.name == "ir" and b.parent.name == "vi" for _, a, b in vif[0])
    mef = fusion_pairs("mef", shared_data)
    _, dark, bright = mef[-1][0]
    assert read_luma(dark).mean() < read_luma(bright).mean()
    assert len(_take(fusion_pairs("mff", shared_data), 8)) == 8


@pytest.mark.realdata
@pytest.mark.slow
def test_quick_bench_cli_writes_the_three_files(tmp_path, shared_data):
    env = {**os.environ, "RWKVFUSION_SHARED_DATA": str(shared_data)}
    # kernels.bench has its own tests; its quick table alone takes ~30 s on 2 cores
    sections = ",".join(s for s in SECTIONS if s != "kernels")
    proc = subprocess.run([sys.executable, "-m", "fusion", "bench", "--out", str(tmp_path), "--quick",
                           "--sections", sections], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads((tmp_path / "results.json").read_text())
    assert set(res["sections"]) == set(SECTIONS) - {"kernels"}
    assert not any("error" in sec for sec in res["sections"].values())
    assert res["settings"]["quick"] is True
    q = res["sections"]["quality"]["tasks"]
    assert set(q) == {"vif", "pan"} and "gff" in q["vif"]["summary"] and "mtf-glp-hpm" in q["pan"]["reduced"]
    # the bundled pansharpening models are scored on the held-back halves only (their top halves trained them)
    assert set(q["pan"]["held_back"]) == {"pan4", "pan8"}
    assert q["pan"]["held_back"]["pan4"]["sets"]["imgGE1"]["region"]["rows"] == [160, 320]
    assert res["sections"]["cost"]["rows"][0]["forward"]["median_s"] > 0
    assert all(math.isfinite(p["median_s"]) for p in res["sections"]["scaling"]["series"]["bi_wkv"])
    md = (tmp_path / "report.md").read_text()
    assert "QUICK run" in md and "## 4. Quality on real data" in md
    assert (tmp_path / "report.html").read_text().startswith("<!DOCTYPE html>")


@pytest.mark.slow
def test_speed_section_measures_previous_and_current(tmp_path):
    from fusion.bench.speed import report_lines, section_speed

    res = section_speed(tmp_path, quick=True, log=lambda s: None)
    row = res["forward"]["32"]
    if not res["baseline_available"]:
        pytest.skip("git archive of the baseline revision unavailable here")
    for mode in ("previous", "eager", "bf16"):
        assert row[mode]["images_per_s"] > 0 and row[mode]["peak_rss_mib"] > 0, mode
    assert row["speedup_eager"] > 0 and res["train"]["eager"]["median_s"] > 0
    assert res["train"]["bf16"]["median_s"] > 0 and res["train"]["speedup_bf16"] > 0
    assert "max_abs_diff" in res["bf16_accuracy"]
    head, rows, trows, notes = report_lines(res)
    assert len(rows) == 4 and len(trows) == 4 and (tmp_path / "speed.json").exists()
