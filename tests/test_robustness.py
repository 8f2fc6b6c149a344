"""Bad input through annotate, train, fuse, metrics and manifests: clear one-line errors naming the file,
batch jobs that go on, nothing written before lost or changed; plus one test per reliability fix."""
from __future__ import annotations

import hashlib
import http.server
import logging
import os
import shutil
import socket
import stat
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import typer
from PIL import Image
from typer.testing import CliRunner

import manifests
from manifests.schema import SCHEMA

REPO = Path(__file__).resolve().parents[1]
TINY = {"crop_size": (32, 32), "drop_path": 0.0}
BAD_NAME = os.fsdecode(b"caf\xe9")  # a Latin-1 file name: not valid UTF-8


# ----------------------------------------------------------------------------------------- helpers
def _app(*modules: str) -> typer.Typer:
    import importlib

    app = typer.Typer()
    for m in modules:
        importlib.import_module(m).register(app)
    return app


FUSION = _app("fusion.train.cli", "fusion.metrics.cli")


def _invoke(app: typer.Typer, *args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def _png(path: Path, h: int = 24, w: int = 24, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(30, 220, (h, w)).astype(np.uint8)).save(path)
    return path


def _float_tiff(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(arr, np.float32), mode="F").save(path)
    return path


def _digests(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (what must survive a failed job unchanged)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _error_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith("error:") or "warning:" in ln]


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory) -> Path:
    from fusion.data.demo import build_demo_data

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


