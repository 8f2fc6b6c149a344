"""Datasets, layouts, augmentation, collate, manifest join and the embedded demo data (fusion.data)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fusion.data import ManifestMismatchError, SampleError, build_dataset, collate
from fusion.data.augment import augment_sample, random_resized_crop_box
from fusion.demo import TASKS as DEMO_TASKS
from fusion.demo import build_demo_data


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo1")
    build_demo_data(root)
    return root


# ----------------------------------------------------------------------------------------- demo data
def test_demo_data_is_byte_identical_across_builds(demo_root, tmp_path):
    build_demo_data(tmp_path)
    a, b = _files(demo_root), _files(tmp_path)
    assert sorted(a) == sorted(b)
    assert len(a) > 6 * 16
    differing = [k for k in a if a[k] != b[k]]
    assert differing == []
    assert "STAND-INS FOR THE REAL DATASETS" in (demo_root / "README.txt").read_text()


@pytest.mark.parametrize("task", DEMO_TASKS)
def test_demo_data_loads_for_every_task(demo_root, task):
    from fusion.config import get_config

    cfg = get_config(task)
    test = build_dataset(task, demo_root / task, "test")
    train = build_dataset(task, demo_root / task, "train", train=True, cfg=cfg)
    assert (len(train), len(test)) == (12, 4)
    assert train.unannotated_count == 12
    s = test[0]
    assert ("gt" in s) == (task not in ("vif", "mif"))
    for k in ("a", "b", "gt") if "gt" in s else ("a", "b"):
        assert s[k].dtype == torch.float32 and torch.isfinite(s[k]).all()
        assert 0.0 <= float(s[k].min()) and float(s[k].max()) <= 1.0
    batch = collate([train[0], train[1]])
    if task in ("pan", "hmif"):
        bands = {"pan": (8, 1), "hmif": (128, 3)}[task]  # the default configs (WV3, Chikusei)
        assert train.channels == bands
        assert batch["a"].shape == (2, bands[0], 64, 64) and batch["b"].shape == (2, bands[1], 64, 64)
        assert batch["ms"].shape == (2, bands[0], 16, 16)
        # the demo's lms is the upsampled ms: low-resolution content agrees
        assert "gt" in batch and float((s["a"] - s["gt"]).abs().mean()) < 0.05
    else:
        h, w = cfg.data.crop_size if cfg.data.crop_size else s["a"].shape[-2:]
        assert batch["a"].shape == (2, 1, h, w) and batch["cbcr_b"].shape == (2, 2, h, w)
    if task == "vif":
        assert batch["mask"].shape == (2, 1, 224, 280) and set(batch["mask"].unique().tolist()) <= {0.0, 1.0}
    if task in ("mef", "mff"):  # gt is the original photo: sources differ from it, in opposite directions for mef
        assert "gt" in batch
    if task == "mef":
        assert float(s["a"].mean()) < float(s["gt"].mean()) < float(s["b"].mean())


def test_missing_split_is_a_clear_error(demo_root):
    with pytest.raises(ValueError, match=r"split 'val' not found; available splits: \['test', 'train'\]"):
        build_dataset("mef", demo_root / "mef", "val")


def test_demo_cli_registers_and_builds(tmp_path):
    import typer
    from typer.testing import CliRunner

    from fusion import demo

    app = typer.Typer()

    @app.callback()
    def _main() -> None:
        """test app"""

    demo.register(app)
    res = CliRunner().invoke(app, ["demo-data", "--out", str(tmp_path), "--task", "mif"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "mif" / "train" / "SPECT" / "0000.png").is_file() and not (tmp_path / "mef").exists()
    bad = CliRunner().invoke(app, ["demo-data", "--out", str(tmp_path), "--task", "nope"])
    assert bad.exit_code != 0 and "nope" in bad.output


def _y255(path: Path, studio: bool = False) -> np.ndarray:
    """BT.601 luma on 0-255 of an image file; ``studio`` maps 16-235 Y (U2Fusion's pairs) to 0-255."""
    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
    y = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    return np.clip((y - 16.0) * 255.0 / 219.0, 0.0, 255.0) if studio else y


def test_demo_mef_exposures_have_realistic_clipping(demo_root):
    """Real MEF pairs crush 5-72 % of the under exposure (Y <= 5, median ~0.10) and clip 4-97 % of the over
    exposure (Y >= 250, median ~0.45): the demo pairs must be in that regime, not mildly exposed."""
    from fusion.demo.images import MEF_CLIP_OVER, MEF_CRUSH_UNDER

    crushed, clipped, ue_mean, oe_mean = [], [], [], []
    for split in ("train", "test"):
        for p in sorted((demo_root / "mef" / split / "ue").glob("*.png")):
            ue, oe = _y255(p), _y255(p.parent.parent / "oe" / p.name)
            crushed.append(float((ue <= 5).mean()))
            clipped.append(float((oe >= 250).mean()))
            ue_mean.append(float(ue.mean()))
            oe_mean.append(float(oe.mean()))
            assert ue.mean() < oe.mean() and (ue >= 250).mean() < 0.05  # highlights survive in the dark frame
    assert len(crushed) == 16
    # every pair near its target band (noise moves a few pixels across the thresholds)
    assert MEF_CRUSH_UNDER[0] - 0.02 <= min(crushed) and max(crushed) <= MEF_CRUSH_UNDER[1] + 0.02, crushed
    assert MEF_CLIP_OVER[0] - 0.03 <= min(clipped) and max(clipped) <= MEF_CLIP_OVER[1] + 0.03, clipped
    # mean levels in the real pairs' range (under 9-155, median ~30; over 141-252, median ~225)
    assert 10 <= np.median(ue_mean) <= 60 and 180 <= np.median(oe_mean) <= 240, (ue_mean, oe_mean)


@pytest.mark.realdata
def test_demo_mef_targets_match_real_pairs(shared_data):
    """The demo's clipping targets (MEF_CRUSH_UNDER, MEF_CLIP_OVER) contain the real U2Fusion pairs' medians."""
    from fusion.demo.images import MEF_CLIP_OVER, MEF_CRUSH_UNDER

    crushed, clipped = [], []
    for d in ("dataset1", "dataset2"):
        root = shared_data / "mef" / "u2fusion" / d
        for p in sorted((root / "ue").iterdir()):
            crushed.append(float((_y255(p, studio=True) <= 5).mean()))
            clipped.append(float((_y255(root / "oe" / p.name, studio=True) >= 250).mean()))
    assert len(crushed) == 8
    assert MEF_CRUSH_UNDER[0] <= np.median(crushed) <= MEF_CRUSH_UNDER[1], crushed
    assert MEF_CLIP_OVER[0] <= np.median(clipped) <= MEF_CLIP_OVER[1], clipped


# ----------------------------------------------------------------------------------------- real data
@pytest.mark.realdata
@pytest.mark.parametrize("task,sub,n,hw", [
    ("vif", "vif/tno", 25, None), ("vif", "vif/roadscene", 50, None), ("mif", "mif/mri_spect", 73, (256, 256)),
    ("mif", "mif/mri_pet", 42, (256, 256)), ("mif", "mif/mri_ct", 21, (256, 256)),
    ("mef", "mef/u2fusion/dataset1", 5, None), ("mef", "mef/u2fusion/dataset2", 3, None),
    ("mff", "mff/lytro", 20, (520, 520)), ("mff", "mff/u2fusion", 3, (520, 520)),
])
def test_real_paired_layouts(shared_data, task, sub, n, hw):
    ds = build_dataset(task, shared_data / sub, "test")
    assert len(ds) == n
    s = ds[len(ds) // 2]
    assert s["a"].shape[0] == 1 and s["a"].shape == s["b"].shape and s["cbcr_a"].shape[0] == 2
    if hw is not None:
        assert tuple(s["a"].shape[-2:]) == hw
    assert 0.0 <= float(s["a"].min()) <= float(s["a"].max()) <= 1.0
    assert Path(s["paths"]["a"]).is_file() and Path(s["paths"]["b"]).is_file()
    if task == "mif" and "spect" in sub:  # colour SPECT keeps its chroma, grey MRI has neutral chroma
        assert float((s["cbcr_b"] - 0.5).abs().max()) > 0.05 and float((s["cbcr_a"] - 0.5).abs().max()) < 1e-3


@pytest.mark.realdata
def test_real_mef_sequences_pick_darkest_and_brightest(shared_data):
    ds = build_dataset("mef", shared_data / "mef/ifcnn_sequences", "test")
    assert sorted(ds.ids) == ["chair", "door", "garage", "house", "igloo", "window"]
    for i in range(len(ds)):
        rec = ds.samples[i]
        luma = rec.extra["luma"]
        assert len(rec.extra["sequence"]) >= 3
        s = ds[i]
        assert float(s["a"].mean()) < float(s["b"].mean())
        assert min(luma) == luma[rec.extra["sequence"].index(str(rec.a))]
        assert max(luma) == luma[rec.extra["sequence"].index(str(rec.b))]


@pytest.mark.realdata
@pytest.mark.parametrize("name,bands,size", [("imgIK.mat", 4, 320), ("imgGE1.mat", 4, 320), ("imgWV2.mat", 8, 320),
                                             ("WV3_example.mat", 8, 32)])
def test_real_pan_mat_wald_reduced(shared_data, name, bands, size):
    ds = build_dataset("pan", shared_data / "pan" / name, "test")
    s = ds[0]
    assert s["gt"].shape == (bands, size, size) and s["a"].shape == (bands, size, size)
    assert s["b"].shape == (1, size, size) and s["ms"].shape == (bands, size // 4, size // 4)
    assert s["max_value"] in (255.0, 2047.0)
    # Wald: the upsampled reduced MS is a blurred reference: far closer to it than each band's mean
    flat = s["gt"].mean(dim=(1, 2), keepdim=True)
    assert float((s["a"] - s["gt"]).abs().mean()) < float((flat - s["gt"]).abs().mean())


@pytest.mark.realdata
def test_real_hs_mat(shared_data):
    ds = build_dataset("hmif", shared_data / "hs", "test")
    assert sorted(ds.ids) == ["paris_data_hs_ms", "paris_data_hs_pan"]
    assert [Path(f).name for f, _ in ds.ignored_files] == ["ikonos_spec_resp.mat"]
    s = ds[ds.ids.index("paris_data_hs_ms")]
    assert s["gt"].shape == (128, 72, 72) and s["b"].shape == (9, 72, 72) and s["ms"].shape == (128, 18, 18)
    with pytest.raises(SampleError, match="wrong band count"):
        ds[ds.ids.index("paris_data_hs_pan")]  # HS + PAN (1 band) differs from HS + MS (9 bands)


# ----------------------------------------------------------------------------------------- augmentation
def _coord_sample(h=300, w=400):
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return {"id": "c", "a": (xx / (w - 1)).float()[None], "b": (yy / (h - 1)).float()[None],
            "gt": (xx / (w - 1)).float()[None], "mask": ((yy // 20) * 100 + xx // 20).long(),
            "cbcr_a": torch.full((2, h, w), 0.5), "cbcr_b": torch.full((2, h, w), 0.5)}, h, w


@pytest.mark.parametrize("task,size", [("vif", (224, 280)), ("mef", (256, 256)), ("mff", (256, 256))])
def test_augment_same_geometry_for_sources_gt_and_mask(task, size):
    from fusion.config import get_config

    s, h, w = _coord_sample()
    out = augment_sample(s, task, get_config(task), torch.Generator().manual_seed(3))
    assert out["a"].shape == (1, *size) and out["mask"].shape == size and out["mask"].dtype == torch.long
    x_src = (out["a"][0] * (w - 1)).round().long()
    y_src = (out["b"][0] * (h - 1)).round().long()
    assert torch.equal(out["a"], out["gt"])
    agree_x = ((x_src // 20 - out["mask"] % 100).abs() <= 1).float().mean()
    agree_y = ((y_src // 20 - out["mask"] // 100).abs() <= 1).float().mean()
    assert agree_x > 0.99 and agree_y > 0.99
    assert set(out["mask"].unique().tolist()) <= set(s["mask"].unique().tolist())  # nearest: no new labels
    # not the identity: a real crop happened, and a different seed gives a different crop
    other = augment_sample(s, task, get_config(task), torch.Generator().manual_seed(4))
    same = augment_sample(s, task, get_config(task), torch.Generator().manual_seed(3))
    assert torch.equal(same["a"], out["a"]) and not torch.equal(other["a"], out["a"])


def test_augment_mif_uncropped_and_pan_patch_aligned():
    from fusion.config import get_config

    s, h, w = _coord_sample(128, 128)
    assert augment_sample(s, "mif", get_config("mif"), torch.Generator()) is s
    ms = torch.rand(4, 32, 32, generator=torch.Generator().manual_seed(0))
    lms = ms.repeat_interleave(4, 1).repeat_interleave(4, 2)
    sample = {"a": lms, "gt": lms.clone(), "b": lms[:1].clone(), "ms": ms}
    out = augment_sample(sample, "pan", get_config("pan"), torch.Generator().manual_seed(1))
    assert out["a"].shape == (4, 64, 64) and out["ms"].shape == (4, 16, 16) and out["b"].shape == (1, 64, 64)
    assert torch.equal(out["ms"].repeat_interleave(4, 1).repeat_interleave(4, 2), out["a"])
    assert torch.equal(out["a"], out["gt"]) and torch.equal(out["b"], out["a"][:1])


def test_flip_mirrors_every_spatial_entry_and_is_off_by_default():
    """``cfg.data.flip``: half the crops mirrored left-right, sources, gt and mask alike; off, the draws (hence
    every existing recipe's crops) are unchanged."""
    from fusion.config import get_config
    from fusion.data.augment import random_hflip

    s, h, w = _coord_sample()
    cfg = get_config("mff")
    plain = augment_sample(s, "mff", cfg, torch.Generator().manual_seed(3))
    assert torch.equal(plain["a"], augment_sample(s, "mff", cfg, torch.Generator().manual_seed(3))["a"])
    flipped = 0
    for seed in range(20):
        ref = augment_sample(s, "mff", cfg, torch.Generator().manual_seed(seed))
        out = augment_sample(s, "mff", cfg.replace(flip=True), torch.Generator().manual_seed(seed))
        mirrored = torch.equal(out["a"], ref["a"].flip(-1))
        assert mirrored or torch.equal(out["a"], ref["a"])
        for k in ("b", "gt", "mask", "cbcr_a"):
            assert torch.equal(out[k], ref[k].flip(-1) if mirrored else ref[k])
        flipped += mirrored
    assert 4 <= flipped <= 16
    g = torch.Generator().manual_seed(0)
    outs = [random_hflip({"a": torch.arange(6.0).view(1, 2, 3), "id": "x"}, g)["a"][0, 0].tolist() for _ in range(8)]
    assert {tuple(o) for o in outs} == {(0.0, 1.0, 2.0), (2.0, 1.0, 0.0)}


def test_mef_exposure_push_scales_luma_within_the_gain_and_clips_at_white():
    from fusion.config import get_config
    from fusion.data.augment import push_exposures

    g = torch.Generator().manual_seed(0)
    a = torch.rand(1, 40, 50, generator=g) * 0.5 + 0.01
    b = torch.rand(1, 40, 50, generator=g) * 0.5 + 0.5
    s = {"a": a, "b": b, "cbcr_a": torch.full((2, 40, 50), 0.3), "cbcr_b": torch.full((2, 40, 50), 0.7)}
    gains_a, gains_b = [], []
    for seed in range(40):
        out = push_exposures(s, 2.0, torch.Generator().manual_seed(seed))
        ua = out["a"] / a                                  # one gain per image: a longer / shorter exposure
        assert float(ua.max() - ua.min()) < 1e-5 and 0.5 - 1e-6 <= float(ua[0, 0, 0]) <= 1.0 + 1e-6
        unclipped = out["b"] < 1.0
        vb = out["b"][unclipped] / b[unclipped]
        assert float(vb.max() - vb.min()) < 1e-5 and 1.0 - 1e-6 <= float(vb[0]) <= 2.0 + 1e-6
        assert float(out["b"].max()) <= 1.0 and bool((out["b"] >= b - 1e-7).all())
        assert out["cbcr_a"] is s["cbcr_a"] and out["cbcr_b"] is s["cbcr_b"]   # chroma untouched
        gains_a.append(float(ua[0, 0, 0]))
        gains_b.append(float(vb[0]))
    assert 10 < sum(x < 1 - 1e-6 for x in gains_a) < 30 and 10 < sum(x > 1 + 1e-6 for x in gains_b) < 30
    cfg = get_config("mef", crop_size=(32, 32), crop_scale=(0.5, 1.0))
    plain = augment_sample(s, "mef", cfg, torch.Generator().manual_seed(1))       # exposure_gain 1: no push
    pushed = augment_sample(s, "mef", cfg.replace(exposure_gain=2.0), torch.Generator().manual_seed(1))
    assert torch.equal(plain["cbcr_a"], pushed["cbcr_a"]) and torch.allclose(
        plain["a"] / pushed["a"], (plain["a"] / pushed["a"]).flatten()[0].expand_as(plain["a"]), atol=1e-5)
    with pytest.raises(ValueError, match="exposure_gain"):
        get_config("mef", exposure_gain=0.5)


def test_random_resized_crop_box_ranges():
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        top, left, ch, cw = random_resized_crop_box(300, 400, (0.8, 1.0), (0.8, 1.4), g)
        assert 0 <= top and top + ch <= 300 and 0 <= left and left + cw <= 400
        assert 0.79 * 120000 <= ch * cw <= 1.01 * 120000 and 0.78 <= cw / ch <= 1.42


def test_realmff_release_layout_with_split_list_gt_suffix_and_masks(tmp_path):
    from fusion.config import get_config

    root = _pair_dir(tmp_path, n=4, roles=("FAR", "NEAR"))
    (root / "GT").mkdir()
    (root / "mask").mkdir()
    for i in range(4):
        Image.fromarray(np.full((40, 48, 3), 60 * i, np.uint8)).save(root / "GT" / f"{i:02d}_F.png")
        Image.fromarray(np.full((40, 48), 17 + i, np.uint8)).save(root / "mask" / f"{i:02d}.png")
    (root / "train.txt").write_text("00.png\n02.png\n")
    (root / "test.txt").write_text("01.png\n03.png\n")
    train = build_dataset("mff", root, "train", cfg=get_config("mff"))
    test = build_dataset("mff", root, "test")
    assert train.ids == ["00", "02"] and test.ids == ["01", "03"]
    s = train[1]
    assert float(s["gt"].mean()) == pytest.approx(120 / 255, abs=1e-3)
    assert s["mask"].dtype == torch.long and s["mask"].shape == (40, 48) and int(s["mask"].max()) == 19
    assert int(test[1]["mask"].max()) == 20  # the vocabulary's last class keeps its id (ids 1..20)


def test_class_ids_are_never_merged(tmp_path):
    """MEF/MFF class maps: ids 1..20 each get their own one-hot channel; an id beyond the vocabulary is an
    error naming the label file (it used to be clamped into class 19)."""
    from fusion.config import get_config
    from fusion.model.inputs import mask_to_channels

    cfg = get_config("mff")
    root = _pair_dir(tmp_path, n=2, roles=("FAR", "NEAR"))
    (root / "mask").mkdir()
    lab = np.zeros((40, 48), np.uint8)
    lab[:, 16:32], lab[:, 32:] = 19, 20
    Image.fromarray(lab).save(root / "mask" / "00.png")
    Image.fromarray(np.full((40, 48), 21, np.uint8)).save(root / "mask" / "01.png")
    ds = build_dataset("mff", root, "all", cfg=cfg)
    cmap = ds[0]["mask"]
    assert sorted(torch.unique(cmap).tolist()) == [0, 19, 20]
    onehot = mask_to_channels(cmap[None], cfg, 1, (40, 48), torch.float32)
    assert onehot.shape == (1, cfg.guidance.mask_classes, 40, 48)
    assert float(onehot[0, :, :, :16].sum()) == 0  # background sets no channel
    assert bool((onehot[0, 18, :, 16:32] == 1).all()) and float(onehot[0, 18, :, 32:].sum()) == 0  # class 19
    assert bool((onehot[0, 19, :, 32:] == 1).all()) and float(onehot[0, 19, :, :32].sum()) == 0   # class 20
    with pytest.raises(SampleError, match=r"01\.png.*outside the task's vocabulary"):
        ds[1]


def test_llvip_and_suffix_pair_layouts(tmp_path):
    rng = np.random.default_rng(0)
    for role in ("visible", "infrared"):
        for split, names in (("train", ("010001", "010002")), ("test", ("190001",))):
            (tmp_path / "llvip" / role / split).mkdir(parents=True)
            for n in names:
                Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(
                    tmp_path / "llvip" / role / split / f"{n}.jpg")
    for role, v in (("source_1", 10), ("source_2", 20), ("full_clear", 30)):  # MFI-WHU
        (tmp_path / "whu" / role).mkdir(parents=True)
        Image.fromarray(np.full((8, 8), v, np.uint8)).save(tmp_path / "whu" / role / "1.jpg")
    whu = build_dataset("mff", tmp_path / "whu", "test")[0]
    assert [round(float(whu[k].mean()) * 255) for k in ("a", "b", "gt")] == [10, 20, 30]
    train = build_dataset("vif", tmp_path / "llvip", "train")
    assert train.ids == ["010001", "010002"] and "infrared/train" in train[0]["paths"]["a"]
    assert build_dataset("vif", tmp_path / "llvip", "test").ids == ["190001"]
    (tmp_path / "mefb").mkdir()
    for n, (ua, ob) in {"house": (40, 200), "lamp": (20, 180)}.items():
        Image.fromarray(np.full((16, 16, 3), ua, np.uint8)).save(tmp_path / "mefb" / f"{n}_A.png")
        Image.fromarray(np.full((16, 16, 3), ob, np.uint8)).save(tmp_path / "mefb" / f"{n}_B.png")
    ds = build_dataset("mef", tmp_path / "mefb", "test")
    assert ds.ids == ["house", "lamp"] and float(ds[1]["a"].mean()) == pytest.approx(20 / 255, abs=1e-4)


def test_pancollection_h5_scaled_per_file(tmp_path):
    import h5py

    rng = np.random.default_rng(0)
    gt = np.stack([rng.uniform(0, 1500, (4, 64, 64)), rng.uniform(0, 800, (4, 64, 64))]).astype(np.float64)
    ms = gt[:, :, 2::4, 2::4]
    with h5py.File(tmp_path / "train_gf2.h5", "w") as f:
        f["gt"], f["ms"], f["lms"] = gt, ms, gt * 0.9
        f["pan"] = gt.mean(1, keepdims=True)
    with h5py.File(tmp_path / "test_gf2_multiExm1.h5", "w") as f:
        f["ms"], f["lms"], f["pan"] = ms[:1], gt[:1], gt[:1, :1]
    train = build_dataset("pan", tmp_path, "train")
    assert train.ids == ["train_gf2_00000", "train_gf2_00001"]
    s0, s1 = train[0], train[1]
    assert s0["max_value"] == s1["max_value"] == 2047.0  # one range per file, not per sample
    assert torch.allclose(s1["gt"], torch.from_numpy(gt[1] / 2047.0).float())
    assert s0["ms"].shape == (4, 16, 16) and s0["b"].shape == (1, 64, 64)
    test = build_dataset("pan", tmp_path, "test")
    assert len(test) == 1 and "gt" not in test[0]
    assert build_dataset("pan", tmp_path / "train_gf2.h5", "test", max_value=4095.0)[0]["max_value"] == 4095.0


def test_single_hs_cube_mat_region_split(tmp_path):
    import scipy.io as sio

    rng = np.random.default_rng(0)
    cube = rng.uniform(0, 4000, (100, 64, 20)).round()
    sio.savemat(tmp_path / "chikusei_small.mat", {"chikusei": cube})
    train = build_dataset("hmif", tmp_path / "chikusei_small.mat", "train")
    test = build_dataset("hmif", tmp_path / "chikusei_small.mat", "test")
    tr, te = train[0], test[0]
    assert tr["gt"].shape == (20, 60, 64) and te["gt"].shape == (20, 40, 64)  # top 60 % / rest, ratio-4 multiples
    assert tr["b"].shape == (3, 60, 64) and tr["ms"].shape == (20, 15, 16) and tr["max_value"] == 4095.0
    assert torch.allclose(tr["gt"], torch.from_numpy(cube[:60].transpose(2, 0, 1) / 4095.0).float())
    tr["gt"].zero_()  # samples own their memory: the cached scene is untouched
    assert float(train[0]["gt"].max()) > 0.5


# ----------------------------------------------------------------------------------------- bad input
def _pair_dir(root: Path, n=3, size=(40, 48), roles=("ir", "vi")) -> Path:
    rng = np.random.default_rng(0)
    for r in roles:
        (root / r).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(root / r / f"{i:02d}.png")
    return root


def test_corrupt_image_is_reported_by_name(tmp_path):
    root = _pair_dir(tmp_path)
    (root / "vi" / "01.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    ds = build_dataset("vif", root, "test")
    ds[0]
    with pytest.raises(SampleError, match=r"01\.png") as err:
        ds[1]
    assert "'01'" in str(err.value) and err.value.sample_id == "01"
    assert [i for i, _ in ds.check()] == ["01"]
    skipping = build_dataset("vif", root, "test", on_error="skip")
    assert skipping.ids == ["00", "02"] and skipping.skipped[0][0] == "01" and "01.png" in skipping.skipped[0][1]


def test_size_mismatch_and_missing_file_name_the_file(tmp_path):
    root = _pair_dir(tmp_path)
    Image.fromarray(np.zeros((30, 30, 3), np.uint8)).save(root / "ir" / "02.png")
    ds = build_dataset("vif", root, "test")
    with pytest.raises(SampleError, match=r"size mismatch .*02\.png"):
        ds[2]
    (root / "vi" / "00.png").unlink()
    with pytest.raises(SampleError, match=r"ir/00\.png: no matching file"):
        build_dataset("vif", root, "test")
    ds = build_dataset("vif", root, "test", on_error="skip")
    assert ds.ids == ["01"] and {i for i, _ in ds.skipped} == {"00", "02"}
    with pytest.raises(FileNotFoundError, match="nowhere"):
        build_dataset("vif", tmp_path / "nowhere", "test")
    (root / "vi" / "01.png").unlink()  # vanishes after the dataset was built
    with pytest.raises(SampleError, match=r"vi/01\.png: file not found"):
        ds[0]


def test_nan_in_spectral_file_is_reported(tmp_path):
    import scipy.io as sio

    ms = np.ones((8, 8, 4)) * 100.0
    ms[2, 3, 1] = np.nan
    sio.savemat(tmp_path / "bad.mat", {"I_MS": ms, "I_PAN": np.ones((32, 32)) * 100.0})
    ds = build_dataset("pan", tmp_path / "bad.mat", "test")
    with pytest.raises(SampleError, match=r"bad\.mat.*non-finite"):
        ds[0]


# ----------------------------------------------------------------------------------------- manifests
def _write_manifest(root: Path, out: Path, ids, *, tamper: str | None = None, error_id: str | None = None,
                    prefix: str = ""):
    import manifests

    rng = np.random.default_rng(1)
    rows = []
    for i, sid in enumerate(ids):
        pa, pb = root / "ir" / f"{sid}.png", root / "vi" / f"{sid}.png"
        cmap = np.zeros((40, 48), np.uint8)
        cmap[5:15, 10:30] = 2
        row = {"sample_id": prefix + sid, "dataset": "toy", "split": "test", "task": "vif", "status": "ok",
               "path_a": f"ir/{sid}.png", "path_b": f"vi/{sid}.png",
               "sha256_a": manifests.sha256_file(pa), "sha256_b": manifests.sha256_file(pb),
               "height": 40, "width": 48, "caption_a": "a", "caption_b": "b", "text_encoder": "t5-small",
               "text_a": rng.standard_normal((3 + i, 512)).astype(np.float32),
               "text_b": rng.standard_normal((5, 512)).astype(np.float32), "class_map": cmap}
        if sid == tamper:
            row["sha256_b"] = "0" * 64
        if sid == error_id:
            row = {k: row[k] for k in ("sample_id", "dataset", "split", "task", "path_a", "path_b")}
            row.update(status="error", error=f"{pa}: cannot decode")
        rows.append(row)
    manifests.write_table_atomic(manifests.rows_to_table(rows), out)
    return out


def test_manifest_join_text_mask_and_unannotated(tmp_path):
    root = _pair_dir(tmp_path / "data", n=4)
    man = _write_manifest(root, tmp_path / "m.parquet", ["00", "01", "03"], error_id="03", prefix="all/")
    ds = build_dataset("vif", root, "test", manifest=man)
    assert ds.unannotated_count == 2 and sorted(ds.unannotated_ids) == ["02", "03"]
    s0, s1, s2 = ds[0], ds[1], ds[2]
    assert s0["text"].shape == (5, 1024) and s0["text_mask"].all()
    assert torch.equal(s0["text"][3:, :512], torch.zeros(2, 512))  # a's 3 tokens padded to b's 5
    assert s0["mask"].shape == (1, 40, 48) and float(s0["mask"].sum()) == 200.0
    assert "text" not in s2 and "mask" not in s2
    batch = collate([s0, s1, s2])
    assert batch["text"].shape == (3, 5, 1024)
    assert batch["text_mask"].tolist() == [[True] * 5, [True] * 5, [False] * 5]
    assert batch["has_mask"].tolist() == [True, True, False] and batch["mask"].shape == (3, 1, 40, 48)
    assert ds.guidance_summary()["error_rows"] == 1
    mef = build_dataset("mef", _pair_dir(tmp_path / "mef", n=2, roles=("ue", "oe")), "test")
    assert mef.unannotated_count == 2


def test_manifest_hash_mismatch(tmp_path):
    root = _pair_dir(tmp_path / "data", n=3)
    man = _write_manifest(root, tmp_path / "m.parquet", ["00", "01", "02"], tamper="01", prefix="all/")
    with pytest.raises(ManifestMismatchError, match=r"vi/01\.png"):
        build_dataset("vif", root, "test", manifest=man)
    ds = build_dataset("vif", root, "test", manifest=man, hash_mismatch="skip")
    assert ds.unannotated_ids == ["01"] and ds.guidance_summary()["hash_mismatches"] == 1
    assert "text" not in ds[1] and "text" in ds[0]


def test_manifest_join_is_by_key_only(tmp_path):
    """Rows join by "<split>/<id>" exactly: a bare stem or a row of another split does not guide a sample."""
    root = _pair_dir(tmp_path / "data", n=2)
    man = _write_manifest(root, tmp_path / "m.parquet", ["00", "01"], prefix="")
    assert build_dataset("vif", root, "test", manifest=man).unannotated_ids == ["00", "01"]
    man = _write_manifest(root, tmp_path / "m2.parquet", ["00", "01"], prefix="train/")
    assert build_dataset("vif", root, "test", manifest=man).unannotated_ids == ["00", "01"]


def test_manifest_mif_two_channel_mask(tmp_path):
    import manifests

    root = _pair_dir(tmp_path / "data", n=1, roles=("MRI", "SPECT"))
    inst = np.zeros((3, 40, 48), bool)
    inst[0, :10], inst[1, 20:], inst[2, :, :5] = True, True, True
    row = {"sample_id": "all/00", "dataset": "toy", "split": "all", "task": "mif", "status": "ok",
           "path_a": "MRI/00.png", "path_b": "SPECT/00.png", "height": 40, "width": 48,
           "masks": inst, "instance_modality": ["a", "b", "both"], "labels": ["x", "y", "z"],
           "text_a": np.ones((2, 512), np.float32)}
    manifests.write_table_atomic(manifests.rows_to_table([row]), tmp_path / "m.parquet")
    s = build_dataset("mif", root, "test", manifest=tmp_path / "m.parquet")[0]
    assert s["mask"].shape == (2, 40, 48)
    assert torch.equal(s["mask"][0].bool(), torch.from_numpy(inst[0] | inst[2]))
    assert torch.equal(s["mask"][1].bool(), torch.from_numpy(inst[1] | inst[2]))
    assert s["text"].shape == (2, 1024) and float(s["text"][:, 512:].abs().sum()) == 0.0  # b caption absent


# ----------------------------------------------------------------------------------------- collate
def test_collate_pads_text_and_keeps_lists():
    def sample(i, L):
        s = {"id": f"s{i}", "paths": {"a": f"{i}.png"}, "a": torch.full((1, 4, 4), float(i)),
             "b": torch.zeros(1, 4, 4)}
        if L:
            s["text"], s["text_mask"] = torch.ones(L, 8) * (i + 1), torch.ones(L, dtype=torch.bool)
        return s

    batch = collate([sample(0, 2), sample(1, 4), sample(2, 0)])
    assert batch["id"] == ["s0", "s1", "s2"] and batch["paths"][1] == {"a": "1.png"}
    assert batch["a"].shape == (3, 1, 4, 4) and batch["text"].shape == (3, 4, 8)
    assert batch["text_mask"].tolist() == [[True, True, False, False], [True] * 4, [False] * 4]
    assert float(batch["text"][0, 2:].abs().sum()) == 0.0 and float(batch["text"][1].mean()) == 2.0
    fixed = collate([sample(0, 2), sample(1, 4)], text_len=3)
    assert fixed["text"].shape == (2, 3, 8) and fixed["text_mask"].tolist() == [[True, True, False], [True] * 3]
    assert "text" not in collate([sample(0, 0)])
    s = sample(3, 0)
    s["a"] = torch.zeros(1, 5, 5)
    with pytest.raises(ValueError, match="different shapes"):
        collate([sample(0, 0), s])
