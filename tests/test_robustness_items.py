"""One test per reliability fix: safe loading, path containment, install, runs, bad samples, fuse, annotate,
image depth, CSV and manifest writing, stale temporaries, umask, one-line errors."""
from __future__ import annotations

import http.server
import logging
import os
import shutil
import socket
import stat
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import (
    BAD_NAME,
    FUSION,
    REPO,
    Evil,
    annotate_vif,
    copy_demo,
    error_lines,
    evil_checkpoint,
    file_digests,
    invoke,
    make_vif_dir,
    manifest_table,
    manifests_cli,
    tiny_run,
    write_float_tiff,
    write_png,
)
from PIL import Image

import manifests


# ===================================================================================== one test per fix
# 1. checkpoints are loaded without unpickling objects
def test_crafted_checkpoint_is_refused_without_running_code(tmp_path):
    from fusion.train.checkpoint import CheckpointError, load_checkpoint, read_model_checkpoint

    marker = tmp_path / "pwned"
    evil = evil_checkpoint(tmp_path / "evil.pt", marker)
    with pytest.raises(CheckpointError, match="evil.pt.*pickled Python objects"):
        load_checkpoint(evil)
    with pytest.raises(CheckpointError, match="evil.pt"):
        read_model_checkpoint(evil)
    assert not marker.exists()


def test_resume_path_is_safe_too(tmp_path, demo_root):
    marker = tmp_path / "pwned"
    out = tmp_path / "run"
    out.mkdir()
    evil_checkpoint(out / "checkpoint.pt", marker)
    with pytest.raises(ValueError, match="checkpoint.pt"):
        tiny_run(demo_root, out, resume=True)
    assert not marker.exists()


def test_safetensors_export_reads_back_as_config_and_weights(tmp_path):
    from fusion.model.build import build_model
    from fusion.train.checkpoint import export_checkpoint, read_model_checkpoint
    from fusion.train.inference import load_model

    model = build_model("mef")
    path = export_checkpoint(model, tmp_path / "mef.safetensors", extra={"note": "x"})
    config, state = read_model_checkpoint(path)
    assert config["task"] == "mef"
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    loaded, ckpt = load_model(path)
    assert ckpt["note"] == "x" and loaded.cfg.task == "mef"
    pt_config, pt_state = read_model_checkpoint(export_checkpoint(model, tmp_path / "mef.pt"))
    assert pt_config == config and set(pt_state) == set(state)


# 2. no reader opens a manifest path outside its root
def test_resolve_inside_refuses_escapes(tmp_path):
    from manifests.io import resolve_inside

    root = tmp_path / "images"
    assert resolve_inside(root, "ir/1.png") == root / "ir" / "1.png"
    assert resolve_inside(root, "ir\\1.png") == root / "ir" / "1.png"
    for rel in ("/etc/passwd", "../x.png", "ir/../../x.png", "", "C:/x.png", "\\\\server\\x.png"):
        with pytest.raises(ValueError):
            resolve_inside(root, rel)


# 3. make install: CPU torch without an NVIDIA GPU, the default index when the CPU index is unreachable
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _make_torch(**variables: str) -> str:
    args = ["make", "-s", "--no-print-directory", "install-torch", "DRY_RUN=1"]
    args += [f"{k}={v}" for k, v in variables.items()]
    env = {k: v for k, v in os.environ.items() if k not in ("TORCH_SPEC", "MAKEFLAGS")}
    res = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=60, env=env)
    assert res.returncode == 0, res.stderr
    return res.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_install_picks_the_cpu_torch_index(tmp_path):
    (tmp_path / "torch").mkdir()
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        index = f"http://127.0.0.1:{server.server_address[1]}"
        out = _make_torch(HAVE_NVIDIA="0", TORCH_CPU_INDEX=index)
        assert "CPU build" in out and f"--index-url {index}" in out
    finally:
        server.shutdown()
    out = _make_torch(HAVE_NVIDIA="0", TORCH_CPU_INDEX=f"http://127.0.0.1:{_closed_port()}",
                      TORCH_INDEX_TIMEOUT="2")
    assert "unreachable" in out and "--index-url" not in out and "pip install torch==" in out
    out = _make_torch(HAVE_NVIDIA="1")
    assert "NVIDIA GPU found" in out and "--index-url" not in out
    out = _make_torch(HAVE_NVIDIA="0", TORCH_SPEC="torch==2.13.0 --index-url http://example.invalid/cu")
    assert "as given" in out and "--index-url http://example.invalid/cu" in out