def _copy_demo(demo_root: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "demo"
    shutil.copytree(demo_root, dst)
    return dst


def _tiny_run(demo_dir: Path, out: Path, **kw):
    from fusion.train.runner import run_training

    args = dict(demo_dir=demo_dir, steps=3, batch_size=2, overrides=TINY, evaluate=False, progress=False,
                checkpoint_every=100, log_every=1, device="cpu")
    args.update(kw)
    return run_training("mef", out, **args)


def _annotate(data: Path, out: Path, models: Path, **kw):
    from annotate.runner import run_annotation
    from annotate.smoke import SMOKE_OVERRIDES

    return run_annotation("vif", data, out, model_dir=models, progress=False, overrides=SMOKE_OVERRIDES,
                          batch_size=2, **kw)


def _vif_dir(root: Path, names: list[str]) -> Path:
    for i, n in enumerate(names):
        _png(root / "ir" / f"{n}.png", seed=i)
        _png(root / "vi" / f"{n}.png", seed=100 + i)
    return root


class Evil:
    """Unpickling this runs a shell command (what a crafted checkpoint does)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _evil_checkpoint(path: Path, marker: Path) -> Path:
    torch.save({"model": {}, "config": {"task": "mef"}, "payload": Evil(marker)}, path)
    return path


# ================================================================================ the table of bad inputs
@dataclass
class Outcome:
    """What a job did with a bad input: its messages, the file they must name, the outputs of the good
    inputs (all must exist) and the folders whose earlier content must be unchanged."""

    messages: list[str]
    names: str
    produced: list[Path] = field(default_factory=list)
    kept: dict[Path, dict[str, str]] = field(default_factory=dict)


def _prior(out: Path) -> dict[Path, dict[str, str]]:
    """A file a previous job left in ``out`` (and its digest), to check it survives."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "earlier-result.txt").write_text("from an earlier run\n")
    return {out: _digests(out)}


def _annotate_case(tmp_path: Path, models: Path, bad: Callable[[Path], str]) -> Outcome:
    data = _vif_dir(tmp_path / "data", ["01", "03"])
    named = bad(data)
    out = tmp_path / "manifest"
    _annotate(_vif_dir(tmp_path / "first", ["01"]), out, models, dataset="data")  # an earlier run's part
    kept = {out: _digests(out)}
    _annotate(data, out, models, dataset="data")
    rows = manifests.rows_by_id(manifests.read_manifest(out))
    errors = [r["error"] for r in rows.values() if r["status"] == "error"]
    assert sorted(sid for sid, r in rows.items() if r["status"] == "ok") == ["all/01", "all/03"]  # went on
    return Outcome(errors, named, [], kept)


def case_annotate_corrupt(tmp_path, ctx):
    def bad(data):
        (data / "ir" / "02.png").write_bytes(b"\x89PNG truncated")
        _png(data / "vi" / "02.png")
        return "ir/02.png"
    return _annotate_case(tmp_path, ctx["tiny_models"], bad)


def case_annotate_nan_tiff(tmp_path, ctx):
    def bad(data):
        arr = np.full((24, 24), 0.5, np.float32)
        arr[3, 4] = np.nan
        _float_tiff(data / "ir" / "02.tif", arr)
        _png(data / "vi" / "02.png")
        return "ir/02.tif"
    return _annotate_case(tmp_path, ctx["tiny_models"], bad)


def case_annotate_non_utf8_name(tmp_path, ctx):
    def bad(data):
        _png(data / "ir" / f"{BAD_NAME}.png")
        _png(data / "vi" / f"{BAD_NAME}.png")
        return "caf\\xe9"
    return _annotate_case(tmp_path, ctx["tiny_models"], bad)


def _train_case(tmp_path: Path, demo_root: Path, poison: Callable[[Path], str], caplog) -> Outcome:
    root = _copy_demo(demo_root, tmp_path)
    named = poison(root / "mef" / "train")
    out = tmp_path / "run"
    kept = _prior(out)
    with caplog.at_level(logging.WARNING, logger="fusion.train"):
        summary = _tiny_run(root, out, steps=6)
    msgs = [ln for ln in caplog.text.splitlines() if "unreadable" in ln]
    produced = [out / "checkpoint.pt"] if summary["finished"] else []
    return Outcome(msgs, named, produced, kept)


def case_train_corrupt_png(tmp_path, ctx):
    def poison(train):
        (train / "oe" / "0003.png").write_bytes(b"\x89PNG broken")
        return "0003.png"
    return _train_case(tmp_path, ctx["demo_root"], poison, ctx["caplog"])


def case_train_nan_image(tmp_path, ctx):
    def poison(train):
        (train / "ue" / "0002.png").unlink()
        arr = np.full((64, 64), 0.4, np.float32)
        arr[10, 10] = np.nan
        _float_tiff(train / "ue" / "0002.tif", arr)
        return "0002.tif"
    return _train_case(tmp_path, ctx["demo_root"], poison, ctx["caplog"])


def case_train_nan_mat(tmp_path, ctx):
    import scipy.io as sio

    from fusion.train.runner import run_training

    data = tmp_path / "pan"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        ms, pan = rng.uniform(100, 900, (32, 32, 8)), rng.uniform(100, 900, (128, 128))
        if i == 2:
            ms[3, 3, 1] = np.nan
        sio.savemat(data / f"scene{i}.mat", {"I_MS": ms, "I_PAN": pan})
    out = tmp_path / "run"
    kept = _prior(out)
    with ctx["caplog"].at_level(logging.WARNING, logger="fusion.train"):
        summary = run_training("pan", out, data=data, steps=2, batch_size=2, overrides=TINY, evaluate=False,
                               progress=False, device="cpu")
    msgs = [ln for ln in ctx["caplog"].text.splitlines() if "unreadable" in ln]
    return Outcome(msgs, "scene2.mat", [out / "checkpoint.pt"] if summary["finished"] else [], kept)


def case_train_into_finished_run(tmp_path, ctx):
    out = tmp_path / "run"
    _tiny_run(ctx["demo_root"], out, steps=2)
    kept = {out: _digests(out)}
    res = _invoke(FUSION, "train", "--task", "mef", "--demo-dir", ctx["demo_root"], "--out", out, "--steps", "2",
                  "--crop", "32x32", "--device", "cpu", "--no-progress", "--no-eval")
    assert res.exit_code == 1
    return Outcome(_error_lines(res.output), str(out), [], kept)


def _fuse_case(tmp_path: Path, bad: Callable[[Path, Path], str], *extra: str) -> Outcome:
    a, b = tmp_path / "a", tmp_path / "b"
    for i, n in enumerate(("01", "02", "03")):
        _png(a / f"{n}.png", seed=i)
        _png(b / f"{n}.png", seed=10 + i)
    named = bad(a, b)
    out = tmp_path / "fused"
    kept = _prior(out)
    res = _invoke(FUSION, "fuse", "--a", a, "--b", b, "--out", out, *(extra or ("--method", "average")))
    assert res.exit_code == 1, res.output
    return Outcome(_error_lines(res.output), named, [out / "01.png", out / "03.png"], kept)


def case_fuse_corrupt_pair(tmp_path, ctx):
    def bad(a, b):
        (a / "02.png").write_bytes(b"not an image")
        return "02.png"
    return _fuse_case(tmp_path, bad)


def case_fuse_huge_image(tmp_path, ctx):
    def bad(a, b):
        _png(a / "02.png", 120, 120)
        _png(b / "02.png", 120, 120)
        ctx["monkeypatch"].setattr(Image, "MAX_IMAGE_PIXELS", 5000)  # 120x120 = 14400 > 2 x limit: a "bomb"
        return "02.png"
    return _fuse_case(tmp_path, bad)


def case_fuse_size_mismatch(tmp_path, ctx):
    def bad(a, b):
        _png(b / "02.png", 30, 20)
        return "02.png"
    return _fuse_case(tmp_path, bad, "--checkpoint", str(ctx["checkpoint"]), "--device", "cpu")


def case_fuse_crafted_checkpoint(tmp_path, ctx):
    marker = tmp_path / "pwned"
    evil = _evil_checkpoint(tmp_path / "evil.pt", marker)
    _png(tmp_path / "a.png")
    _png(tmp_path / "b.png")
    out = tmp_path / "out"
    kept = _prior(out)
    res = _invoke(FUSION, "fuse", "--checkpoint", evil, "--a", tmp_path / "a.png", "--b", tmp_path / "b.png",
                  "--out", out / "f.png")
    assert res.exit_code == 1 and not marker.exists()
    return Outcome(_error_lines(res.output), "evil.pt", [], kept)


def _metrics_case(tmp_path: Path, bad: Callable[[Path], str]) -> Outcome:
    a, b, f = tmp_path / "a", tmp_path / "b", tmp_path / "fused"
    for i, n in enumerate(("01", "02", "03")):
        _png(a / f"{n}.png", seed=i)
        _png(b / f"{n}.png", seed=10 + i)
        _png(f / f"{n}.png", seed=20 + i)
    named = bad(tmp_path)
    out = tmp_path / "scores"
    kept = _prior(out)
    res = _invoke(FUSION, "metrics", "--task", "vif", "--a", a, "--b", b, "--fused", f, "--metric", "EN",
                  "--metric", "SD", "--out", out / "m.csv")
    assert res.exit_code == 0, res.output
    lines = (out / "m.csv").read_bytes().decode("utf-8", "surrogateescape").splitlines()
    assert [ln.split(",")[1] for ln in lines[1:3]] == ["01", "03"] or named.startswith("caf")
    warnings = [" ".join(ln.split()) for ln in res.output.split("warning:")[1:]]
    return Outcome(warnings, named, [out / "m.csv"], kept)


def case_metrics_corrupt_fused(tmp_path, ctx):
    def bad(root):
        (root / "fused" / "02.png").write_bytes(b"garbage")
        return "02.png"
    return _metrics_case(tmp_path, bad)


def case_metrics_huge_image(tmp_path, ctx):
    def bad(root):
        for d in ("a", "b", "fused"):
            _png(root / d / "02.png", 120, 120)
        ctx["monkeypatch"].setattr(Image, "MAX_IMAGE_PIXELS", 5000)
        return "02.png"
    return _metrics_case(tmp_path, bad)


def case_metrics_float_tiff_out_of_range(tmp_path, ctx):
    def bad(root):
        (root / "fused" / "02.png").unlink()
        _float_tiff(root / "fused" / "02.tif", np.linspace(-5, 900, 24 * 24).reshape(24, 24))
        return "02.tif"
    return _metrics_case(tmp_path, bad)


def case_metrics_non_utf8_name(tmp_path, ctx):
    def bad(root):
        for d, s in (("a", 1), ("b", 2), ("fused", 3)):
            _png(root / d / f"{BAD_NAME}.png", seed=s)
        (root / "fused" / "02.png").write_bytes(b"garbage")  # and one broken file, so there is a message
        return "02.png"
    out = _metrics_case(tmp_path, bad)
    text = (tmp_path / "scores" / "m.csv").read_bytes()
    assert os.fsencode(BAD_NAME) in text  # the original bytes of the name
    return out


def _manifest(tmp_path: Path, ids: list[str], *, caption: str = "a") -> Path:
    images = tmp_path / "images"
    rows = []
    for i, sid in enumerate(ids):
        pa_, pb_ = _png(images / "ir" / f"{sid}.png", seed=i), _png(images / "vi" / f"{sid}.png", seed=9 + i)
        rows.append({"sample_id": sid, "dataset": "toy", "split": "test", "task": "vif", "status": "ok",
                     "path_a": f"ir/{sid}.png", "path_b": f"vi/{sid}.png", "sha256_a": manifests.sha256_file(pa_),
                     "sha256_b": manifests.sha256_file(pb_), "height": 24, "width": 24, "caption_a": caption,
                     "caption_b": "b"})
    return manifests.rows_to_table(rows)


def _manifests_cli(*args):
    from manifests.cli import app

    return _invoke(app, *args)


def case_manifest_column_removed(tmp_path, ctx):
    part = tmp_path / "m" / "part-r000-00000.parquet"
    part.parent.mkdir()
    pq.write_table(_manifest(tmp_path, ["s1", "s2"]).drop_columns(["caption_b"]), part)
    kept = {part.parent: _digests(part.parent)}
    res = _manifests_cli("validate", part.parent)
    assert res.exit_code == 1
    (line,) = [ln for ln in res.output.splitlines() if "columns differ" in ln]
    assert "['caption_b']" in line and "text_a_shape" not in line
    return Outcome([line], "part-r000-00000.parquet", [], kept)


def case_manifest_merge_conflict(tmp_path, ctx):
    x, y = tmp_path / "x.parquet", tmp_path / "y.parquet"
    manifests.write_table_atomic(_manifest(tmp_path, ["s1", "s2"]), x)
    manifests.write_table_atomic(_manifest(tmp_path, ["s2", "s3"], caption="another caption"), y)
    kept = {tmp_path: _digests(tmp_path)}
    res = _manifests_cli("merge", x, y, "--out", tmp_path / "merged.parquet")
    assert res.exit_code == 2 and not (tmp_path / "merged.parquet").exists()
    return Outcome(_error_lines(res.output), "'s2'", [], kept)


def case_manifest_show_outside_images(tmp_path, ctx):
    secret = _png(tmp_path / "secret.png")
    table = _manifest(tmp_path, ["s1"]).to_pylist()
    table[0]["path_a"] = str(secret)          # absolute
    table[0]["path_b"] = "../secret.png"      # escapes the root
    part = tmp_path / "m.parquet"
    manifests.write_table_atomic(pa.Table.from_pylist(table, schema=SCHEMA), part)
    opened: list[Path] = []
    import manifests.show as show

    real = show.load_rgb
    ctx["monkeypatch"].setattr(show, "load_rgb", lambda p: opened.append(Path(p)) or real(p))
    kept = {tmp_path / "images": _digests(tmp_path / "images")}
    res = _manifests_cli("show", "s1", part, "--images", tmp_path / "images", "--out", tmp_path / "s.png")
    assert res.exit_code == 0 and opened == [], res.output
    valid = _manifests_cli("validate", part, "--images", tmp_path / "images")
    assert valid.exit_code == 1
    return Outcome([ln for ln in valid.output.splitlines() if "path_b" in ln], "../secret.png",
                   [tmp_path / "s.png"], kept)


CASES = [case_annotate_corrupt, case_annotate_nan_tiff, case_annotate_non_utf8_name,
         case_train_corrupt_png, case_train_nan_image, case_train_nan_mat, case_train_into_finished_run,
         case_fuse_corrupt_pair, case_fuse_huge_image, case_fuse_size_mismatch, case_fuse_crafted_checkpoint,
         case_metrics_corrupt_fused, case_metrics_huge_image, case_metrics_float_tiff_out_of_range,
         case_metrics_non_utf8_name,
         case_manifest_column_removed, case_manifest_merge_conflict, case_manifest_show_outside_images]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__.removeprefix("case_") for c in CASES])
