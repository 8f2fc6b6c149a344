"""Multi-dataset training, recipes, validation-driven selection and the bundled-model export/load path."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def _write_pairs(root: Path, a_name: str, b_name: str, stems: list[str], size: int = 48, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for role in (a_name, b_name):
        (root / role).mkdir(parents=True, exist_ok=True)
    for s in stems:
        base = rng.uniform(0, 255, (size // 4, size // 4))
        img = np.kron(base, np.ones((4, 4)))
        Image.fromarray(img.astype(np.uint8)).save(root / a_name / f"{s}.png")
        Image.fromarray((255 - img).astype(np.uint8)).save(root / b_name / f"{s}.png")


@pytest.fixture()
def vif_tree(tmp_path: Path) -> Path:
    root = tmp_path / "vif"
    _write_pairs(root / "alpha", "ir", "vi", [f"{i:03d}" for i in range(10)])
    _write_pairs(root / "beta" / "nested", "infrared", "visible", [f"b{i}" for i in range(4)], seed=1)
    return root


def test_discovery_finds_every_dataset_and_the_split_is_disjoint(vif_tree):
    from fusion.config import get_config
    from fusion.data.multi import MultiDataset, discover_datasets

    found = discover_datasets("vif", [vif_tree])
    assert [f.name for f in found] == ["alpha", "beta/nested"]
    assert discover_datasets("vif", [vif_tree / "alpha"])[0].name == "alpha"  # a root that is a dataset
    cfg = get_config("vif", dataset_weights={"alpha": 1.0, "beta": 3.0}, val_fraction=0.2)
    tr, va = MultiDataset("vif", [vif_tree], "train", cfg=cfg), MultiDataset("vif", [vif_tree], "val", cfg=cfg)
    assert set(tr.ids).isdisjoint(va.ids) and len(tr) + len(va) == 14
    w = dict(zip(tr.ids, tr.sample_weights))
    n_alpha = sum(i.startswith("alpha/") for i in tr.ids)
    n_beta = len(tr) - n_alpha
    assert sum(v for k, v in w.items() if k.startswith("beta/")) == pytest.approx(3.0)
    assert sum(v for k, v in w.items() if k.startswith("alpha/")) == pytest.approx(1.0)
    assert n_alpha and n_beta
    with pytest.raises(ValueError, match="no vif dataset"):
        discover_datasets("vif", [vif_tree / "alpha" / "ir"])
    # another val_seed holds out other pairs, still disjoint from its own training split
    cfg1 = cfg.replace(val_seed=1)
    tr1, va1 = MultiDataset("vif", [vif_tree], "train", cfg=cfg1), MultiDataset("vif", [vif_tree], "val", cfg=cfg1)
    assert set(tr1.ids).isdisjoint(va1.ids) and len(tr1) + len(va1) == 14 and set(va1.ids) != set(va.ids)


def test_harvard_validation_holds_out_whole_series():
    from fusion.data.multi import group_key, split_groups

    ids = [f"{s}{i:03d}" for s in ("10", "11", "15", "22") for i in range(5)]
    keys = [group_key("harvard/SPECT-MRI", i) for i in ids]
    assert set(keys) == {"10", "11", "15", "22"}
    val = split_groups(keys, 0.25)
    assert len(val) == 1
    assert group_key("msrs", "00001D") == "00001D"
    # two series, each far above the target: nothing held out rather than half the data
    assert split_groups(["25"] * 94 + ["30"] * 82, 0.1) == set()


def test_weighted_sampler_resumes_mid_epoch_and_follows_weights():
    from fusion.train.sampling import WeightedResumableSampler

    ds = list(range(20))
    w = [1.0] * 10 + [9.0] * 10
    full = WeightedResumableSampler(ds, w, seed=4)
    full.set_position(3, 0)
    whole = list(full)
    part = WeightedResumableSampler(ds, w, seed=4)
    part.set_position(3, 7)
    assert list(part) == whole[7:] and len(whole) == 20
    many = WeightedResumableSampler(list(range(2000)), [1.0] * 1000 + [9.0] * 1000, seed=0)
    many.set_position(0, 0)
    heavy = np.mean([i >= 1000 for _, i in many])
    assert 0.85 < heavy < 0.95


def test_recipes_live_in_the_config_registry():
    from fusion.config import TASKS, get_config, get_recipe

    for t in TASKS:
        paper, cpu = get_recipe(t, "paper"), get_recipe(t, "cpu")
        cfg = get_config(t)
        assert paper.epochs == cfg.optim.epochs and paper.apply(cfg) == cfg  # Table 1 as is
        assert cpu.steps and cpu.apply(cfg).optim.batch_size <= cfg.optim.batch_size
    with pytest.raises(ValueError, match="recipe"):
        get_recipe("vif", "tpu")


def _tiny_run(vif_tree: Path, out: Path, **kw):
    from fusion.train.runner import run_training

    args = dict(data=[vif_tree], recipe="cpu", steps=2, batch_size=2, evaluate=False, progress=False,
                checkpoint_every=1, device="cpu",
                overrides={"crop_size": (32, 32), "base_channels": 8, "val_fraction": 0.2})
    args.update(kw)
    return run_training("vif", out, **args)


def test_multi_dataset_run_validates_exports_and_loads_without_pickle(vif_tree, tmp_path, monkeypatch):
    import fusion.config as C
    from fusion.pretrained import NoBundledModel, bundled_tasks, export_run, load_pretrained

    monkeypatch.setitem(C._CPU_RECIPES, "vif", {**C._CPU_RECIPES["vif"], "val_every": 1, "checkpoint_every": 1, "val_max_pairs": 2})
    run = tmp_path / "run"
    summary = _tiny_run(vif_tree, run)
    assert summary["finished"] and "best_validation" in summary
    val = json.loads((run / "val.json").read_text())
    assert [h["step"] for h in val["history"]] == [1, 2] and (run / "best.safetensors").is_file()
    train = json.loads((run / "train.json").read_text())
    assert train["settings"]["extra"]["recipe"]["name"] == "cpu"

    wdir = tmp_path / "weights"
    w, j, md = export_run(run, wdir)
    assert bundled_tasks(wdir) == ["vif"] and w.stat().st_size < 2_000_000
    assert w.read_bytes()[:8] != b"\x80\x02\x8a\nl\xfc\x9cF"  # not a torch pickle
    info = json.loads(j.read_text())
    assert info["training"]["recipe"]["name"] == "cpu" and info["validation"]["step"] in (1, 2)
    assert info["training"]["threads"] == torch.get_num_threads()   # reductions, hence runs, depend on it
    assert "Recipe" in md.read_text() and f"1 process, {torch.get_num_threads()} threads" in md.read_text()
    model = load_pretrained("vif", weights_dir=wdir)
    from safetensors.torch import load_file

    ref = load_file(str(run / "best.safetensors"))
    got = model.state_dict()
    assert all(torch.allclose(got[k], ref[k], atol=1e-2, rtol=1e-2) for k in ref)
    with pytest.raises(NoBundledModel, match="mif"):
        load_pretrained("mif", weights_dir=wdir)

    # every validated step's EMA weights are kept and can be exported instead of the best
    from fusion.train.validate import snapshot_path

    assert all(snapshot_path(run, s).is_file() for s in (1, 2))
    first = load_file(str(snapshot_path(run, val["best"]["step"])))
    assert all(torch.equal(first[k], ref[k]) for k in ref)
    w1, j1, _ = export_run(run, tmp_path / "w1", weights="step:1")
    assert json.loads(j1.read_text())["validation"]["step"] == 1
    assert json.loads(j1.read_text())["training"]["step"] == 1
    with pytest.raises(ValueError, match="no validated weights of step 7"):
        export_run(run, tmp_path / "w7", weights="step:7")

    # weights-only files take their config from beside them: --checkpoint run/best.safetensors (the run's
    # checkpoint.pt) or an exported vif.safetensors (its vif.json); a lone copy names both missing sidecars
    import shutil

    from fusion.train.checkpoint import CheckpointError
    from fusion.train.inference import load_model

    step1 = load_file(str(snapshot_path(run, 1)))
    for path, want in ((run / "best.safetensors", ref), (w, got), (snapshot_path(run, 1), step1)):
        m, ckpt = load_model(path)
        assert ckpt["task"] == "vif" and all(torch.equal(m.state_dict()[k], want[k].float()) for k in want)
    lone = tmp_path / "lone" / "x.safetensors"
    lone.parent.mkdir()
    shutil.copy(w, lone)
    with pytest.raises(CheckpointError, match=r"x.safetensors .*neither x.json nor checkpoint.pt"):
        load_model(lone)
    # best weights written before the validator stored their config read it from the run's checkpoint.pt
    from safetensors.torch import save_file

    save_file(ref, str(run / "old_best.safetensors"))
    m, ckpt = load_model(run / "old_best.safetensors")
    assert ckpt["task"] == "vif" and all(torch.equal(m.state_dict()[k], ref[k]) for k in ref)

    # the bench quality tables list the bundled model beside the baselines
    import fusion.pretrained as P
    from fusion.bench.quality import _bundled_fuser

    monkeypatch.setattr(P, "WEIGHTS_DIR", wdir)
    notes: list[str] = []
    fn = _bundled_fuser("vif", notes)
    assert fn is not None and fn(np.zeros((24, 24)), np.ones((24, 24))).shape == (24, 24)
    assert _bundled_fuser("mef", notes) is None and any("no bundled mef" in n for n in notes)


def test_fuse_cli_uses_the_bundled_model_and_names_missing_tasks(vif_tree, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import fusion.pretrained as P
    from fusion.cli import app

    monkeypatch.setattr(P, "WEIGHTS_DIR", tmp_path / "empty")
    res = CliRunner().invoke(app, ["fuse", "--task", "vif", "--a", str(vif_tree / "alpha" / "ir"),
                                   "--b", str(vif_tree / "alpha" / "vi"), "--out", str(tmp_path / "f")])
    assert res.exit_code == 2 and "no bundled model for task 'vif'" in res.output


@pytest.mark.skipif(not (SHARED / "train").is_dir(), reason="../shared/data/train is absent")
def test_real_training_roots_are_discovered():
    from fusion.data.multi import discover_datasets

    names = [f.name for f in discover_datasets("vif", [SHARED / "train" / "vif"])]
    assert names == ["llvip", "msrs", "roadscene"]
    mif = [f.name for f in discover_datasets("mif", [SHARED / "train" / "mif"])]
    assert mif == ["harvard/CT-MRI", "harvard/PET-MRI", "harvard/SPECT-MRI"]


def test_demo_report_without_shared_data_uses_embedded_pairs(tmp_path, monkeypatch):
    import fusion.pretrained as P
    from fusion.pretrained.demo import run_demo

    monkeypatch.setattr(P, "WEIGHTS_DIR", tmp_path / "empty")
    report = run_demo(tmp_path / "demo", data=tmp_path / "absent", demo_dir=tmp_path / "dd", pairs=1,
                      max_side=64, tasks=("mif",))
    res = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert "embedded demo pairs" in res["mif"]["source"] and "no bundled model" in res["mif"]["note"]
    assert set(res["mif"]["summary"]) == {"average", "choose-max", "laplacian", "gff"}
    assert "MIF" in report.read_text()


def test_same_seed_same_validation_and_resume_continues_exactly(vif_tree, tmp_path, monkeypatch):
    import fusion.config as C

    monkeypatch.setitem(C._CPU_RECIPES, "vif", {**C._CPU_RECIPES["vif"], "val_every": 1, "checkpoint_every": 1, "val_max_pairs": 2})
    a = _tiny_run(vif_tree, tmp_path / "a", steps=3)
    b = _tiny_run(vif_tree, tmp_path / "b", steps=3)
    assert a["best_validation"] == b["best_validation"]
    _tiny_run(vif_tree, tmp_path / "c", steps=3, stop_after=2)
    c = _tiny_run(vif_tree, tmp_path / "c", steps=3, resume=True)
    hist = lambda p: [(h["step"], h["score"]) for h in json.loads((p / "val.json").read_text())["history"]]  # noqa: E731
    assert hist(tmp_path / "c") == hist(tmp_path / "a") and c["best_validation"] == a["best_validation"]


def test_bundled_cards_are_their_sidecars_rendered():
    """Each shipped ``<task>.md`` is ``model_card`` of its ``<task>.json``; per-dataset loss targets are named."""
    from fusion.pretrained import WEIGHTS_DIR, bundled_tasks, model_card

    tasks = bundled_tasks(WEIGHTS_DIR)
    assert {"vif", "mif", "mef", "mff", "pan4", "pan8"} <= set(tasks)
    for t in tasks:
        info = json.loads((WEIGHTS_DIR / f"{t}.json").read_text())
        assert model_card(info) == (WEIGHTS_DIR / f"{t}.md").read_text(), t
    info = json.loads((WEIGHTS_DIR / "mif.json").read_text())
    info["config"]["loss"]["intensity_target_by_dataset"] = {"harvard/CT-MRI": "max"}
    assert "intensity target `sources` (`max` for harvard/CT-MRI)" in model_card(info)


def test_ablation_rows_carry_per_dataset_scores_and_the_val_split(vif_tree, tmp_path):
    """``fusion.train.ablate``: one row per setting with Qabf per dataset; ``--val-seed`` and ``--val-fraction``
    reach the run's config and the baseline rows."""
    from fusion.baselines import methods_for
    from fusion.train.ablate import main

    out = tmp_path / "abl"
    main(task="vif", data=[vif_tree], steps=2, only="weights,baselines", out=out, crop=32, seed=0, val_seed=1,
         val_fraction=0.5)
    rows = json.loads((out / "vif" / "results.json").read_text())
    assert [r["setting"] for r in rows][-1] == "weights" and rows[-1]["val"]["step"] == 2
    assert {r["setting"] for r in rows[:-1]} == {f"baseline:{m.name}" for m in methods_for("vif")}
    assert all(set(r["per_dataset"]) == {"alpha", "beta/nested"} for r in rows)
    md = (out / "vif" / "results.md").read_text()
    assert "| Qabf alpha | Qabf beta/nested |" in md and "| weights | 2 | 4 |" in md
    cfg_text = (out / "vif" / "weights" / "config.yaml").read_text()
    assert "val_seed: 1" in cfg_text and "val_fraction: 0.5" in cfg_text