# 4. a second `train` into a finished run refuses; --overwrite replaces it cleanly
def test_train_twice_refuses_then_overwrite_replaces(tmp_path, demo_root):
    out = tmp_path / "run"
    tiny_run(demo_root, out, steps=2)
    (out / "report.html").write_text("old report")
    before = file_digests(out)
    with pytest.raises(FileExistsError, match="--resume"):
        tiny_run(demo_root, out, steps=2)
    assert file_digests(out) == before
    tiny_run(demo_root, out, steps=2, overwrite=True)
    assert not (out / "report.html").exists() and (out / "checkpoint.pt").is_file()


# 5. unreadable samples are skipped and recorded; a resumed run does not read them again
def test_unreadable_sample_is_recorded_and_not_reread_after_resume(tmp_path, demo_root, monkeypatch):
    from fusion.data.datasets import PairedImageDataset
    from fusion.train.checkpoint import load_checkpoint

    root = copy_demo(demo_root, tmp_path)
    victim = root / "mef" / "train" / "oe" / "0003.png"
    victim.write_bytes(b"broken")
    out = tmp_path / "run"
    first = tiny_run(root, out, steps=12, batch_size=2, stop_after=6, checkpoint_every=6)
    assert not first["finished"] and list(first["unreadable_samples"]) == ["0003"]
    assert [u[1] for u in load_checkpoint(out / "checkpoint.pt")["unreadable"]] == ["0003"]
    loads: list[str] = []
    real = PairedImageDataset._load
    monkeypatch.setattr(PairedImageDataset, "_load",
                        lambda self, i: loads.append(self.samples[i].id) or real(self, i))
    second = tiny_run(root, out, steps=12, batch_size=2, resume=True, checkpoint_every=6)
    assert second["finished"] and "0003" in second["unreadable_samples"] and "0003" not in loads


def test_too_many_unreadable_samples_stop_training(tmp_path, demo_root):
    root = copy_demo(demo_root, tmp_path)
    for p in sorted((root / "mef" / "train" / "oe").glob("*.png"))[:4]:
        p.write_bytes(b"broken")
    with pytest.raises(ValueError, match="training samples are unreadable"):
        tiny_run(root, tmp_path / "run", steps=12, batch_size=2)


# 6. fuse over folders goes on past a bad pair (also covered by the table); the single-pair API still raises
def test_fuse_files_collects_failures(tmp_path):
    from fusion.train.inference import fuse_files, pair_inputs

    for n in ("1", "2", "3"):
        write_png(tmp_path / "a" / f"{n}.png")
        write_png(tmp_path / "b" / f"{n}.png")
    (tmp_path / "b" / "2.png").write_bytes(b"junk")
    pairs = pair_inputs(tmp_path / "a", tmp_path / "b")
    failures: list[tuple[str, str]] = []
    written = fuse_files(lambda x, y: (x + y) / 2, pairs, tmp_path / "o", failures=failures, progress=False)
    assert [p.name for p in written] == ["1.png", "3.png"]
    assert [f[0] for f in failures] == ["2"] and "2.png" in failures[0][1]
    with pytest.raises(ValueError, match="2.png"):
        fuse_files(lambda x, y: x, pairs, tmp_path / "o2", progress=False)


# 7. annotate: NaN float TIFF and non-UTF-8 file names are error rows; rows before them are kept
def test_annotate_error_rows_and_rerun(tmp_path, tiny_models):
    data = make_vif_dir(tmp_path / "data", ["01", "02"])
    arr = np.full((24, 24), 0.5, np.float32)
    arr[0, 0] = np.nan
    write_float_tiff(data / "ir" / "nan.tif", arr)
    write_png(data / "vi" / "nan.png")
    write_png(data / "ir" / f"{BAD_NAME}.png")
    write_png(data / "vi" / f"{BAD_NAME}.png")
    out = tmp_path / "m"
    s = annotate_vif(data, out, tiny_models, rows_per_part=1)
    rows = manifests.rows_by_id(manifests.read_manifest(out))
    assert {k: r["status"] for k, r in rows.items()} == {"all/01": "ok", "all/02": "ok", "all/nan": "error",
                                                         "all/caf\\xe9": "error"}
    assert "NaN" in rows["all/nan"]["error"] and "not valid UTF-8" in rows["all/caf\\xe9"]["error"]
    assert s.errors == 2
    again = annotate_vif(data, out, tiny_models)
    assert again.written == 0 and again.skipped == 4


def test_writer_refuses_a_row_it_cannot_store_and_keeps_the_others(tmp_path):
    row = manifest_table(tmp_path, ["s1"]).to_pylist()[0]
    w = manifests.ManifestWriter(tmp_path / "out", rows_per_part=10)
    w.write(row)
    with pytest.raises(ValueError, match="not valid UTF-8"):
        w.write({**row, "sample_id": BAD_NAME})
    w.close()
    assert manifests.read_manifest(tmp_path / "out").column("sample_id").to_pylist() == ["s1"]