def test_bad_input(case, tmp_path, request, monkeypatch, caplog):
    ctx = {"monkeypatch": monkeypatch, "caplog": caplog}
    needs = {"annotate": "tiny_models", "train": "demo_root", "fuse_size": "checkpoint"}
    for prefix, fixture in needs.items():
        if case.__name__.removeprefix("case_").startswith(prefix):
            ctx[fixture] = request.getfixturevalue(fixture)
    outcome = case(tmp_path, ctx)
    # a clear message: one line that names the file (no traceback)
    assert outcome.messages, "no message"
    named = [m for m in outcome.messages if outcome.names in m]
    assert named, (outcome.names, outcome.messages)
    assert all("\n" not in m and "Traceback" not in m for m in named)
    # a batch job went on with the good inputs
    for p in outcome.produced:
        assert p.exists(), p
    # nothing written before was lost or changed
    for folder, digests in outcome.kept.items():
        now = _digests(folder)
        assert {k: now.get(k) for k in digests} == digests, folder


# ===================================================================================== one test per fix
# 1. checkpoints are loaded without unpickling objects
def test_crafted_checkpoint_is_refused_without_running_code(tmp_path):
    from fusion.train.checkpoint import CheckpointError, load_checkpoint, read_model_checkpoint

    marker = tmp_path / "pwned"
    evil = _evil_checkpoint(tmp_path / "evil.pt", marker)
    with pytest.raises(CheckpointError, match="evil.pt.*pickled Python objects"):
        load_checkpoint(evil)
    with pytest.raises(CheckpointError, match="evil.pt"):
        read_model_checkpoint(evil)
    assert not marker.exists()


