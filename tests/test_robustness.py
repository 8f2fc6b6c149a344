"""Bad input through annotate, train, fuse, metrics and manifests: clear one-line errors naming the file,
batch jobs that go on, nothing written before lost or changed (one table of cases)."""
from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import (
    BAD_NAME,
    FUSION,
    TINY,
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
from manifests.schema import SCHEMA


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
    return {out: file_digests(out)}


def _annotate_case(tmp_path: Path, models: Path, bad: Callable[[Path], str]) -> Outcome:
    data = make_vif_dir(tmp_path / "data", ["01", "03"])
    named = bad(data)
    out = tmp_path / "manifest"
    annotate_vif(make_vif_dir(tmp_path / "first", ["01"]), out, models, dataset="data")  # an earlier run's part
    kept = {out: file_digests(out)}
    annotate_vif(data, out, models, dataset="data")
    rows = manifests.rows_by_id(manifests.read_manifest(out))
    errors = [r["error"] for r in rows.values() if r["status"] == "error"]
    assert sorted(sid for sid, r in rows.items() if r["status"] == "ok") == ["all/01", "all/03"]  # went on
    return Outcome(errors, named, [], kept)


def case_annotate_corrupt(tmp_path, ctx):
    def bad(data):
        (data / "ir" / "02.png").write_bytes(b"\x89PNG truncated")
        write_png(data / "vi" / "02.png")
        return "ir/02.png"
    return _annotate_case(tmp_path, ctx["tiny_models"], bad)


def case_annotate_nan_tiff(tmp_path, ctx):
    def bad(data):
        arr = np.full((24, 24), 0.5, np.float32)
        arr[3, 4] = np.nan
        write_float_tiff(data / "ir" / "02.tif", arr)
        write_png(data / "vi" / "02.png")
        return "ir/02.tif"
    return _annotate_case(tmp_path, ctx["tiny_models"], bad)


def case_annotate_non_utf8_name(tmp_path, ctx):
    def bad(data):
        write_png(data / "ir" / f"{BAD_NAME}.png")
        write_png(data / "vi" / f"{BAD_NAME}.png")
        return "caf\\xe9"
    return _annotate_case(tmp_path, ctx["tiny_models"], bad)


def _train_case(tmp_path: Path, demo_root: Path, poison: Callable[[Path], str], caplog) -> Outcome:
    root = copy_demo(demo_root, tmp_path)
    named = poison(root / "mef" / "train")
    out = tmp_path / "run"
    kept = _prior(out)
    with caplog.at_level(logging.WARNING, logger="fusion.train"):
        summary = tiny_run(root, out, steps=6)
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
        write_float_tiff(train / "ue" / "0002.tif", arr)
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
    tiny_run(ctx["demo_root"], out, steps=2)
    kept = {out: file_digests(out)}
    res = invoke(FUSION, "train", "--task", "mef", "--demo-dir", ctx["demo_root"], "--out", out, "--steps", "2",
                  "--crop", "32x32", "--device", "cpu", "--no-progress", "--no-eval")
    assert res.exit_code == 1
    return Outcome(error_lines(res.output), str(out), [], kept)


def _fuse_case(tmp_path: Path, bad: Callable[[Path, Path], str], *extra: str) -> Outcome:
    a, b = tmp_path / "a", tmp_path / "b"
    for i, n in enumerate(("01", "02", "03")):
        write_png(a / f"{n}.png", seed=i)
        write_png(b / f"{n}.png", seed=10 + i)
    named = bad(a, b)
    out = tmp_path / "fused"
    kept = _prior(out)
    res = invoke(FUSION, "fuse", "--a", a, "--b", b, "--out", out, *(extra or ("--method", "average")))
    assert res.exit_code == 1, res.output
    return Outcome(error_lines(res.output), named, [out / "01.png", out / "03.png"], kept)


def case_fuse_corrupt_pair(tmp_path, ctx):
    def bad(a, b):
        (a / "02.png").write_bytes(b"not an image")
        return "02.png"
    return _fuse_case(tmp_path, bad)


def case_fuse_huge_image(tmp_path, ctx):
    def bad(a, b):
        write_png(a / "02.png", 120, 120)
        write_png(b / "02.png", 120, 120)
        ctx["monkeypatch"].setattr(Image, "MAX_IMAGE_PIXELS", 5000)  # 120x120 = 14400 > 2 x limit: a "bomb"
        return "02.png"
    return _fuse_case(tmp_path, bad)


def case_fuse_size_mismatch(tmp_path, ctx):
    def bad(a, b):
        write_png(b / "02.png", 30, 20)
        return "02.png"
    return _fuse_case(tmp_path, bad, "--checkpoint", str(ctx["checkpoint"]), "--device", "cpu")


def case_fuse_crafted_checkpoint(tmp_path, ctx):
    marker = tmp_path / "pwned"
    evil = evil_checkpoint(tmp_path / "evil.pt", marker)
    write_png(tmp_path / "a.png")
    write_png(tmp_path / "b.png")
    out = tmp_path / "out"
    kept = _prior(out)
    res = invoke(FUSION, "fuse", "--checkpoint", evil, "--a", tmp_path / "a.png", "--b", tmp_path / "b.png",
                  "--out", out / "f.png")
    assert res.exit_code == 1 and not marker.exists()
    return Outcome(error_lines(res.output), "evil.pt", [], kept)


def _metrics_case(tmp_path: Path, bad: Callable[[Path], str]) -> Outcome:
    a, b, f = tmp_path / "a", tmp_path / "b", tmp_path / "fused"
    for i, n in enumerate(("01", "02", "03")):
        write_png(a / f"{n}.png", seed=i)
        write_png(b / f"{n}.png", seed=10 + i)
        write_png(f / f"{n}.png", seed=20 + i)
    named = bad(tmp_path)
    out = tmp_path / "scores"
    kept = _prior(out)
    res = invoke(FUSION, "metrics", "--task", "vif", "--a", a, "--b", b, "--fused", f, "--metric", "EN",
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
            write_png(root / d / "02.png", 120, 120)
        ctx["monkeypatch"].setattr(Image, "MAX_IMAGE_PIXELS", 5000)
        return "02.png"
    return _metrics_case(tmp_path, bad)


def case_metrics_float_tiff_out_of_range(tmp_path, ctx):
    def bad(root):
        (root / "fused" / "02.png").unlink()
        write_float_tiff(root / "fused" / "02.tif", np.linspace(-5, 900, 24 * 24).reshape(24, 24))
        return "02.tif"
    return _metrics_case(tmp_path, bad)


def case_metrics_non_utf8_name(tmp_path, ctx):
    def bad(root):
        for d, s in (("a", 1), ("b", 2), ("fused", 3)):
            write_png(root / d / f"{BAD_NAME}.png", seed=s)
        (root / "fused" / "02.png").write_bytes(b"garbage")  # and one broken file, so there is a message
        return "02.png"
    out = _metrics_case(tmp_path, bad)
    text = (tmp_path / "scores" / "m.csv").read_bytes()
    assert os.fsencode(BAD_NAME) in text  # the original bytes of the name
    return out


def case_manifest_column_removed(tmp_path, ctx):
    part = tmp_path / "m" / "part-r000-00000.parquet"
    part.parent.mkdir()
    pq.write_table(manifest_table(tmp_path, ["s1", "s2"]).drop_columns(["caption_b"]), part)
    kept = {part.parent: file_digests(part.parent)}
    res = manifests_cli("validate", part.parent)
    assert res.exit_code == 1
    (line,) = [ln for ln in res.output.splitlines() if "columns differ" in ln]
    assert "['caption_b']" in line and "text_a_shape" not in line
    return Outcome([line], "part-r000-00000.parquet", [], kept)


def case_manifest_merge_conflict(tmp_path, ctx):
    x, y = tmp_path / "x.parquet", tmp_path / "y.parquet"
    manifests.write_table_atomic(manifest_table(tmp_path, ["s1", "s2"]), x)
    manifests.write_table_atomic(manifest_table(tmp_path, ["s2", "s3"], caption="another caption"), y)
    kept = {tmp_path: file_digests(tmp_path)}
    res = manifests_cli("merge", x, y, "--out", tmp_path / "merged.parquet")
    assert res.exit_code == 2 and not (tmp_path / "merged.parquet").exists()
    return Outcome(error_lines(res.output), "'s2'", [], kept)


def case_manifest_show_outside_images(tmp_path, ctx):
    secret = write_png(tmp_path / "secret.png")
    table = manifest_table(tmp_path, ["s1"]).to_pylist()
    table[0]["path_a"] = str(secret)          # absolute
    table[0]["path_b"] = "../secret.png"      # escapes the root
    part = tmp_path / "m.parquet"
    manifests.write_table_atomic(pa.Table.from_pylist(table, schema=SCHEMA), part)
    opened: list[Path] = []
    import manifests.show as show

    real = show.load_rgb
    ctx["monkeypatch"].setattr(show, "load_rgb", lambda p: opened.append(Path(p)) or real(p))
    kept = {tmp_path / "images": file_digests(tmp_path / "images")}
    res = manifests_cli("show", "s1", part, "--images", tmp_path / "images", "--out", tmp_path / "s.png")
    assert res.exit_code == 0 and opened == [], res.output
    valid = manifests_cli("validate", part, "--images", tmp_path / "images")
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
        now = file_digests(folder)
        assert {k: now.get(k) for k in digests} == digests, folder
