"""Pansharpening on the shared scenes: the half-scene protocol, band-count selection, validation, test-set
scoring and ``fuse --task pan`` (synthetic .mat scenes; a small randomly initialised model)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io as sio
import torch

from tests.helpers import FUSION, error_lines, invoke


def _scene(path: Path, bands: int, h: int = 64, w: int = 80, ratio: int = 4, seed: int = 0) -> Path:
    """A toolbox-style scene: I_MS [h, w, bands] and I_PAN [rh, rw], 11-bit DN."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0: h * ratio, 0: w * ratio] / (4.0 * ratio)
    pan = 1000 + 600 * np.sin(yy) * np.cos(xx * 0.7) + rng.normal(0, 20, yy.shape)
    lp = pan.reshape(h, ratio, w, ratio).mean((1, 3))
    ms = np.stack([lp * (0.6 + 0.1 * k) + 50 * k for k in range(bands)], axis=2)
    sio.savemat(path, {"I_MS": np.clip(ms, 0, 2047).astype(np.uint16), "I_PAN": np.clip(pan, 0, 2047).astype(np.uint16),
                       "ratio": np.array([[ratio]], np.uint8), "L": np.array([[11]], np.uint8),
                       "sensor": np.array(["WV2"])})
    return path


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pan_scenes") / "pan"
    root.mkdir()
    _scene(root / "four_a.mat", 4, w=160, seed=1)
    _scene(root / "four_b.mat", 4, h=72, w=64, seed=2)
    _scene(root / "eight.mat", 8, seed=3)
    _scene(root / "tiny4.mat", 4, h=16, w=16, seed=4)
    return root


@pytest.fixture(scope="module")
def pan_model():
    from fusion.model.build import build_model

    torch.manual_seed(0)
    return build_model("pan", bands=4, base_channels=8, drop_path=0.0).eval()


def test_half_regions_partition_the_scene():
    from rwkvfusion_io.spectral import half_region

    for h, w in ((320, 320), (33, 17), (8, 8)):
        cover = np.zeros((h, w), int)
        for split in ("train", "val", "test"):
            (r0, r1), (c0, c1) = half_region(split, h, w)
            cover[r0:r1, c0:c1] += 1
        assert (cover == 1).all(), (h, w)  # disjoint and complete
    assert half_region("test", 320, 320) == ((160, 320), (0, 320))
    with pytest.raises(ValueError, match="split must be one of"):
        half_region("all", 10, 10)


def test_dataset_selects_band_count_and_regions(scenes):
    from fusion.config import get_config
    from fusion.data import build_dataset

    cfg = get_config("pan", bands=4, scene_split="halves", crop_size=(16, 16))
    train = build_dataset("pan", scenes, "train", train=True, cfg=cfg)
    ignored = dict((Path(f).name, why) for f, why in train.ignored_files)
    assert ignored["eight.mat"] == "8 bands, the model has 4 (--bands)"
    assert "smaller than the training crop" in ignored["tiny4.mat"]
    # one epoch draws as many crops as tile the train region: four_a 32x120 -> 15, four_b 36x48 -> 6
    assert sorted(train.ids) == ["four_a"] * 15 + ["four_b"] * 6
    s = train[0]
    assert s["a"].shape == (4, 16, 16) and s["gt"].shape == (4, 16, 16) and s["ms"].shape == (4, 4, 4)
    test = build_dataset("pan", scenes, "test", cfg=cfg)
    t = test[test.ids.index("four_a")]
    assert t["gt"].shape == (4, 32, 160) and t["b"].shape == (1, 32, 160)  # bottom half, every column
    full = sio.loadmat(scenes / "four_a.mat")["I_MS"][32:64].astype(np.float32) / 2047.0
    np.testing.assert_allclose(t["gt"].numpy().transpose(1, 2, 0), full, atol=1e-6)
    val = build_dataset("pan", scenes, "val", cfg=cfg)
    assert val[val.ids.index("four_a")]["gt"].shape == (4, 32, 40)  # top half, right quarter