def test_resume_path_is_safe_too(tmp_path, demo_root):
    marker = tmp_path / "pwned"
    out = tmp_path / "run"
    out.mkdir()
    _evil_checkpoint(out / "checkpoint.pt", marker)
    with pytest.raises(ValueError, match="checkpoint.pt"):
        _tiny_run(demo_root, out, resume=True)
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
    _tiny_run(demo_root, out, steps=2)
    (out / "report.html").write_text("old report")
    before = _digests(out)
    with pytest.raises(FileExistsError, match="--resume"):
        _tiny_run(demo_root, out, steps=2)
    assert _digests(out) == before
    _tiny_run(demo_root, out, steps=2, overwrite=True)
    assert not (out / "report.html").exists() and (out / "checkpoint.pt").is_file()


# 5. unreadable samples are skipped and recorded; a resumed run does not read them again
def test_unreadable_sample_is_recorded_and_not_reread_after_resume(tmp_path, demo_root, monkeypatch):
    from fusion.data.datasets import PairedImageDataset
    from fusion.train.checkpoint import load_checkpoint

    root = _copy_demo(demo_root, tmp_path)
    victim = root / "mef" / "train" / "oe" / "0003.png"
    victim.write_bytes(b"broken")
    out = tmp_path / "run"
    first = _tiny_run(root, out, steps=12, batch_size=2, stop_after=6, checkpoint_every=6)
    assert not first["finished"] and list(first["unreadable_samples"]) == ["0003"]
    assert [u[1] for u in load_checkpoint(out / "checkpoint.pt")["unreadable"]] == ["0003"]
    loads: list[str] = []
    real = PairedImageDataset._load
    monkeypatch.setattr(PairedImageDataset, "_load",
                        lambda self, i: loads.append(self.samples[i].id) or real(self, i))
    second = _tiny_run(root, out, steps=12, batch_size=2, resume=True, checkpoint_every=6)
    assert second["finished"] and "0003" in second["unreadable_samples"] and "0003" not in loads


