"""fusion.evaluation: its means equal fusion.metrics computed directly, and bench quality, the metrics CLI and the
evaluation module agree on one fused folder; rwkvfusion_io.layouts.fusion_pairs on a synthetic data root."""
from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fusion import evaluation as E
from fusion.metrics import DEFAULT_FUSION_METRICS, FUSION_METRICS
from rwkvfusion_io.layouts import fusion_pairs


def _pairs(seed: int = 0) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Two textured 24x24 grey pairs on 8-bit levels (k / 255)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(2):
        a = rng.integers(0, 256, (24, 24)).astype(np.float64) / 255.0
        b = np.clip(a[::-1] * 0.6 + rng.integers(0, 80, (24, 24)) / 255.0, 0, 1)
        out.append((f"s/{i}", a, np.round(b * 255.0) / 255.0))
    return out


def test_means_equal_the_metrics_computed_directly():
    pairs = _pairs()
    methods = {"max": np.maximum, "half": lambda a, b: np.full_like(a, 0.5)}
    scores = E.fusion_pair_scores(pairs, methods)
    table = E.means(scores.summary())
    for name in DEFAULT_FUSION_METRICS:  # independent: the registry's functions on the 0..255 planes, averaged
        direct = np.mean([FUSION_METRICS[name](np.maximum(a, b) * 255.0, a * 255.0, b * 255.0) for _, a, b in pairs])
        assert table["max"][name] == pytest.approx(direct, rel=1e-12, abs=1e-12), name
    # closed form: a constant image has no entropy, spread or gradients
    for name in ("EN", "SD", "SF", "AG"):
        assert table["half"][name] == pytest.approx(0.0, abs=1e-12), name
    s = scores.summary()["max"]["SD"]
    sd = [np.std(np.maximum(a, b) * 255.0) for _, a, b in pairs]
    assert s["n"] == 2 and s["mean"] == pytest.approx(np.mean(sd)) and s["std"] == pytest.approx(np.std(sd))
    assert list(scores.per_item) == ["s/0", "s/1"] and set(scores.seconds) == {"max", "half"}


def test_summarise_best_and_round_robin():
    rows = [{"x": 1.0, "y": float("nan")}, {"x": 3.0}]
    s = E.summarise(rows)
    assert s["x"] == {"mean": 2.0, "std": 1.0, "n": 2}
    assert s["y"]["n"] == 0 and np.isnan(s["y"]["mean"]) and np.isnan(s["y"]["std"])
    assert "y" not in E.summarise(rows, keep_empty=False)
    assert np.isnan(E.summarise(rows, drop_nan=False)["y"]["mean"])
    table = {"m1": {"Qabf": 0.5, "Qcv": 10.0}, "m2": {"Qabf": 0.7, "Qcv": 20.0, "SF": float("nan")}}
    assert E.best_per_metric(table, ["Qabf", "Qcv", "SF"]) == {"Qabf": "m2", "Qcv": "m1"}
    assert E.take_round_robin([[1, 2, 3], [10], [20, 21]], 4) == [1, 10, 20, 2]


def test_as_fuser_dispatch():
    from fusion.baselines import get_method

    assert E.as_fuser("choose-max") is get_method("choose-max").fn
    fn = lambda a, b: a  # noqa: E731
    assert E.as_fuser(fn) is fn
    import torch

    class Mean(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1))

        def forward(self, a, b, text=None, text_mask=None, mask=None):
            return self.w * 0.5 * (a + b)

    f = E.as_fuser(Mean())
    a, b = np.zeros((8, 6)), np.ones((8, 6))
    y = f(a, b)
    assert y.shape == (8, 6) and y.dtype == np.float32 and np.allclose(y, 0.5)
    assert f(np.zeros((3, 8, 6)), np.ones((1, 8, 6))).shape == (3, 8, 6)