def test_validate_pan_scores_against_the_reference(scenes, pan_model):
    from fusion.config import get_config
    from fusion.data import build_dataset
    from fusion.metrics import pansharpening_metrics
    from fusion.train.inference import run_model
    from fusion.train.validate import validate

    cfg = pan_model.cfg.replace(scene_split="halves")
    val = build_dataset("pan", scenes, "val", cfg=cfg)
    res = validate(pan_model, val)
    # regions under Q2n's 32x32 blocks are skipped (four_b 36x16, tiny4 8x4)
    assert res["select_metric"] == "Q2n" and set(res["per_dataset"]) == {"four_a"}
    s = val[val.ids.index("four_a")]
    f = run_model(pan_model, s["a"][None], s["b"][None])[0].double().numpy().transpose(1, 2, 0) * 2047.0
    direct = pansharpening_metrics(f, s["gt"].double().numpy().transpose(1, 2, 0) * 2047.0, ratio=4, max_value=2047.0)
    assert res["per_dataset"][s["id"]]["Q2n"] == pytest.approx(direct["Q2n"], abs=1e-9)
    assert res["score"] == pytest.approx(np.mean([d["Q2n"] for d in res["per_dataset"].values()]))
    assert get_config("pan").data.scene_split == "file"  # the paper's PanCollection files keep their own splits


def test_pan_testsets_and_verdict(scenes, pan_model):
    from fusion.pretrained.testsets import evaluate_pan_testsets, pan_verdict

    res = evaluate_pan_testsets(pan_model, scenes.parent)
    assert set(res["sets"]) == {"four_a", "four_b"}  # tiny4's test half (8x16) is below Q2n's 32x32 blocks
    means = res["sets"]["four_a"]["means"]
    assert {"rwkvfusion", "exp", "brovey", "gs", "mtf-glp-hpm"} <= set(means)
    assert means["exp"]["SAM"] == pytest.approx(means["brovey"]["SAM"], abs=1e-6)  # Brovey keeps EXP's angles
    closed = {"m": {"Q2n": 0.9, "SAM": 2.0, "ERGAS": 1.0, "SCC": 0.95},
              "mtf-glp-hpm": {"Q2n": 0.8, "SAM": 3.0, "ERGAS": 2.0, "SCC": 0.9},
              "exp": {"Q2n": 0.7, "SAM": 1.0, "ERGAS": 3.0, "SCC": 0.8}}
    v = pan_verdict(closed, "m")
    assert "on 4 of 4 (Q2n, SAM, ERGAS, SCC)" in v and "SCC: mtf-glp-hpm:" in v and v.endswith("MET.")
    closed["m"]["SCC"] = 0.85
    assert pan_verdict(closed, "m").endswith("NOT met.")


def test_fuse_task_pan_cli(scenes, pan_model, tmp_path):
    import tifffile

    from fusion.train.checkpoint import export_checkpoint

    ck = export_checkpoint(pan_model, tmp_path / "pan.pt")
    app = FUSION
    out = tmp_path / "fused"
    r = invoke(app, "fuse", "--checkpoint", str(ck), "--a", str(scenes / "four_a.mat"),
               "--b", str(scenes / "four_a.mat"), "--out", str(out / "x.tif"))
    assert r.exit_code == 0, r.output
    img = tifffile.imread(out / "x.tif")
    assert img.shape == (256, 640, 4) and img.dtype == np.float32 and 0 <= img.min() and img.max() <= 2047
    assert (out / "x.png").is_file()
    r = invoke(app, "fuse", "--checkpoint", str(ck), "--a", str(scenes / "eight.mat"),
               "--b", str(scenes / "eight.mat"), "--out", str(out))
    assert r.exit_code == 1
    lines = error_lines(r.output)
    assert any("eight" in ln and "4-band MS; this one has 8" in ln for ln in lines), r.output
    bad = tmp_path / "bad.mat"
    bad.write_bytes(b"not a mat file")
    r = invoke(app, "fuse", "--checkpoint", str(ck), "--a", str(bad), "--b", str(bad), "--out", str(out))
    assert r.exit_code == 1 and any("bad.mat" in ln for ln in error_lines(r.output)), r.output


def test_bundle_names():
    from fusion.config import get_config
    from fusion.pretrained import bundle_name

    assert bundle_name(get_config("mif").to_dict()) == "mif"
    assert bundle_name(get_config("pan", bands=4).to_dict()) == "pan4"
    assert bundle_name(get_config("pan").to_dict()) == "pan8"


def _bundle(weights: Path, model) -> None:
    """A bundled ``pan4`` model written as ``export_run`` writes it (fp16 safetensors + JSON sidecar)."""
    import json

    from safetensors.torch import save_file

    weights.mkdir(parents=True, exist_ok=True)
    save_file({k: v.half().contiguous() for k, v in model.state_dict().items()}, str(weights / "pan4.safetensors"))
    (weights / "pan4.json").write_text(json.dumps({"format": 1, "task": "pan4", "config": model.cfg.to_dict(),
                                                   "training": {"weights": "test", "steps_trained": 0}}))