def test_too_many_unreadable_samples_stop_training(tmp_path, demo_root):
    root = _copy_demo(demo_root, tmp_path)
    for p in sorted((root / "mef" / "train" / "oe").glob("*.png"))[:4]:
        p.write_bytes(b"broken")
    with pytest.raises(ValueError, match="training samples are unreadable"):
        _tiny_run(root, tmp_path / "run", steps=12, batch_size=2)


# 6. fuse over folders goes on past a bad pair (also covered by the table); the single-pair API still raises
def test_fuse_files_collects_failures(tmp_path):
    from fusion.train.inference import fuse_files, pair_inputs

    for n in ("1", "2", "3"):
        _png(tmp_path / "a" / f"{n}.png")
        _png(tmp_path / "b" / f"{n}.png")
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
    data = _vif_dir(tmp_path / "data", ["01", "02"])
    arr = np.full((24, 24), 0.5, np.float32)
    arr[0, 0] = np.nan
    _float_tiff(data / "ir" / "nan.tif", arr)
    _png(data / "vi" / "nan.png")
    _png(data / "ir" / f"{BAD_NAME}.png")
    _png(data / "vi" / f"{BAD_NAME}.png")
    out = tmp_path / "m"
    s = _annotate(data, out, tiny_models, rows_per_part=1)
    rows = manifests.rows_by_id(manifests.read_manifest(out))
    assert {k: r["status"] for k, r in rows.items()} == {"all/01": "ok", "all/02": "ok", "all/nan": "error",
                                                         "all/caf\\xe9": "error"}
    assert "NaN" in rows["all/nan"]["error"] and "not valid UTF-8" in rows["all/caf\\xe9"]["error"]
    assert s.errors == 2
    again = _annotate(data, out, tiny_models)
    assert again.written == 0 and again.skipped == 4


