"""Manifest schema v1: writing (atomic, deterministic), reading, resume helpers, validate/merge/stats/show, CLI."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

import manifests
from manifests import (
    SCHEMA,
    SCHEMA_VERSION,
    ManifestWriter,
    SchemaError,
    decode_boxes,
    decode_class_map,
    decode_instance_masks,
    decode_text,
    done_ids,
    merge_manifests,
    read_manifest,
    rows_by_id,
    sha256_file,
    status_by_id,
)
from manifests.cli import app
from manifests.schema import VERSION_KEY, field_doc
from manifests.show import render_sample
from manifests.stats import manifest_stats
from manifests.validate import validate_manifest

H, W = 24, 32


def make_images(root: Path, n: int = 3) -> list[tuple[str, str]]:
    """n registered ir/vi pairs of random grey PNGs under root; returns their relative paths."""
    rng = np.random.default_rng(1)
    pairs = []
    for i in range(n):
        for sub in ("ir", "vi"):
            (root / sub).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (H, W), dtype=np.uint8)).save(root / sub / f"{i:02d}.png")
        pairs.append((f"ir/{i:02d}.png", f"vi/{i:02d}.png"))
    return pairs


def make_row(root: Path, i: int, pa_: str, pb: str, *, status: str = "ok") -> dict:
    rng = np.random.default_rng(100 + i)
    base = dict(sample_id=f"s{i:02d}", dataset="toy", split="test", task="vif", path_a=pa_, path_b=pb,
                sha256_a=sha256_file(root / pa_), sha256_b=sha256_file(root / pb), status=status,
                models=[{"role": "caption", "id": "toy/florence", "revision": "abc"},
                        {"role": "text_encoder", "id": "toy/t5", "revision": None}],
                config_hash="f" * 64, package_version="0.1.0", created="2026-01-01T00:00:00+00:00")
    if status == "error":
        return {**base, "error": f"{pa_}: cannot identify image file"}
    masks = np.zeros((2, H, W), bool)
    masks[0, 2:10, 3:12] = True
    masks[1, 12:20, 15:30] = True
    masks[1, 0, 0] = bool(i % 2)
    cmap = np.zeros((H, W), np.uint8)
    cmap[masks[0]] = 1
    cmap[masks[1]] = 2
    return {**base, "height": H, "width": W, "caption_a": f"an infrared picture number {i} of a person",
            "caption_b": "a visible photo of a car", "text_encoder": "toy/t5",
            "text_a": rng.standard_normal((5 + i, 8)).astype(np.float32),
            "text_b": rng.standard_normal((3, 8)).astype(np.float32),
            "boxes": np.array([[3, 2, 12, 10], [15, 12, 30, 20]], np.float32), "labels": ["person", "car"],
            "scores": [0.875, 0.5], "instance_modality": ["a", "both"], "masks": masks, "mask_source": "generated",
            "class_map": cmap, "class_vocab": ["person", "car"]}


@pytest.fixture()
def dataset(tmp_path: Path) -> tuple[Path, list[dict]]:
    root = tmp_path / "images"
    pairs = make_images(root)
    rows = [make_row(root, i, a, b) for i, (a, b) in enumerate(pairs)]
    rows[2] = make_row(root, 2, *pairs[2], status="error")
    return root, rows


def write(out: Path, rows: list[dict], **kw) -> list[Path]:
    with ManifestWriter(out, **kw) as w:
        w.write_many(rows)
    return w.paths


def test_schema_is_self_describing():
    assert SCHEMA_VERSION == 1 and manifests.SCHEMA_VERSION == 1
    assert SCHEMA.metadata[VERSION_KEY] == b"1"
    for f in SCHEMA:
        assert field_doc(f.name), f.name
    for col in ("schema_version", "sample_id", "dataset", "split", "task", "path_a", "path_b", "path_gt",
                "sha256_a", "sha256_b", "sha256_gt", "height", "width", "caption_a", "caption_b", "text_a",
                "text_b", "text_encoder", "boxes", "labels", "scores", "instance_modality", "masks", "class_map",
                "class_vocab", "status", "error", "models", "config_hash", "package_version", "created"):
        assert col in SCHEMA.names


def test_round_trip(dataset, tmp_path):
    root, rows = dataset
    out = tmp_path / "m"
    paths = write(out, rows, part_name="part-r000", rows_per_part=2)
    assert [p.name for p in paths] == ["part-r000-00000.parquet", "part-r000-00001.parquet"]
    assert sorted(os.listdir(out)) == [p.name for p in paths]  # no temporary files left
    file_schema = pq.read_schema(paths[0])
    assert file_schema.metadata[VERSION_KEY] == b"1"
    assert file_schema.field("masks").metadata[b"doc"]
    table = read_manifest(out)
    assert table.num_rows == 3 and table.schema.equals(SCHEMA, check_metadata=True)
    got = rows_by_id(table)
    for src in rows[:2]:
        r = got[src["sample_id"]]
        for m in ("a", "b"):
            text = decode_text(r, m)
            assert text.dtype == np.float16 and text.shape == src[f"text_{m}"].shape
            np.testing.assert_array_equal(text, src[f"text_{m}"].astype(np.float16))
        np.testing.assert_array_equal(decode_instance_masks(r), src["masks"])
        np.testing.assert_array_equal(decode_class_map(r), src["class_map"])
        np.testing.assert_array_equal(decode_boxes(r), src["boxes"])
        assert r["labels"] == src["labels"] and r["scores"] == src["scores"]
        assert r["instance_modality"] == ["a", "both"] and r["masks"][0]["size"] == [H, W]
        assert r["models"][0] == {"role": "caption", "id": "toy/florence", "revision": "abc"}
        assert r["schema_version"] == 1 and r["status"] == "ok" and r["error"] is None
    err = got["s02"]
    assert err["status"] == "error" and "cannot identify" in err["error"]
    assert decode_text(err, "a") is None and decode_class_map(err) is None
    assert decode_instance_masks(err).shape[0] == 0
    # a single part file reads the same way
    assert read_manifest(paths[0]).num_rows == 2


def test_output_is_deterministic(dataset, tmp_path):
    _, rows = dataset
    p1 = write(tmp_path / "one", rows, rows_per_part=2)
    p2 = write(tmp_path / "two", rows, rows_per_part=2)
    assert [p.read_bytes() for p in p1] == [p.read_bytes() for p in p2]


def test_writer_writes_nothing_without_rows(tmp_path):
    assert write(tmp_path / "m", []) == []
    assert list((tmp_path / "m").iterdir()) == []


def test_failed_write_leaves_no_partial_file(dataset, tmp_path, monkeypatch):
    _, rows = dataset
    out = tmp_path / "m"
    real = pq.write_table

    def broken(table, where, **kw):
        where.write(b"PAR1 partial bytes")  # a crash half-way through the file
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", broken)
    writer = ManifestWriter(out, rows_per_part=10)
    writer.write(rows[0])
    with pytest.raises(OSError, match="disk full"):
        writer.flush()
    assert list(out.iterdir()) == []  # neither the part nor its temporary file
    stale = out / ".part-r000-00000.parquet.x1y2.tmp"  # what a SIGKILL between write and rename leaves
    stale.write_bytes(b"partial")
    assert manifests.list_parts(out) == []  # readers never see temporary files
    ManifestWriter(out)  # a new writer of the same prefix removes it
    assert not stale.exists()
    monkeypatch.setattr(pq, "write_table", real)
    assert writer.flush() is not None  # the buffered row is still there and can be written
    assert read_manifest(out).num_rows == 1


def test_rows_before_a_crash_are_kept(dataset, tmp_path):
    _, rows = dataset
    out = tmp_path / "m"
    with pytest.raises(RuntimeError):
        with ManifestWriter(out, rows_per_part=10) as w:
            w.write(rows[0])
            raise RuntimeError("model crashed")
    assert set(rows_by_id(read_manifest(out))) == {"s00"}


def test_latest_row_wins_and_resume_helpers(dataset, tmp_path):
    root, rows = dataset
    out = tmp_path / "m"
    assert done_ids(out) == set() and status_by_id(out) == {}
    write(out, rows, part_name="part-r001", rows_per_part=10)  # run 1 (rank 1): s02 failed
    assert done_ids(out) == {"s00", "s01"}
    assert done_ids(out, statuses=("ok", "error")) == {"s00", "s01", "s02"}
    fixed = make_row(root, 2, "ir/02.png", "vi/02.png")
    p = write(out, [fixed], part_name="part-r000")  # run 2, rank 0 (sorts before r001 by name)
    assert p[0].name == "part-r000-00001.parquet"  # the sequence continues after the directory's largest
    table = read_manifest(out)
    assert table.num_rows == 3 and rows_by_id(table)["s02"]["status"] == "ok"
    assert done_ids(out) == {"s00", "s01", "s02"}
    assert read_manifest(out, dedupe=False).num_rows == 4
    with pytest.raises(ValueError, match="unknown statuses"):
        done_ids(out, statuses=("done",))
    with pytest.raises(FileExistsError):
        write(out, [fixed], part_name="part-r000", seq_start=1)


def test_bad_rows_are_rejected(dataset):
    _, rows = dataset
    from manifests.io import normalize_row

    with pytest.raises(ValueError, match="unknown manifest columns"):
        normalize_row({**rows[0], "caption": "x"})
    with pytest.raises(ValueError, match="relative path"):
        normalize_row({**rows[0], "path_a": "/abs/ir.png"})
    with pytest.raises(ValueError, match="needs an 'error' message"):
        normalize_row({**rows[2], "error": None})
    with pytest.raises(ValueError, match="different lengths"):
        normalize_row({**rows[0], "labels": ["person"]})
    with pytest.raises(ValueError, match="task"):
        normalize_row({**rows[0], "task": "sr"})
    with pytest.raises(ValueError, match=r"boxes must be \[N, 4\]"):
        normalize_row({**rows[0], "boxes": [[1, 2, 3], [4, 5, 6]]})
    with pytest.raises(ValueError, match="instance_modality"):
        normalize_row({**rows[0], "instance_modality": ["a", "c"]})


def test_other_schema_version_raises_naming_the_file(dataset, tmp_path):
    _, rows = dataset
    out = tmp_path / "m"
    write(out, rows[:1])
    table = manifests.rows_to_table(rows[1:2])
    bad = out / "part-r000-00007.parquet"
    pq.write_table(table.replace_schema_metadata({VERSION_KEY: b"2"}), bad)
    with pytest.raises(SchemaError, match="part-r000-00007.parquet.*version 2") as info:
        read_manifest(out)
    assert info.value.path == str(bad)
    with pytest.raises(SchemaError, match="version 2"):
        done_ids(out)
    foreign = tmp_path / "foreign.parquet"
    pq.write_table(pa.table({"x": [1]}), foreign)
    with pytest.raises(SchemaError, match="foreign.parquet: no manifest schema version"):
        read_manifest(foreign)
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"not parquet")
    with pytest.raises(SchemaError, match="garbage.parquet"):
        read_manifest(garbage)
    with pytest.raises(FileNotFoundError):
        read_manifest(tmp_path / "missing")


def test_hf_datasets_loads_the_manifest(dataset, tmp_path):
    datasets = pytest.importorskip("datasets")
    _, rows = dataset
    out = tmp_path / "m"
    write(out, rows, rows_per_part=2)
    ds = datasets.load_dataset("parquet", data_files=str(out / "*.parquet"), split="train",
                               cache_dir=str(tmp_path / "hf_cache"))
    assert ds.num_rows == 3 and set(SCHEMA.names) == set(ds.column_names)
    r = next(x for x in ds if x["sample_id"] == "s01")
    np.testing.assert_array_equal(decode_text(r, "a"), rows[1]["text_a"].astype(np.float16))
    np.testing.assert_array_equal(decode_instance_masks(r), rows[1]["masks"])
    np.testing.assert_array_equal(decode_class_map(r), rows[1]["class_map"])


def test_validate_accepts_good_and_catches_changed_image(dataset, tmp_path):
    root, rows = dataset
    out = tmp_path / "m"
    write(out, rows)
    assert validate_manifest(out, root) == []
    # change one pixel of one image: its hash no longer matches
    img = np.array(Image.open(root / "vi/01.png"))
    img[0, 0] ^= 1
    Image.fromarray(img).save(root / "vi/01.png")
    (root / "ir/00.png").unlink()
    problems = validate_manifest(out, root)
    by = {(p.sample_id, p.column): p for p in problems}
    assert set(by) == {("s01", "sha256_b"), ("s00", "path_a")}, problems
    assert "vi/01.png" in by[("s01", "sha256_b")].message and "changed" in by[("s01", "sha256_b")].message
    assert by[("s01", "sha256_b")].file.endswith(".parquet")
    assert "does not exist" in str(by[("s00", "path_a")])
    # without --images only the content is checked
    assert validate_manifest(out) == []


def test_validate_catches_bad_content(dataset, tmp_path):
    root, rows = dataset
    good = manifests.normalize_row(rows[0])
    bad = dict(good, sample_id="bad", scores=[1.5, 0.5], boxes=[[3, 2, 12, 10], [15, 12, 300, 20]],
               labels=["person", "zebra"], sha256_a="xyz", text_a_shape=[4, 8], created="yesterday")
    table = pa.Table.from_pylist([good, bad, good], schema=SCHEMA)
    f = tmp_path / "bad.parquet"
    manifests.write_table_atomic(table, f)
    cols = {(p.sample_id, p.column) for p in validate_manifest(f)}
    assert cols == {("bad", "scores"), ("bad", "boxes"), ("bad", "labels"), ("bad", "sha256_a"),
                    ("bad", "text_a"), ("bad", "created"), ("s00", "sample_id")}
    other = tmp_path / "v2.parquet"
    pq.write_table(table.replace_schema_metadata({VERSION_KEY: b"2"}), other)
    (problem,) = validate_manifest(other)
    assert problem.file == str(other) and "version 2" in problem.message


def test_merge_later_input_wins(dataset, tmp_path):
    root, rows = dataset
    write(tmp_path / "x", rows[:2])
    fixed = make_row(root, 2, "ir/02.png", "vi/02.png")
    write(tmp_path / "y", [rows[2]])
    single = tmp_path / "z.parquet"
    pq.write_table(manifests.rows_to_table([fixed]), single)  # a plain file has no sequence number
    (merged,) = merge_manifests([tmp_path / "x", tmp_path / "y", single], tmp_path / "all.parquet")
    table = read_manifest(merged)
    assert table.column("sample_id").to_pylist() == ["s00", "s01", "s02"]
    assert rows_by_id(table)["s02"]["status"] == "ok"
    merged2 = merge_manifests([single, tmp_path / "y"], tmp_path / "dir", rows_per_part=1)
    assert [p.name for p in merged2] == ["part-merged-00000.parquet"]
    assert rows_by_id(read_manifest(tmp_path / "dir"))["s02"]["status"] == "error"
    with pytest.raises(ValueError, match="no inputs"):
        merge_manifests([], tmp_path / "none.parquet")


def test_stats(dataset, tmp_path):
    _, rows = dataset
    write(tmp_path / "m", rows)
    s = manifest_stats(read_manifest(tmp_path / "m"))
    assert s["rows"] == 3 and s["by_status"] == {"error": 1, "ok": 2}
    assert s["by_task"] == {"vif": 3} and s["by_dataset"] == {"toy": 3}
    assert s["instances"] == 4 and s["instances_per_class"] == {"car": 2, "person": 2}
    assert s["instances_per_modality"] == {"a": 2, "both": 2}
    assert s["caption_words"]["a"] == {"count": 2, "mean": 8.0, "min": 8, "max": 8}
    assert s["text_tokens"]["a"] == {"count": 2, "mean": 5.5, "min": 5, "max": 6}
    assert list(s["errors"].values()) == [1]


def test_show_writes_png(dataset, tmp_path):
    root, rows = dataset
    write(tmp_path / "m", rows)
    got = rows_by_id(read_manifest(tmp_path / "m"))
    for sid, images in (("s00", root), ("s02", None)):
        out = render_sample(got[sid], tmp_path / f"{sid}.png", images=images)
        with Image.open(out) as im:
            assert im.format == "PNG" and im.width > 200 and im.height > 200


def test_cli(dataset, tmp_path):
    root, rows = dataset
    out = tmp_path / "m"
    write(out, rows)
    runner = CliRunner()
    r = runner.invoke(app, ["validate", str(out), "--images", str(root)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["stats", str(out), "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["by_status"] == {"error": 1, "ok": 2}
    assert "instances_per_class" in runner.invoke(app, ["stats", str(out)]).output
    png = tmp_path / "show.png"
    r = runner.invoke(app, ["show", "s01", str(out), "--images", str(root), "--out", str(png)])
    assert r.exit_code == 0 and png.stat().st_size > 0, r.output
    assert runner.invoke(app, ["show", "nope", str(out), "--out", str(png)]).exit_code == 2
    r = runner.invoke(app, ["merge", str(out), "--out", str(tmp_path / "merged.parquet")])
    assert r.exit_code == 0 and read_manifest(tmp_path / "merged.parquet").num_rows == 3
    assert "sample_id" in runner.invoke(app, ["schema"]).output
    (root / "ir/01.png").write_bytes(b"changed")
    r = runner.invoke(app, ["validate", str(out), "--images", str(root)])
    assert r.exit_code == 1 and "s01" in r.output and "ir/01.png" in r.output
    bad = tmp_path / "v2.parquet"
    pq.write_table(manifests.rows_to_table(rows[:1]).replace_schema_metadata({VERSION_KEY: b"2"}), bad)
    r = runner.invoke(app, ["stats", str(bad)])
    assert r.exit_code == 2 and "v2.parquet" in r.output


def test_python_dash_m_entry_point():
    r = subprocess.run([sys.executable, "-m", "manifests", "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "validate" in r.stdout


def test_error_row_for_a_missing_file_validates(dataset, tmp_path):
    root, rows = dataset
    missing = {**rows[2], "path_a": "ir/99.png", "sha256_a": None, "error": "ir/99.png: file not found"}
    write(tmp_path / "m", [rows[0], missing])
    assert validate_manifest(tmp_path / "m", root) == []


@pytest.mark.realdata
def test_validate_and_show_real_images(shared_data, tmp_path):
    root = shared_data / "vif" / "tno"
    rows = []
    for name in ("01.png", "02.png"):
        with Image.open(root / "ir" / name) as im:
            w, h = im.size
        rows.append(dict(sample_id=f"tno/{name}", dataset="tno", split="test", task="vif",
                         path_a=f"ir/{name}", path_b=f"vi/{name}", sha256_a=sha256_file(root / "ir" / name),
                         sha256_b=sha256_file(root / "vi" / name), height=h, width=w, status="ok",
                         caption_a="a thermal image", caption_b="a visible image"))
    write(tmp_path / "m", rows)
    assert validate_manifest(tmp_path / "m", root) == []
    wrong = dict(rows[0], sample_id="wrong", path_b="vi/03.png")  # hash of 01 recorded for 03
    write(tmp_path / "m", [wrong])
    (problem,) = validate_manifest(tmp_path / "m", root)
    assert problem.sample_id == "wrong" and problem.column == "sha256_b"
    out = render_sample(rows_by_id(read_manifest(tmp_path / "m"))["tno/01.png"], tmp_path / "s.png", images=root)
    assert out.stat().st_size > 0