def test_bundled_pan_in_fuse_and_demo(scenes, pan_model, tmp_path, monkeypatch):
    import json

    import fusion.pretrained as P
    from fusion.pretrained.demo import run_demo

    _bundle(tmp_path / "weights", pan_model)
    monkeypatch.setattr(P, "WEIGHTS_DIR", tmp_path / "weights")
    r = invoke(FUSION, "fuse", "--task", "pan", "--a", str(scenes / "four_b.mat"), "--b", str(scenes / "four_b.mat"),
               "--out", str(tmp_path / "f"))
    assert r.exit_code == 0 and (tmp_path / "f" / "four_b.tif").is_file(), r.output
    r = invoke(FUSION, "fuse", "--task", "pan", "--a", str(scenes / "eight.mat"), "--b", str(scenes / "eight.mat"),
               "--out", str(tmp_path / "f"))
    assert r.exit_code != 0 and "8 bands" in r.output and "pan4" in r.output, r.output
    report = run_demo(tmp_path / "demo", data=scenes.parent, demo_dir=tmp_path / "dd", tasks=("pan",))
    res = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert set(res["pan"]["pan4"]) == {"four_a", "four_b"} and "bundled:pan4" in res["pan"]["pan4"]["four_a"]["means"]
    page = report.read_text()
    assert "<h2>PAN</h2>" in page and "four_a_bundled_pan4.png" in page
    assert (tmp_path / "demo" / "pan" / "four_a_reference.png").is_file()


def test_fuse_pan_tiff_folders_and_bad_scenes(scenes, pan_model, tmp_path):
    import tifffile

    from fusion.train.checkpoint import export_checkpoint

    ck = export_checkpoint(pan_model, tmp_path / "pan.pt")
    d = sio.loadmat(scenes / "four_b.mat")
    (tmp_path / "ms").mkdir()
    (tmp_path / "pan").mkdir()
    tifffile.imwrite(tmp_path / "ms" / "s1.tif", d["I_MS"].transpose(2, 0, 1),  # planar [C, h, w] is read too
                     photometric="minisblack")
    tifffile.imwrite(tmp_path / "pan" / "s1.tif", d["I_PAN"])
    nan_ms = d["I_MS"].astype(np.float32)
    nan_ms[3, 3, 1] = np.nan
    tifffile.imwrite(tmp_path / "ms" / "s2.tif", nan_ms, photometric="minisblack", planarconfig="contig")
    tifffile.imwrite(tmp_path / "pan" / "s2.tif", d["I_PAN"])
    tifffile.imwrite(tmp_path / "ms" / "s3.tif", d["I_MS"][:-1], photometric="minisblack",  # 71 rows: not PAN / 4
                     planarconfig="contig")
    tifffile.imwrite(tmp_path / "pan" / "s3.tif", d["I_PAN"])
    r = invoke(FUSION, "fuse", "--checkpoint", str(ck), "--a", str(tmp_path / "ms"), "--b", str(tmp_path / "pan"),
               "--out", str(tmp_path / "out"))
    assert r.exit_code == 1, r.output
    assert tifffile.imread(tmp_path / "out" / "s1.tif").shape == (288, 256, 4)
    lines = error_lines(r.output)
    assert any("s2" in ln and "s2.tif" in ln and "finite" in ln.lower() for ln in lines), lines
    assert any("s3" in ln and "not an integer multiple" in ln for ln in lines), lines
    assert "1 of 3 scene(s)" not in r.output and "2 of 3 scene(s) failed" in r.output


def test_pan_recipe_run_is_reproducible_and_resumes_exactly(scenes, tmp_path, monkeypatch):
    import json

    import fusion.config as C
    from fusion.train.runner import run_training

    monkeypatch.setitem(C._CPU_RECIPES, "pan", {**C._CPU_RECIPES["pan"], "val_every": 1, "checkpoint_every": 1})

    def run(out: Path, **kw):
        args = dict(data=scenes, recipe="cpu", steps=3, batch_size=2, evaluate=False, progress=False,
                    checkpoint_every=1, device="cpu", overrides={"bands": 4, "crop_size": (16, 16), "base_channels": 8})
        return run_training("pan", out, **{**args, **kw})

    a, b = run(tmp_path / "a"), run(tmp_path / "b")
    assert a["best_validation"] == b["best_validation"] and 0 < a["best_validation"]["Q2n"] <= 1
    run(tmp_path / "c", stop_after=2)
    c = run(tmp_path / "c", resume=True)
    hist = lambda p: [(h["step"], h["score"]) for h in json.loads((p / "val.json").read_text())["history"]]  # noqa: E731
    assert hist(tmp_path / "c") == hist(tmp_path / "a") and [s for s, _ in hist(tmp_path / "a")] == [1, 2, 3]
    assert c["best_validation"] == a["best_validation"]