def test_writer_refuses_a_row_it_cannot_store_and_keeps_the_others(tmp_path):
    row = _manifest(tmp_path, ["s1"]).to_pylist()[0]
    w = manifests.ManifestWriter(tmp_path / "out", rows_per_part=10)
    w.write(row)
    with pytest.raises(ValueError, match="not valid UTF-8"):
        w.write({**row, "sample_id": BAD_NAME})
    w.close()
    assert manifests.read_manifest(tmp_path / "out").column("sample_id").to_pylist() == ["s1"]


# 8. huge images and 16-bit / float images
def test_metrics_reads_16_bit_and_float_images(tmp_path):
    from fusion.metrics.cli import read_image

    ramp = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "r16.png")
    arr = read_image(tmp_path / "r16.png")
    assert arr.dtype == np.float64 and arr.max() == pytest.approx(255.0) and len(np.unique(arr)) > 256
    _float_tiff(tmp_path / "unit.tif", ramp / 65535.0)
    assert read_image(tmp_path / "unit.tif").max() == pytest.approx(255.0, rel=1e-5)
    _float_tiff(tmp_path / "wide.tif", ramp.astype(np.float32))
    with pytest.raises(ValueError, match="wide.tif.*values in"):
        read_image(tmp_path / "wide.tif")
    from fusion.metrics import fusion_metrics

    grey = np.asarray(read_image(tmp_path / "r16.png"))
    assert fusion_metrics(grey, grey, grey, metrics=["EN"])["EN"] > 5.0


def test_data_reader_names_decompression_bombs(tmp_path, monkeypatch):
    from fusion.data.io import SampleError, read_image

    _png(tmp_path / "big.png", 120, 120)
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
    manifests.write_table_atomic(_manifest(tmp_path, ["s1", "s2"]), d / "part-r000-00000.parquet")
    manifests.write_table_atomic(_manifest(tmp_path, ["s2"], caption="other"), d / "part-r001-00001.parquet")
    problems = validate_manifest(d)
    assert [(p.sample_id, Path(p.file).name) for p in problems] == [("s2", "part-r001-00001.parquet")]
    assert "part-r000-00000.parquet" in problems[0].message


def test_merge_refuses_conflicts_unless_told(tmp_path):
    x, y = tmp_path / "x.parquet", tmp_path / "y.parquet"
    manifests.write_table_atomic(_manifest(tmp_path, ["s1", "s2"]), x)
    manifests.write_table_atomic(_manifest(tmp_path, ["s2", "s3"], caption="other"), y)
    with pytest.raises(ValueError, match="'s2'.*--prefer"):
        manifests.merge_manifests([x, y], tmp_path / "m.parquet")
    for prefer, caption in (("first", "a"), ("last", "other")):
        (m,) = manifests.merge_manifests([x, y], tmp_path / f"{prefer}.parquet", prefer=prefer)
        rows = manifests.rows_by_id(manifests.read_manifest(m))
        assert sorted(rows) == ["s1", "s2", "s3"] and rows["s2"]["caption_a"] == caption
    res = _manifests_cli("merge", x, y, "--out", tmp_path / "cli.parquet", "--prefer", "last")
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
    _tiny_run(demo_root, out, steps=1)
    assert not stale.exists() and other.exists()


