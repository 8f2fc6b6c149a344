"""``fuse``: any size kept, colour restored (grey+colour, colour+colour), folders matched by name, clear errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import typer
from PIL import Image
from typer.testing import CliRunner

from fusion.train.cli import register
from fusion.train.inference import fuse_arrays, pair_inputs

APP = typer.Typer()
register(APP)


def _invoke(*args: str):
    return CliRunner().invoke(APP, ["fuse", *args])


def _save(path, arr) -> None:
    Image.fromarray(np.asarray(arr, np.uint8)).save(path)


def _rgb(h, w, seed):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h, w, 3))
    return np.clip(base * 0.5 + np.array([90, 40, 20]), 0, 255).astype(np.uint8)


def _ycbcr(rgb_u8):
    from rwkvfusion_io.color import rgb_to_ycbcr

    return np.asarray(rgb_to_ycbcr(np.asarray(rgb_u8, np.float64) / 255.0))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """An (untrained) MEF model saved the way training saves it."""
    from fusion.model.build import build_model
    from fusion.train.checkpoint import export_checkpoint

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint.pt"
    return export_checkpoint(build_model("mef"), path)


def test_model_fuse_keeps_odd_sizes_and_colour(checkpoint, tmp_path):
    h, w = 37, 53
    grey = np.random.default_rng(1).integers(0, 256, (h, w)).astype(np.uint8)
    colour = _rgb(h, w, 2)
    _save(tmp_path / "a.png", grey)
    _save(tmp_path / "b.png", colour)
    res = _invoke("--checkpoint", str(checkpoint), "--a", str(tmp_path / "a.png"), "--b",
                  str(tmp_path / "b.png"), "--out", str(tmp_path / "f.png"), "--device", "cpu")
    assert res.exit_code == 0, res.output
    out = np.asarray(Image.open(tmp_path / "f.png"))
    assert out.shape == (h, w, 3)
    # grey + colour: the fused chroma is the colour source's (up to 8-bit rounding)
    cbcr_out, cbcr_src = _ycbcr(out)[..., 1:], _ycbcr(colour)[..., 1:]
    assert np.abs(cbcr_out - cbcr_src).mean() < 0.01
    # two grey sources -> a grey image of the same size
    _save(tmp_path / "c.png", grey[::-1])
    res = _invoke("--checkpoint", str(checkpoint), "--a", str(tmp_path / "a.png"), "--b",
                  str(tmp_path / "c.png"), "--out", str(tmp_path / "g.png"), "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert np.asarray(Image.open(tmp_path / "g.png")).shape == (h, w)


def test_colour_plus_colour_uses_fuse_chroma_and_average_y(tmp_path):
    from rwkvfusion_io.color import fuse_chroma

    a, b = _rgb(21, 30, 3), _rgb(21, 30, 4)
    fused = fuse_arrays(lambda ya, yb: 0.5 * (ya + yb), a / 255.0, b / 255.0)
    ya, yb = _ycbcr(a), _ycbcr(b)
    got = _ycbcr(np.clip(fused, 0, 1) * 255.0)
    assert fused.shape == (21, 30, 3)
    np.testing.assert_allclose(got[..., 0], 0.5 * (ya[..., 0] + yb[..., 0]), atol=2e-3)
    np.testing.assert_allclose(got[..., 1:], fuse_chroma(ya[..., 1:], yb[..., 1:]), atol=2e-3)


def test_folders_are_matched_by_name_with_a_baseline(tmp_path):
    for d in ("ue", "oe"):
        (tmp_path / d).mkdir()
    for i, (h, w) in enumerate([(17, 25), (40, 31)]):
        _save(tmp_path / "ue" / f"s{i}.png", _rgb(h, w, i))
        _save(tmp_path / "oe" / f"s{i}.jpg", _rgb(h, w, i + 10))
    res = _invoke("--method", "average", "--a", str(tmp_path / "ue"), "--b", str(tmp_path / "oe"), "--out",
                  str(tmp_path / "out"))
    assert res.exit_code == 0, res.output
    assert np.asarray(Image.open(tmp_path / "out" / "s0.png")).shape == (17, 25, 3)
    assert np.asarray(Image.open(tmp_path / "out" / "s1.png")).shape == (40, 31, 3)


def test_mismatched_pairs_are_named(tmp_path, checkpoint):
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
    _save(tmp_path / "a" / "one.png", _rgb(8, 8, 0))
    _save(tmp_path / "b" / "two.png", _rgb(8, 8, 1))
    with pytest.raises(ValueError, match="one.png.*two.png"):
        pair_inputs(tmp_path / "a", tmp_path / "b")
    res = _invoke("--method", "average", "--a", str(tmp_path / "a"), "--b", str(tmp_path / "b"), "--out",
                  str(tmp_path / "o"))
    assert res.exit_code == 2 and "one.png" in res.output and "two.png" in res.output
    # same name, different sizes: both files and sizes in the message
    _save(tmp_path / "b" / "one.png", _rgb(9, 8, 1))
    (tmp_path / "b" / "two.png").unlink()
    res = _invoke("--checkpoint", str(checkpoint), "--a", str(tmp_path / "a"), "--b", str(tmp_path / "b"),
                  "--out", str(tmp_path / "o"), "--device", "cpu")
    assert res.exit_code == 1 and "8x8" in res.output and "8x9" in res.output
    # neither or both of --checkpoint/--method; unknown method
    assert _invoke("--a", "x", "--b", "y", "--out", "z").exit_code == 2
    res = _invoke("--method", "nope", "--a", str(tmp_path / "a"), "--b", str(tmp_path / "a"), "--out", "z")
    assert res.exit_code == 2 and "average" in res.output


@pytest.mark.realdata  # reads ../shared/data; the shared_data fixture skips when it is absent
def test_fuse_real_mef_pairs_keeps_size(shared_data, tmp_path):
    src = shared_data / "mef" / "u2fusion" / "dataset2"
    res = _invoke("--method", "mertens", "--a", str(src / "ue"), "--b", str(src / "oe"), "--out",
                  str(tmp_path / "fused"))
    assert res.exit_code == 0, res.output
    for p in sorted((src / "ue").iterdir()):
        assert Image.open(tmp_path / "fused" / f"{p.stem}.png").size == Image.open(p).size


def test_manifest_guidance_is_used_and_hashes_checked(checkpoint, tmp_path):
    import manifests

    root = tmp_path / "data"
    for d in ("ue", "oe"):
        (root / d).mkdir(parents=True)
    h, w = 40, 48
    _save(root / "ue" / "s0.png", _rgb(h, w, 5) // 3)
    _save(root / "oe" / "s0.png", np.clip(_rgb(h, w, 5).astype(int) * 2, 0, 255))
    cmap = np.zeros((h, w), np.uint8)
    cmap[5:30, 8:40] = 3
    row = {"sample_id": "s0", "dataset": "toy", "split": "test", "task": "mef", "status": "ok",
           "path_a": "ue/s0.png", "path_b": "oe/s0.png", "height": h, "width": w,
           "sha256_a": manifests.sha256_file(root / "ue" / "s0.png"),
           "sha256_b": manifests.sha256_file(root / "oe" / "s0.png"), "caption_a": "a dark room",
           "text_encoder": "t5-small", "text_a": np.ones((4, 512), np.float32), "class_map": cmap}
    man = manifests.write_table_atomic(manifests.rows_to_table([row]), tmp_path / "m.parquet")
    args = ["--checkpoint", str(checkpoint), "--a", str(root / "ue"), "--b", str(root / "oe"), "--device", "cpu"]
    assert _invoke(*args, "--out", str(tmp_path / "plain")).exit_code == 0
    res = _invoke(*args, "--out", str(tmp_path / "guided"), "--manifest", str(man))
    assert res.exit_code == 0, res.output
    plain = np.asarray(Image.open(tmp_path / "plain" / "s0.png"), float)
    guided = np.asarray(Image.open(tmp_path / "guided" / "s0.png"), float)
    assert guided.shape == plain.shape == (h, w, 3)
    assert np.abs(guided - plain).max() > 0  # the class map reached the model
    # a changed source file no longer matches the manifest's sha256: error naming the file
    _save(root / "oe" / "s0.png", _rgb(h, w, 6))
    res = _invoke(*args, "--out", str(tmp_path / "bad"), "--manifest", str(man))
    assert res.exit_code != 0
    assert "s0.png" in (res.output + repr(res.exception))
