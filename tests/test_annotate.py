"""annotate: discovery, configuration, tiny-model pipeline end to end, resume, torchrun, bad inputs."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annotate.config import TASKS, config_hash, load_config
from annotate.discover import discover_samples
from annotate.models.base import ModelLoadError, resolve_source
from annotate.models.grounding_dino import class_token_spans, nms
from annotate.pipeline import phrase_to_class
from annotate.runner import run_annotation
from annotate.smoke import CORRUPT, SMOKE_OVERRIDES, build_tiny_models, make_vif_dataset, run_smoke

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> Path:
    """The four tiny random-weight models, built once for this module."""
    root = tmp_path_factory.mktemp("tiny") / "models"
    build_tiny_models(root)
    return root


def _png(path: Path, shape: tuple[int, ...], value: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(abs(hash(path.name)) % 2**32)
    Image.fromarray((rng.integers(0, 255, shape) // 2 + value // 2).astype(np.uint8)).save(path)
    return path


def _run(data: Path, out: Path, models: Path, task: str = "vif", **kw):
    kw["overrides"] = {**SMOKE_OVERRIDES, **kw.get("overrides", {})}
    kw.setdefault("batch_size", 2)
    return run_annotation(task, data, out, model_dir=models, progress=False, **kw)


def _rows(out: Path) -> dict[str, dict]:
    import manifests

    return manifests.rows_by_id(manifests.read_manifest(out))


def _digests(d: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir())}


# ------------------------------------------------------------------------------------------- discovery
def _touch(root: Path, files) -> None:
    for f in files:
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        if f.endswith(".txt"):
            (root / f).write_text("")
        else:
            Image.fromarray(np.full((4, 4), 10 * len(f) % 250, np.uint8)).save(root / f)


@pytest.mark.parametrize("task,files,expect", [
    ("vif", ["a/x.png", "b/x.png", "a/y.png", "b/y.png"], ["all/x", "all/y"]),
    ("vif", ["ir/1.png", "vi/1.png", "VI/ignored.txt"], ["all/1"]),
    ("vif", ["thermal/1.png", "rgb/1.png"], ["all/1"]),
    ("mif", ["MRI/10.png", "SPECT/10.png"], ["all/10"]),
    ("mef", ["ue/s1.jpg", "oe/s1.jpg"], ["all/s1"]),
    ("mef", ["scene1/1.jpg", "scene1/2.jpg", "scene2/a.jpg", "scene2/b.jpg"], ["all/scene1", "all/scene2"]),
    ("mff", ["source_1/1.png", "source_2/1.png", "full_clear/1.png"], ["all/1"]),
    ("vif", ["train/ir/00001D.png", "train/vi/00001D.png", "test/ir/00002N.png", "test/vi/00002N.png"],
     ["test/00002N", "train/00001D"]),
    ("vif", ["infrared/train/1.jpg", "visible/train/1.jpg", "infrared/test/2.jpg", "visible/test/2.jpg"],
     ["test/2", "train/1"]),
    ("mff", ["lytro-01-A.jpg", "lytro-01-B.jpg", "lytro-02-A.jpg", "lytro-02-B.jpg"], ["all/lytro-01", "all/lytro-02"]),
])
def test_discover_layouts(tmp_path, task, files, expect):
    _touch(tmp_path, files)
    samples = discover_samples(tmp_path, task=task)
    assert [s.sample_id for s in samples] == expect
    assert all(s.problem is None and s.path_a.is_file() and s.path_b.is_file() for s in samples)
    assert samples == discover_samples(tmp_path, task=task)  # deterministic


@pytest.mark.parametrize("task,files", [
    ("vif", ["train/ir/1.png", "train/vi/1.png", "test/ir/2.png", "test/vi/2.png"]),   # MSRS-like
    ("vif", ["infrared/train/1.jpg", "visible/train/1.jpg", "infrared/test/2.jpg", "visible/test/2.jpg"]),
    ("vif", ["thermal/1.png", "rgb/1.png"]),
    ("mef", ["scene1/1.jpg", "scene1/2.jpg"]),                                          # SICE / IFCNN sequences
    ("mff", ["source_1/1.png", "source_2/1.png", "full_clear/1.png"]),                  # MFI-WHU
    ("mff", ["FAR/1.png", "NEAR/1.png", "FAR/2.png", "NEAR/2.png", "train.txt", "test.txt"]),  # RealMFF lists
])
def test_annotation_ids_are_the_training_keys(tmp_path, task, files):
    """Every layout that trains can be annotated, and the manifest id of each pair is the key the training
    dataset joins by, whatever split the dataset is built for."""
    from fusion.data import build_dataset
    from rwkvfusion_io.layouts import list_splits

    _touch(tmp_path, files)
    if "train.txt" in files:
        (tmp_path / "train.txt").write_text("1.png\n")
        (tmp_path / "test.txt").write_text("2.png\n")
    ids = {s.sample_id for s in discover_samples(tmp_path, task=task)}
    keys = set()
    for split in list_splits(task, tmp_path):
        ds = build_dataset(task, tmp_path, split if split != "all" else "test")
        keys |= {r.key for r in ds.samples}
    assert ids == keys and ids


def test_discover_split_missing_partner_and_errors(tmp_path):
    _touch(tmp_path, ["train/ir/a.png", "train/vi/a.png", "test/ir/b.png", "test/vi/b.png", "test/ir/c.png",
                      "test/Segmentation_labels/b.png"])
    samples = discover_samples(tmp_path, "test", task="vif", label_dir="Segmentation_labels")
    assert [s.sample_id for s in samples] == ["test/b", "test/c"]
    assert samples[0].path_label is not None and samples[0].rel(samples[0].path_label) == "test/Segmentation_labels/b.png"
    assert samples[1].path_b is None and samples[1].problem.startswith("test/ir/c.png: no matching file in")
    assert "test/vi" in samples[1].problem and str(tmp_path) not in samples[1].problem
    with pytest.raises(ValueError, match="split 'val' not found"):
        discover_samples(tmp_path, "val", task="vif")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no known vif layout"):
        discover_samples(tmp_path / "empty", task="vif")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        discover_samples(tmp_path / "nope", task="vif")


# --------------------------------------------------------------------------------------- configuration
def test_configs_load_and_hash():
    for task in TASKS:
        cfg = load_config(task)
        assert cfg.task == task
    vif, mef, pan = load_config("vif"), load_config("mef"), load_config("pan")
    assert vif.stages.boxes == "grounding_dino" and "person" in vif.classes and vif.stages.merge
    assert mef.stages.boxes == "phrase_grounding" and len(mef.classes) == 20
    assert pan.needs == {"captioner": True, "text_encoder": True, "detector": False, "segmenter": False}
    assert vif.caption.task_prompt == "<MORE_DETAILED_CAPTION>" and vif.caption.num_beams == 3
    assert vif.caption.max_new_tokens == 1024 and vif.text.max_length == 512
    assert config_hash(vif) == config_hash(load_config("vif"))
    other = load_config("vif", overrides={"detector": {"box_threshold": 0.5}})
    assert other.detector.box_threshold == 0.5 and config_hash(other) != config_hash(vif)
    with pytest.raises(ValueError, match="unknown keys"):
        load_config("vif", overrides={"detector": {"box_thresh": 0.5}})
    with pytest.raises(ValueError, match="task"):
        load_config("nope")
    msrs = load_config("vif", overrides={"dataset_labels": {"enabled": True}})
    assert msrs.class_vocab == ("object",) and msrs.needs["segmenter"] is False


def test_config_file_layers(tmp_path):
    p = tmp_path / "my.yaml"
    p.write_text("classes: [person, dog]\ndetector: {max_detections: 3}\n")
    cfg = load_config("vif", p)
    assert cfg.classes == ("person", "dog") and cfg.detector.max_detections == 3
    assert cfg.detector.box_threshold == load_config("vif").detector.box_threshold
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_config("vif", tmp_path / "missing.yaml")


def test_phrase_to_class():
    classes, aliases = ("person", "car", "street lamp"), {"person": ("man", "people"), "car": ("vehicle",)}
    assert phrase_to_class("a man riding a bicycle", classes, aliases) == "person"
    assert phrase_to_class("two parked cars", classes, aliases) == "car"
    assert phrase_to_class("the street lamp near a car", classes, aliases) == "street lamp"
    assert phrase_to_class("a tall tree", classes, aliases) is None


def test_nms_and_token_spans():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], np.float32)
    assert nms(boxes, np.array([0.9, 0.8, 0.7], np.float32), 0.5).tolist() == [0, 2]
    assert nms(boxes, np.array([0.5, 0.8, 0.7], np.float32), 0.5).tolist() == [1, 2]
    assert nms(boxes, np.array([0.9, 0.8, 0.7], np.float32), 0.95).tolist() == [0, 1, 2]
    # [CLS] per ##son . car . street lamp . [SEP]
    ids, dot, special = [101, 5, 6, 9, 7, 9, 8, 4, 9, 102], {9}, {101, 102}
    assert class_token_spans(ids, dot, special, 3) == [[1, 2], [4], [6, 7]]
    with pytest.raises(ValueError, match="3 class segments for 2 classes"):
        class_token_spans(ids, dot, special, 2)


# ------------------------------------------------------------------------------------------ model paths
def test_wrong_model_path_fails_clearly(tmp_path, tiny_models):
    with pytest.raises(ModelLoadError, match="does not exist"):
        resolve_source(str(tmp_path / "no_such_model"), "segmenter")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        resolve_source(str(tmp_path / "empty_dir"), "detector")
    assert resolve_source("facebook/sam-vit-huge", "segmenter") == ("facebook/sam-vit-huge", False)
    data = tmp_path / "data"
    make_vif_dataset(data, n_pairs=2, corrupt=None)
    bad = str(tmp_path / "models" / "sam")
    with pytest.raises(ModelLoadError, match=bad):
        _run(data, tmp_path / "out", tiny_models, model_sources={"segmenter": bad})
    with pytest.raises(ModelLoadError, match="Segmenter|segmenter"):  # a T5 folder is not a SAM model
        _run(data, tmp_path / "out", tiny_models, model_sources={"segmenter": str(tiny_models / "text_encoder")})
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.parquet"))


def test_cli_wrong_model_path_and_schema_version(tmp_path, tiny_models):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from annotate.cli import app

    data = tmp_path / "data"
    make_vif_dataset(data, n_pairs=1, corrupt=None)
    res = CliRunner().invoke(app, ["run", "--task", "vif", "--data", str(data), "--out", str(tmp_path / "o"),
                                   "--model-dir", str(tiny_models), "--detector", str(tmp_path / "gd-missing"),
                                   "--no-progress"])
    assert res.exit_code == 2 and "gd-missing" in res.output and "does not exist" in res.output
    # a manifest of another schema version in --out fails at start, naming the file
    old = tmp_path / "old"
    old.mkdir()
    table = pa.table({"sample_id": ["x"]}).replace_schema_metadata({b"rwkvfusion.manifest.schema_version": b"0"})
    pq.write_table(table, old / "part-r000-00000.parquet")
    res = CliRunner().invoke(app, ["run", "--task", "vif", "--data", str(data), "--out", str(old),
                                   "--model-dir", str(tiny_models), "--no-progress"])
    assert res.exit_code == 2 and "part-r000-00000.parquet" in res.output and "version 0" in res.output


# ------------------------------------------------------------------------------------------ end to end
def test_smoke_end_to_end_and_byte_identical_rerun(tmp_path, tiny_models):
    import manifests

    out = tmp_path / "smoke"
    shutil.copytree(tiny_models, out / "models")
    report = run_smoke(out, progress=False)
    assert report["ok"], report["problems"]
    assert report["samples"] == 6 and report["annotated"] == 6 and report["errors_this_run"] == 1
    for stage in ("caption", "encode", "detect", "segment", "merge", "load_captioner"):
        assert report["timings"][stage]["seconds"] > 0
    before = _digests(out / "manifest")
    rows = _rows(out / "manifest")
    assert len(rows) == 6
    bad = rows["all/scene_03"]
    assert bad["status"] == "error" and CORRUPT in bad["error"] and "cannot read image" in bad["error"]
    assert str(out) not in bad["error"]
    ok = rows["all/scene_00"]
    assert ok["status"] == "ok" and ok["task"] == "vif" and ok["dataset"] == "smoke-vif"
    assert ok["path_a"] == "ir/scene_00.png" and ok["path_b"] == "vi/scene_00.png"
    assert ok["sha256_a"] == hashlib.sha256((out / "data/ir/scene_00.png").read_bytes()).hexdigest()
    assert (ok["height"], ok["width"]) == (48, 64)
    ta, tb = manifests.decode_text(ok, "a"), manifests.decode_text(ok, "b")
    assert ta.dtype == np.float16 and ta.shape[1] == 16 and tb.shape[1] == 16 and ta.shape[0] >= 1
    assert ok["text_encoder"] == "text_encoder"
    cmap = manifests.decode_class_map(ok)
    masks = manifests.decode_instance_masks(ok)
    assert cmap.shape == (48, 64) and masks.shape[1:] == (48, 64)
    assert len(ok["labels"]) == len(masks) == len(ok["boxes"]) == len(ok["scores"]) == len(ok["instance_modality"])
    assert set(ok["labels"]) <= set(ok["class_vocab"]) and ok["class_vocab"] == list(load_config("vif").classes)
    assert set(ok["instance_modality"]) <= {"a", "b", "both"} and ok["mask_source"] == "generated"
    assert set(np.unique(cmap)) <= set(range(len(ok["class_vocab"]) + 1))
    assert masks.any(axis=0)[cmap > 0].all()  # painted pixels belong to some instance
    assert {m["role"] for m in ok["models"]} == {"caption", "text_encoder", "detector", "segmenter"}
    assert all(m["revision"].startswith("sha256:") for m in ok["models"])
    assert len({r["config_hash"] for r in rows.values()}) == 1 and len({r["created"] for r in rows.values()}) == 1

    again = run_smoke(out, progress=False)
    assert again["ok"] and again["skipped"] == 6 and again["annotated"] == 0
    assert _digests(out / "manifest") == before


def test_resume_after_crash_loses_and_redoes_nothing(tmp_path, tiny_models, capfd):
    data, out = tmp_path / "data", tmp_path / "out"
    make_vif_dataset(data, n_pairs=6, corrupt=None)
    first: list[str] = []

    def crash_after_three(row):
        first.append(row["sample_id"])
        if len(first) == 3:
            raise KeyboardInterrupt("simulated kill")

    with pytest.raises(KeyboardInterrupt):
        _run(data, out, tiny_models, rows_per_part=2, on_row=crash_after_three)
    assert sorted(_rows(out)) == sorted(first)  # everything finished before the crash is on disk
    second: list[str] = []
    s = _run(data, out, tiny_models, rows_per_part=2, on_row=lambda r: second.append(r["sample_id"]))
    assert s.skipped == 3 and s.written == 3 and not set(first) & set(second)
    rows = _rows(out)
    assert sorted(rows) == [f"all/scene_{i:02d}" for i in range(6)]
    assert all(r["status"] == "ok" for r in rows.values())
    capfd.readouterr()
    assert _run(data, out, tiny_models).written == 0 and "other configurations" not in capfd.readouterr().err
    assert _run(data, out, tiny_models, overrides={"merge_iou": 0.7}).written == 0
    assert "other configurations" in capfd.readouterr().err  # resuming under changed settings is flagged


def test_bad_inputs_become_error_rows_and_redo_errors(tmp_path, tiny_models):
    data, out = tmp_path / "data", tmp_path / "out"
    for name in ("good", "mismatch", "corrupt", "empty", "alone"):
        _png(data / "ir" / f"{name}.png", (32, 40))
    for name in ("good", "corrupt", "empty"):
        _png(data / "vi" / f"{name}.png", (32, 40, 3))
    _png(data / "vi" / "mismatch.png", (30, 40, 3))
    _png(data / "vi" / "only_b.png", (32, 40))
    (data / "vi" / "corrupt.png").write_bytes((data / "vi" / "corrupt.png").read_bytes()[:60])  # truncated PNG
    (data / "ir" / "empty.png").write_bytes(b"")
    s = _run(data, out, tiny_models)
    rows = _rows(out)
    assert s.written == 6 and s.errors == 5
    assert rows["all/good"]["status"] == "ok"
    err = {k: r["error"] for k, r in rows.items() if r["status"] == "error"}
    assert "ir/mismatch.png is 40x32" in err["all/mismatch"] and "vi/mismatch.png is 40x30" in err["all/mismatch"]
    assert err["all/corrupt"].startswith("vi/corrupt.png: cannot read image")
    assert err["all/empty"].startswith("ir/empty.png: cannot read image")
    assert err["all/alone"] == "ir/alone.png: no matching file in vi"
    assert err["all/only_b"] == "vi/only_b.png: no matching file in ir"
    assert rows["all/mismatch"]["sha256_a"] is not None and rows["all/alone"]["path_b"] is None
    # a plain re-run keeps the error rows; --redo-errors retries them and the fixed sample becomes ok
    _png(data / "vi" / "mismatch.png", (32, 40, 3))
    assert _run(data, out, tiny_models).written == 0
    s = _run(data, out, tiny_models, redo_errors=True)
    assert s.skipped == 1 and s.written == 5 and s.errors == 4
    assert _rows(out)["all/mismatch"]["status"] == "ok"


def test_tasks_mef_pan_and_dataset_labels(tmp_path, tiny_models):
    import manifests

    data = tmp_path / "mef"
    for i in range(2):
        _png(data / "ue" / f"{i}.png", (32, 32, 3), 40)
        _png(data / "oe" / f"{i}.png", (32, 32, 3), 200)
    _run(data, tmp_path / "o_mef", tiny_models, task="mef")
    rows = _rows(tmp_path / "o_mef")
    assert all(r["status"] == "ok" and r["mask_source"] == "generated" for r in rows.values())
    assert {m["role"] for m in rows["all/0"]["models"]} == {"caption", "grounding", "text_encoder", "segmenter"}
    assert len(rows["all/0"]["class_vocab"]) == 20
    with pytest.raises(ValueError, match=r"mef: no \.h5/\.mat files for task 'pan'"):
        _run(data, tmp_path / "o_pan", tiny_models, task="pan")  # images cannot make pansharpening samples
    _pan_h5(tmp_path / "pan" / "train_wv3.h5", n=1)
    _run(tmp_path / "pan", tmp_path / "o_pan", tiny_models, task="pan")
    r = _rows(tmp_path / "o_pan")["train/train_wv3_00000"]
    assert r["status"] == "ok" and r["mask_source"] == "none" and r["masks"] is None and r["caption_b"] is not None
    assert {m["role"] for m in r["models"]} == {"caption", "text_encoder"}
    # MSRS-like split layout with the dataset's own segmentation labels
    msrs = tmp_path / "msrs"
    _png(msrs / "test" / "ir" / "00001N.png", (24, 32))
    _png(msrs / "test" / "vi" / "00001N.png", (24, 32, 3))
    label = np.zeros((24, 32), np.uint8)
    label[2:6, 3:9], label[10:20, 20:30] = 2, 1
    (msrs / "test" / "Segmentation_labels").mkdir()
    Image.fromarray(label).save(msrs / "test" / "Segmentation_labels" / "00001N.png")
    _run(msrs, tmp_path / "o_msrs", tiny_models, split="test", overrides={"dataset_labels": {"enabled": True}})
    r = _rows(tmp_path / "o_msrs")["test/00001N"]
    assert r["status"] == "ok" and r["mask_source"] == "dataset" and r["class_vocab"] == ["object"]
    assert (manifests.decode_class_map(r) == (label > 0)).all()
    assert r["boxes"] == [[3.0, 2.0, 30.0, 20.0]]
    assert {m["role"] for m in r["models"]} == {"caption", "text_encoder"}


def test_no_detections_gives_empty_instances(tmp_path, tiny_models):
    import manifests

    data = tmp_path / "data"
    make_vif_dataset(data, n_pairs=2, corrupt=None)
    _run(data, tmp_path / "out", tiny_models, overrides={"detector": {"box_threshold": 1.0}})
    for r in _rows(tmp_path / "out").values():
        assert r["status"] == "ok" and r["labels"] == [] and r["masks"] == [] and r["boxes"] == []
        assert manifests.decode_instance_masks(r).shape == (0, 48, 64)
        assert not manifests.decode_class_map(r).any()


def test_hf_datasets_loads_manifest(tmp_path, tiny_models):
    import datasets

    import manifests

    data, out = tmp_path / "data", tmp_path / "out"
    make_vif_dataset(data, n_pairs=4)
    _run(data, out, tiny_models)
    files = sorted(str(p) for p in out.glob("*.parquet"))
    ds = datasets.load_dataset("parquet", data_files=files, split="train", cache_dir=str(tmp_path / "hf"))
    assert ds.num_rows == 4 and "class_map" in ds.column_names
    assert sorted(ds["status"]) == ["error", "ok", "ok", "ok"]
    row = next(r for r in ds if r["status"] == "ok")
    assert manifests.decode_text(row, "a").shape[1] == 16
    assert manifests.decode_instance_masks(row).shape[1:] == (48, 64)


# ------------------------------------------------------------------------------------------ distributed
@pytest.mark.distributed
@pytest.mark.slow
def test_torchrun_two_ranks_match_single_process(tmp_path, tiny_models):
    import torch

    data = tmp_path / "data"
    make_vif_dataset(data, n_pairs=5)  # scene_03 is corrupt
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _run(data, tmp_path / "single", tiny_models, batch_size=1)
    finally:
        torch.set_num_threads(threads)
    cfg = tmp_path / "smoke.yaml"
    import yaml

    cfg.write_text(yaml.safe_dump(SMOKE_OVERRIDES))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "annotate",
           "run", "--task", "vif", "--data", str(data), "--out", str(tmp_path / "dist"), "--model-dir",
           str(tiny_models), "--config", str(cfg), "--batch-size", "1", "--device", "cpu", "--no-progress"]
    res = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    names = sorted(p.name for p in (tmp_path / "dist").glob("*.parquet"))
    assert any(n.startswith("part-r000") for n in names) and any(n.startswith("part-r001") for n in names)
    single, dist = _rows(tmp_path / "single"), _rows(tmp_path / "dist")
    assert sorted(single) == sorted(dist)
    for sid in single:
        a = {k: v for k, v in single[sid].items() if k != "created"}
        b = {k: v for k, v in dist[sid].items() if k != "created"}
        assert a == b, sid


def test_time_models_reports_every_model(tiny_models):
    from annotate.smoke import time_models

    t = time_models(tiny_models.parent, n_images=1)
    assert set(t) == {"florence2_caption", "florence2_grounding", "t5_encoder", "grounding_dino", "sam"}
    assert all(v["load_seconds"] > 0 and v["seconds_per_image"] > 0 for v in t.values())


@pytest.mark.realdata
def test_real_layouts_and_tno_annotation(shared_data, tmp_path, tiny_models):
    counts = {"vif/tno": 25, "vif/roadscene": 50, "mif/mri_spect": 73, "mif/mri_ct": 21, "mff/lytro": 20,
              "mff/u2fusion": 3, "mef/u2fusion/dataset1": 5}
    for rel, n in counts.items():
        samples = discover_samples(shared_data / rel, task=rel.split("/")[0])
        assert len(samples) == n and all(s.problem is None for s in samples), rel
    s = _run(shared_data / "vif" / "tno", tmp_path / "tno", tiny_models, batch_size=4)
    rows = _rows(tmp_path / "tno")
    assert s.written == 25 and all(r["status"] == "ok" for r in rows.values())
    r = rows["all/01"]
    assert (r["width"], r["height"]) == Image.open(shared_data / "vif/tno/ir/01.png").size


def test_tiny_model_build_is_reproducible(tmp_path, tiny_models):
    from annotate.models.base import local_revision

    build_tiny_models(tmp_path / "again")
    for role in ("captioner", "text_encoder", "detector", "segmenter"):
        assert local_revision(tmp_path / "again" / role) == local_revision(tiny_models / role), role


# ------------------------------------------------------------------------------ pansharpening / HMIF
def _pan_h5(path: Path, n: int = 3, bands: int = 8, size: int = 16, seed: int = 0) -> Path:
    """A PanCollection-style h5 (keys gt, ms, lms, pan; float64 DN, 11-bit like WV3)."""
    import h5py

    rng = np.random.default_rng(seed)
    gt = rng.uniform(100, 2047, (n, bands, size, size))
    ms = gt.reshape(n, bands, size // 4, 4, size // 4, 4).mean(axis=(3, 5))
    lms = np.repeat(np.repeat(ms, 4, axis=2), 4, axis=3)
    pan = gt.mean(axis=1, keepdims=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for k, v in (("gt", gt), ("ms", ms), ("lms", lms), ("pan", pan)):
            f.create_dataset(k, data=v)
    return path


def test_spectral_preview_bands_and_stretch():
    from annotate.pipeline import rgb_bands, spectral_preview, stretch_to_uint8

    assert rgb_bands(8) == (4, 2, 1) and rgb_bands(4) == (2, 1, 0) and rgb_bands(3) == (0, 1, 2)
    assert rgb_bands(128) == (95, 64, 32) and rgb_bands(9) == (6, 4, 2)
    ramp = np.arange(101, dtype=np.float64).reshape(1, 101)  # percentiles 2 and 98 are 2 and 98
    out = stretch_to_uint8(ramp)
    assert out[0, 2] == 0 and out[0, 98] == 255 and out[0, 0] == 0 and out[0, 100] == 255
    assert out[0, 50] == round(48 / 96 * 255)
    assert not stretch_to_uint8(np.full((4, 4), 7.0)).any()
    ms = np.zeros((8, 6, 5))
    ms[4] = np.linspace(0, 1, 30).reshape(6, 5)  # only the red band (5, 1-based) varies
    im = np.asarray(spectral_preview(ms))
    assert im.shape == (6, 5, 3) and im[..., 0].max() == 255 and not im[..., 1:].any()
    pan = np.asarray(spectral_preview(ms[4:5]))
    assert (pan[..., 0] == pan[..., 1]).all() and (pan[..., 0] == im[..., 0]).all()  # PAN: grey
    with pytest.raises(ValueError, match="do not fit"):
        spectral_preview(ms, rgb=(8, 1, 0))


def test_discover_spectral_containers(tmp_path):
    _pan_h5(tmp_path / "train_wv3.h5", n=2)
    _pan_h5(tmp_path / "sub" / "test_wv3_multiExm1.h5", n=1)
    (tmp_path / "valid_wv3.h5").write_bytes(b"not an h5 file")
    ids = [s.sample_id for s in discover_samples(tmp_path, task="pan")]
    assert ids == ["test/test_wv3_multiExm1_00000", "train/train_wv3_00000", "train/train_wv3_00001",
                   "valid/valid_wv3"]
    s = discover_samples(tmp_path, task="pan")[1]
    assert s.spectral and s.index == 0 and s.rel(s.path_a) == s.rel(s.path_b) == "train_wv3.h5"
    bad = discover_samples(tmp_path, "valid", task="pan")
    assert len(bad) == 1 and bad[0].problem.startswith("valid_wv3.h5:") and str(tmp_path) not in bad[0].problem
    one = discover_samples(tmp_path / "sub" / "test_wv3_multiExm1.h5", task="pan")  # a single file as the root
    assert [x.sample_id for x in one] == ["test/test_wv3_multiExm1_00000"] and one[0].rel(one[0].path_a) == \
        "test_wv3_multiExm1.h5"
    with pytest.raises(ValueError, match="no split 'val'"):
        discover_samples(tmp_path, "val", task="pan")


def test_pan_h5_annotates_and_joins_training_data(tmp_path, tiny_models):

    import manifests
    from fusion.config import get_config
    from fusion.data import build_dataset

    data, out = tmp_path / "wv3", tmp_path / "out"
    h5 = _pan_h5(data / "train_wv3.h5")
    s = _run(data, out, tiny_models, task="pan")
    rows = _rows(out)
    assert s.written == 3 and s.errors == 0
    assert sorted(rows) == [f"train/train_wv3_{i:05d}" for i in range(3)]
    digest = hashlib.sha256(h5.read_bytes()).hexdigest()
    for r in rows.values():
        assert r["status"] == "ok" and r["task"] == "pan" and r["split"] == "train" and r["mask_source"] == "none"
        assert r["path_a"] == r["path_b"] == "train_wv3.h5" and r["sha256_a"] == r["sha256_b"] == digest
        assert (r["width"], r["height"]) == (16, 16) and r["caption_a"] and r["caption_b"]
        for side in "ab":
            t = manifests.decode_text(r, side)
            assert t.dtype == np.float16 and t.shape[1] == 16 and t.shape[0] >= 1
    # deterministic: a fresh run gives the same rows (bar the provenance time)
    _run(data, tmp_path / "again", tiny_models, task="pan")
    again = _rows(tmp_path / "again")
    assert all({k: v for k, v in rows[i].items() if k != "created"} ==
               {k: v for k, v in again[i].items() if k != "created"} for i in rows)
    # the training data joins the manifest by sample id
    cfg = get_config("pan", text_dim=16)
    ds = build_dataset("pan", data, "train", manifest=out, cfg=cfg)
    assert len(ds) == 3 and ds[1]["text"].shape[1] == 16
    # a spectral container under a non-spectral task is an error row, not a crash
    _run(data, tmp_path / "vif", tiny_models, task="vif")
    assert all("--task pan or hmif" in r["error"] for r in _rows(tmp_path / "vif").values())


@pytest.mark.realdata
def test_real_pan_and_hs_mat_annotation(shared_data, tmp_path, tiny_models):
    from annotate.pipeline import load_spectral

    wv3 = shared_data / "pan" / "WV3_example.mat"
    s = _run(wv3, tmp_path / "wv3", tiny_models, task="pan")
    r = _rows(tmp_path / "wv3")["all/WV3_example"]
    assert s.written == 1 and r["status"] == "ok" and r["caption_a"] and r["caption_b"]
    assert r["path_a"] == "WV3_example.mat" and r["sha256_a"] == hashlib.sha256(wv3.read_bytes()).hexdigest()
    assert (r["width"], r["height"]) == (32, 32)  # Wald reduced resolution: MS 32x32, PAN 128 / 4
    a, b = load_spectral(discover_samples(wv3, task="pan")[0], "pan", 4)
    assert a.size == b.size == (32, 32) and np.asarray(a).std() > 10 and np.asarray(b).std() > 10
    # HS + MS / HS + PAN scenes; the spectral-response table beside them is an error row naming it
    _run(shared_data / "hs", tmp_path / "hs", tiny_models, task="hmif")
    rows = _rows(tmp_path / "hs")
    assert {k: r["status"] for k, r in rows.items()} == {
        "all/ikonos_spec_resp": "error", "all/paris_data_hs_ms": "ok", "all/paris_data_hs_pan": "ok"}
    assert rows["all/ikonos_spec_resp"]["error"].startswith("ikonos_spec_resp.mat: no MS/PAN or HS cube")