# 8. huge images and 16-bit / float images
def test_metrics_reads_16_bit_and_float_images(tmp_path):
    """16-bit and float images are never scored as clipped 8-bit: refused by name unless their bit depth (and
    float range) is declared, then read at full precision."""
    from fusion.metrics.cli import read_image

    ramp = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "r16.png")
    with pytest.raises(ValueError, match=r"r16\.png.*uint16.*--bit-depth"):
        read_image(tmp_path / "r16.png")
    arr = read_image(tmp_path / "r16.png", "16")
    assert arr.dtype == np.float64 and arr.max() == pytest.approx(255.0) and len(np.unique(arr)) > 256
    write_float_tiff(tmp_path / "unit.tif", ramp / 65535.0)
    with pytest.raises(ValueError, match=r"unit\.tif.*--range"):
        read_image(tmp_path / "unit.tif", "float")
    assert read_image(tmp_path / "unit.tif", "float", (0.0, 1.0)).max() == pytest.approx(255.0, rel=1e-5)
    write_float_tiff(tmp_path / "wide.tif", ramp.astype(np.float32))
    with pytest.raises(ValueError, match=r"wide\.tif.*outside the declared range"):
        read_image(tmp_path / "wide.tif", "float", (0.0, 1.0))
    from fusion.metrics import fusion_metrics

    grey = np.asarray(read_image(tmp_path / "r16.png", "16"))
    assert fusion_metrics(grey, grey, grey, metrics=["EN"])["EN"] > 5.0


def test_data_reader_names_decompression_bombs(tmp_path, monkeypatch):
    from rwkvfusion_io.images import SampleError, read_image

    write_png(tmp_path / "big.png", 120, 120)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)
    with pytest.raises(SampleError, match="big.png.*too large"):
        read_image(tmp_path / "big.png")


# 9. metrics: non-UTF-8 names are scored and written (covered by the table); CSV writing is atomic
def test_metrics_csv_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    from fusion.metrics.cli import MetricsReport, write_csv

    out = tmp_path / "m.csv"
    out.write_text("old\n")
    report = MetricsReport(rows=[{"method": "x", "image": "1", "EN": object()}], metric_names=["EN"])
    monkeypatch.setattr("csv.DictWriter.writerow", lambda *a: (_ for _ in ()).throw(RuntimeError("disk full")))
    with pytest.raises(RuntimeError):
        write_csv(report, out)
    assert out.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["m.csv"]


# 10. manifests validate/merge
def test_validate_reports_an_ok_row_replaced_across_parts(tmp_path):
    from manifests.validate import validate_manifest

    d = tmp_path / "m"
    manifests.write_table_atomic(manifest_table(tmp_path, ["s1", "s2"]), d / "part-r000-00000.parquet")
    manifests.write_table_atomic(manifest_table(tmp_path, ["s2"], caption="other"), d / "part-r001-00001.parquet")
    problems = validate_manifest(d)
    assert [(p.sample_id, Path(p.file).name) for p in problems] == [("s2", "part-r001-00001.parquet")]
    assert "part-r000-00000.parquet" in problems[0].message


def test_merge_refuses_conflicts_unless_told(tmp_path):
    x, y = tmp_path / "x.parquet", tmp_path / "y.parquet"
    manifests.write_table_atomic(manifest_table(tmp_path, ["s1", "s2"]), x)
    manifests.write_table_atomic(manifest_table(tmp_path, ["s2", "s3"], caption="other"), y)
    with pytest.raises(ValueError, match="'s2'.*--prefer"):
        manifests.merge_manifests([x, y], tmp_path / "m.parquet")
    for prefer, caption in (("first", "a"), ("last", "other")):
        (m,) = manifests.merge_manifests([x, y], tmp_path / f"{prefer}.parquet", prefer=prefer)
        rows = manifests.rows_by_id(manifests.read_manifest(m))
        assert sorted(rows) == ["s1", "s2", "s3"] and rows["s2"]["caption_a"] == caption
    res = manifests_cli("merge", x, y, "--out", tmp_path / "cli.parquet", "--prefer", "last")
    assert res.exit_code == 0, res.output
    # identical rows (apart from the creation time) are no conflict
    (m,) = manifests.merge_manifests([x, x], tmp_path / "same.parquet")
    assert manifests.read_manifest(m).num_rows == 2


# 11. stale temporary checkpoint files are cleaned on the next start
def test_stale_checkpoint_temporaries_are_removed(tmp_path, demo_root):
    out = tmp_path / "run"
    out.mkdir()
    stale = out / ".checkpoint.pt.k2j3h4.tmp"
    stale.write_bytes(b"half a checkpoint")
    other = out / ".unrelated.tmp"
    other.write_bytes(b"x")
    tiny_run(demo_root, out, steps=1)
    assert not stale.exists() and other.exists()


