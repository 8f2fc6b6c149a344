"""Synthetic multi-focus pairs (fusion.data.defocus): hand-made focus maps, the split, errors, a training run."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter

from fusion.config import get_config, get_recipe
from fusion.data.defocus import DefocusDataset, defocus_pair, find_focus_folders, focus_mask


def _photos(root: Path, n: int, size: int = 64, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = np.kron(rng.uniform(0, 255, (size // 8, size // 8, 3)), np.ones((8, 8, 1)))
        Image.fromarray(img.astype(np.uint8)).save(root / f"{i:03d}.png")


@pytest.fixture()
def photo_tree(tmp_path: Path) -> Path:
    root = tmp_path / "vif"
    _photos(root / "alpha" / "vi", 10)
    _photos(root / "beta" / "visible", 5, seed=1)
    (root / "alpha" / "ir").mkdir()  # other roles are ignored
    return root


def _cfg(**kw):
    return get_recipe("mff", "cpu").apply(get_config("mff", **kw))


def test_hand_made_focus_maps_give_sharp_and_blurred_sides():
    rng = np.random.default_rng(0)
    img = np.random.default_rng(1).random((40, 50, 3)).astype(np.float32)
    ones, zeros = np.ones((40, 50), np.float32), np.zeros((40, 50), np.float32)
    s = np.random.default_rng(0).uniform(0.8, 4.0, size=2)  # the sigmas defocus_pair draws after the map
    far, near, m = defocus_pair(img, rng, mask=ones)
    assert np.array_equal(m, ones)
    np.testing.assert_allclose(near, img, atol=1e-6)            # everything in focus in B
    ref = np.stack([gaussian_filter(img[..., c], s[0], mode="reflect", truncate=4.0) for c in range(3)], -1)
    assert np.abs(far - ref).mean() < 2e-3                       # everything blurred by s_far in A
    far, near, _ = defocus_pair(img, np.random.default_rng(0), mask=zeros)
    np.testing.assert_allclose(far, img, atol=1e-6)
    ref = np.stack([gaussian_filter(img[..., c], s[1], mode="reflect", truncate=4.0) for c in range(3)], -1)
    assert np.abs(near - ref).mean() < 2e-3
    half = np.zeros((40, 50), np.float32)
    half[:, :25] = 1                                             # left in focus in B, right in focus in A
    far, near, _ = defocus_pair(img, np.random.default_rng(0), mask=half)
    np.testing.assert_allclose(near[:, :20], img[:, :20], atol=1e-4)
    np.testing.assert_allclose(far[:, -15:], img[:, -15:], atol=1e-4)
    assert np.abs(far[:, :10] - img[:, :10]).mean() > 0.05 and np.abs(near[:, -10:] - img[:, -10:]).mean() > 0.05


def test_focus_mask_covers_part_of_the_image():
    for seed in range(20):
        m = focus_mask(64, 80, np.random.default_rng(seed))
        assert m.shape == (64, 80) and set(np.unique(m)) <= {0.0, 1.0}
        assert 0.25 <= m.mean() <= 0.75


def test_dataset_split_determinism_and_sample_dict(photo_tree):
    assert [n for n, _ in find_focus_folders([photo_tree])] == ["alpha", "beta"]
    cfg = _cfg(val_fraction=0.2, dataset_weights={"beta": 2.0})
    tr = DefocusDataset([photo_tree], "train", cfg=cfg, train=True)
    va = DefocusDataset([photo_tree], "val", cfg=cfg)
    assert set(tr.ids).isdisjoint(va.ids) and len(tr) + len(va) == 15 and len(va) >= 2
    w = dict(zip(tr.ids, tr.sample_weights))
    assert sum(v for k, v in w.items() if k.startswith("beta/")) == pytest.approx(2.0)
    v1, v2 = va[0], va[0]
    for k in ("a", "b", "gt"):
        assert v1[k].shape == (1, 64, 64) and torch.equal(v1[k], v2[k])  # validation pairs are fixed
    assert not torch.equal(v1["a"], v1["b"])
    torch.manual_seed(0)
    t1 = tr[0]
    torch.manual_seed(1)
    t2 = tr[0]
    assert t1["a"].shape == (1, 128, 128) and t1["gt"].shape == (1, 128, 128)  # augment_sample's crop size
    assert not torch.equal(t1["a"], t2["a"])                     # a new map and blur per draw


def test_errors_name_the_roots_and_the_file(photo_tree, tmp_path):
    from fusion.data.multi import training_sets
    from rwkvfusion_io.images import SampleError

    with pytest.raises(ValueError, match="no all-in-focus photographs"):
        DefocusDataset([tmp_path / "vif" / "alpha" / "ir"], "train", cfg=_cfg())
    with pytest.raises(ValueError, match="task 'vif'"):
        training_sets("vif", [photo_tree], "train", cfg=get_config("vif", synthetic="defocus"))
    bad = photo_tree / "alpha" / "vi" / "000.png"
    bad.write_bytes(b"not a png")
    ds = DefocusDataset([photo_tree], "train", cfg=_cfg(val_fraction=0.0))
    with pytest.raises(SampleError, match="000.png"):
        ds[ds.ids.index("alpha/000")]


def test_mff_recipe_trains_on_synthetic_pairs(photo_tree, tmp_path):
    from fusion.train.runner import run_training

    out = tmp_path / "run"
    summary = run_training("mff", out, data=[photo_tree], recipe="cpu", steps=2, batch_size=2, evaluate=False,
                           progress=False, checkpoint_every=2, device="cpu",
                           overrides={"crop_size": (32, 32), "base_channels": 8, "val_fraction": 0.2})
    assert summary["steps"] == 2 and np.isfinite(summary["last_loss"])
    assert (out / "val.json").is_file() and (out / "best.safetensors").is_file()