def _write_tree(root: Path, pairs) -> None:
    for sub in ("ir", "vi"):
        (root / "vif" / "tno" / sub).mkdir(parents=True)
    for pid, a, b in pairs:
        stem = pid.split("/")[1]
        Image.fromarray(np.rint(a * 255).astype(np.uint8)).save(root / "vif" / "tno" / "ir" / f"{stem}.png")
        Image.fromarray(np.rint(b * 255).astype(np.uint8)).save(root / "vif" / "tno" / "vi" / f"{stem}.png")


def test_bench_metrics_cli_and_evaluation_agree_on_one_fused_folder(tmp_path, monkeypatch):
    import fusion.baselines
    import fusion.bench.quality as Q
    from fusion.bench.settings import BenchSettings
    from fusion.metrics.cli import run_metrics

    pairs = _pairs(1)
    _write_tree(tmp_path, pairs)
    # bench quality with one method (choose-max: 8-bit exact output), no checkpoints or bundled model
    monkeypatch.setattr(fusion.baselines, "methods_for", lambda task: [types.SimpleNamespace(name="max",
                                                                                            fn=np.maximum)])
    monkeypatch.setattr(Q, "find_checkpoints", lambda task: ([], []))
    monkeypatch.setattr(Q, "_bundled_fuser", lambda task, notes: None)
    bench = Q._quality_fusion("vif", tmp_path, BenchSettings(max_pairs=8, max_side=512))
    assert bench["pairs"] == ["tno/0", "tno/1"]
    # the same fused images as a folder, scored by the metrics CLI
    fused_dir = tmp_path / "fused" / "max"
    fused_dir.mkdir(parents=True)
    for pid, a, b in pairs:
        Image.fromarray(np.rint(np.maximum(a, b) * 255).astype(np.uint8)).save(fused_dir / f"{pid[2:]}.png")
    tno = tmp_path / "vif" / "tno"
    rep = run_metrics("vif", [fused_dir], tno / "ir", tno / "vi", progress=False)
    assert not rep.problems
    direct = E.means(E.fusion_pair_scores(pairs, {"max": np.maximum}).summary())["max"]
    for name in DEFAULT_FUSION_METRICS:
        cli = rep.summary["max"][name][0]
        assert bench["summary"]["max"][name]["mean"] == pytest.approx(cli, rel=1e-9, abs=1e-12), name
        assert direct[name] == pytest.approx(cli, rel=1e-9, abs=1e-12), name


def test_fusion_pairs_on_a_synthetic_root(tmp_path):
    pairs = _pairs(2)
    _write_tree(tmp_path, pairs)
    for sub in ("ir", "vi"):
        (tmp_path / "vif" / "roadscene" / sub).mkdir(parents=True)  # empty set: left out
    seq = tmp_path / "mef" / "ifcnn_sequences" / "room"
    seq.mkdir(parents=True)
    for name, level in (("r1.jpg", 200), ("r2.jpg", 20), ("r3.jpg", 120)):
        Image.fromarray(np.full((16, 16, 3), level, np.uint8)).save(seq / name)
    lytro = tmp_path / "mff" / "lytro"
    lytro.mkdir(parents=True)
    for role in "AB":
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(lytro / f"lytro-01-{role}.jpg")
    vif = fusion_pairs("vif", tmp_path)
    assert [[p[0] for p in g] for g in vif] == [["tno/0", "tno/1"]]
    assert all(a.parent.name == "ir" and b.parent.name == "vi" for _, a, b in vif[0])
    (mef,) = fusion_pairs("mef", tmp_path)
    assert [(pid, a.name, b.name) for pid, a, b in mef] == [("ifcnn/room", "r2.jpg", "r1.jpg")]
    assert [(pid, a.name) for pid, a, _ in fusion_pairs("mff", tmp_path)[0]] == [("lytro/lytro-01", "lytro-01-A.jpg")]
    assert fusion_pairs("mif", tmp_path) == []
    with pytest.raises(ValueError, match="not a fusion task"):
        fusion_pairs("pan", tmp_path)