# 12. files are created with the umask's permissions
@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o002, 0o664)])
def test_atomic_files_respect_the_umask(tmp_path, umask, mode):
    from fusion.metrics.cli import MetricsReport, write_csv
    from fusion.train.checkpoint import save_atomic

    old = os.umask(umask)
    try:
        part = manifests.write_table_atomic(manifest_table(tmp_path, ["s1"]), tmp_path / "p.parquet")
        ckpt = save_atomic({"model": {}, "config": {}}, tmp_path / "c.pt")
        with manifests.ManifestWriter(tmp_path / "parts") as w:
            w.write(manifest_table(tmp_path, ["s2"]).to_pylist()[0])
        csv_path = tmp_path / "m.csv"
        write_csv(MetricsReport(), csv_path)
    finally:
        os.umask(old)
    for p in (part, ckpt, *w.paths, csv_path):
        assert stat.S_IMODE(p.stat().st_mode) == mode, p


# 13. one-line CLI errors, --debug, --hash-mismatch
def test_cli_errors_are_one_line_and_debug_shows_the_traceback(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    write_png(tmp_path / "a.png")
    args = ["fuse", "--checkpoint", bad, "--a", tmp_path / "a.png", "--b", tmp_path / "a.png", "--out",
            tmp_path / "f.png"]
    res = invoke(FUSION, *args)
    assert res.exit_code == 1
    (line,) = res.output.strip().splitlines()
    assert line.startswith("error: checkpoint") and "bad.pt" in line and "--debug" in line
    res = invoke(FUSION, *args, "--debug")
    assert res.exit_code == 1 and isinstance(res.exception, ValueError)
    res = invoke(FUSION, "evaluate", "--checkpoint", bad, "--demo-dir", tmp_path, "--out", tmp_path / "e")
    assert res.exit_code == 1 and res.output.strip().count("\n") == 0 and "bad.pt" in res.output


def test_hash_mismatch_message_names_a_real_flag(tmp_path):
    data = tmp_path / "data"
    for i, n in enumerate(("01", "02")):
        write_png(data / "ue" / f"{n}.png", 40, 40, seed=i)
        write_png(data / "oe" / f"{n}.png", 40, 40, seed=5 + i)
    rows = [{"sample_id": f"all/{n}", "dataset": "toy", "split": "all", "task": "mef", "status": "ok",
             "path_a": f"ue/{n}.png", "path_b": f"oe/{n}.png", "sha256_a": manifests.sha256_file(data / "ue" / f"{n}.png"),
             "sha256_b": "0" * 64 if n == "02" else manifests.sha256_file(data / "oe" / f"{n}.png"),
             "height": 40, "width": 40} for n in ("01", "02")]
    man = manifests.write_table_atomic(manifests.rows_to_table(rows), tmp_path / "m.parquet")
    base = ["train", "--task", "mef", "--data", data, "--manifest", man, "--out", tmp_path / "run", "--steps", "1",
            "--batch-size", "2", "--crop", "32x32", "--device", "cpu", "--no-progress", "--no-eval"]
    res = invoke(FUSION, *base)
    assert res.exit_code == 1
    (line,) = error_lines(res.output)
    assert "oe/02.png" in line and "--hash-mismatch skip" in line
    res = invoke(FUSION, *base, "--hash-mismatch", "skip")
    assert res.exit_code == 0, res.output


# also: fuse --help lists the baselines; a checkpoint of another task warns
def test_fuse_help_lists_the_baselines():
    from fusion.baselines import METHODS

    res = invoke(FUSION, "fuse", "--help")
    text = " ".join(res.output.split())
    assert all(name in text for name, spec in METHODS.items() if spec.kind == "fusion")


def test_checkpoint_of_another_task_warns(tmp_path, checkpoint, caplog):
    for d in ("ir", "vi"):
        write_png(tmp_path / d / "1.png")
    with caplog.at_level(logging.WARNING, logger="fusion.train.inference"):
        res = invoke(FUSION, "fuse", "--checkpoint", checkpoint, "--a", tmp_path / "ir", "--b", tmp_path / "vi",
                      "--out", tmp_path / "o", "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert "mef model" in caplog.text and "vif data" in caplog.text


def test_format_1_checkpoints_with_numpy_rng_state_still_load(tmp_path):
    import random

    from fusion.train.checkpoint import CheckpointError, load_checkpoint, restore_rng

    legacy = {"format": 1, "model": {}, "config": {"task": "mef"},
              "rng": [{"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}]}
    torch.save(legacy, tmp_path / "old.pt")
    ckpt = load_checkpoint(tmp_path / "old.pt")
    restore_rng(ckpt["rng"][0])
    legacy["rng"] = [{"numpy": np.array([Evil(tmp_path / "pwned")], dtype=object)}]
    torch.save(legacy, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()