# 12. files are created with the umask's permissions
@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o002, 0o664)])
def test_atomic_files_respect_the_umask(tmp_path, umask, mode):
    from fusion.metrics.cli import MetricsReport, write_csv
    from fusion.train.checkpoint import save_atomic

    old = os.umask(umask)
    try:
        part = manifests.write_table_atomic(_manifest(tmp_path, ["s1"]), tmp_path / "p.parquet")
        ckpt = save_atomic({"model": {}, "config": {}}, tmp_path / "c.pt")
        with manifests.ManifestWriter(tmp_path / "parts") as w:
            w.write(_manifest(tmp_path, ["s2"]).to_pylist()[0])
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
    _png(tmp_path / "a.png")
    args = ["fuse", "--checkpoint", bad, "--a", tmp_path / "a.png", "--b", tmp_path / "a.png", "--out",
            tmp_path / "f.png"]
    res = _invoke(FUSION, *args)
    assert res.exit_code == 1
    (line,) = res.output.strip().splitlines()
    assert line.startswith("error: checkpoint") and "bad.pt" in line and "--debug" in line
    res = _invoke(FUSION, *args, "--debug")
    assert res.exit_code == 1 and isinstance(res.exception, ValueError)
    res = _invoke(FUSION, "evaluate", "--checkpoint", bad, "--demo-dir", tmp_path, "--out", tmp_path / "e")
    assert res.exit_code == 1 and res.output.strip().count("\n") == 0 and "bad.pt" in res.output


def test_hash_mismatch_message_names_a_real_flag(tmp_path):
    data = tmp_path / "data"
    for i, n in enumerate(("01", "02")):
        _png(data / "ue" / f"{n}.png", 40, 40, seed=i)
        _png(data / "oe" / f"{n}.png", 40, 40, seed=5 + i)
    rows = [{"sample_id": n, "dataset": "toy", "split": "all", "task": "mef", "status": "ok",
             "path_a": f"ue/{n}.png", "path_b": f"oe/{n}.png", "sha256_a": manifests.sha256_file(data / "ue" / f"{n}.png"),
             "sha256_b": "0" * 64 if n == "02" else manifests.sha256_file(data / "oe" / f"{n}.png"),
             "height": 40, "width": 40} for n in ("01", "02")]
    man = manifests.write_table_atomic(manifests.rows_to_table(rows), tmp_path / "m.parquet")
    base = ["train", "--task", "mef", "--data", data, "--manifest", man, "--out", tmp_path / "run", "--steps", "1",
            "--batch-size", "2", "--crop", "32x32", "--device", "cpu", "--no-progress", "--no-eval"]
    res = _invoke(FUSION, *base)
    assert res.exit_code == 1
    (line,) = _error_lines(res.output)
    assert "oe/02.png" in line and "--hash-mismatch skip" in line
    res = _invoke(FUSION, *base, "--hash-mismatch", "skip")
    assert res.exit_code == 0, res.output


# also: fuse --help lists the baselines; a checkpoint of another task warns
def test_fuse_help_lists_the_baselines():
    from fusion.baselines import METHODS

    res = _invoke(FUSION, "fuse", "--help")
    text = " ".join(res.output.split())
    assert all(name in text for name, spec in METHODS.items() if spec.kind == "fusion")


def test_checkpoint_of_another_task_warns(tmp_path, checkpoint, caplog):
    for d in ("ir", "vi"):
        _png(tmp_path / d / "1.png")
    with caplog.at_level(logging.WARNING, logger="fusion.train.inference"):
        res = _invoke(FUSION, "fuse", "--checkpoint", checkpoint, "--a", tmp_path / "ir", "--b", tmp_path / "vi",
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
