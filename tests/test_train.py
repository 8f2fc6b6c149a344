"""Trainer: loss goes down, exact resume, DDP under torchrun, NaN batches skipped, corrupt samples named."""
from __future__ import annotations

import functools
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import copy_demo, tiny_run

from fusion.train.checkpoint import load_checkpoint, save_atomic
from fusion.train.sampling import ResumableSampler, SeededSamples
from fusion.train.trainer import Trainer, TrainSettings, lr_at
from rwkvfusion_io.distributed import DistEnv

REPO = Path(__file__).resolve().parents[1]
CPU = DistEnv(0, 1, 0, torch.device("cpu"))
TINY = {"crop_size": (32, 32), "drop_path": 0.1}


# the MEF demo data: the ``demo_root`` fixture of conftest.py; drop path on, so resume must restore its RNG too
_tiny_run = functools.partial(tiny_run, steps=4, overrides=TINY)


# ----------------------------------------------------------------------------- pieces
def test_cosine_schedule_matches_closed_form():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10, eta_min=1e-5)
    for step in range(1, 11):
        opt.step()
        sched.step()
        assert sched.get_last_lr()[0] == pytest.approx(lr_at(step, 10, 1e-3, 1e-5), rel=1e-9)
    assert lr_at(10, 10, 1e-3, 1e-5) == pytest.approx(1e-5)


def test_resumable_sampler_continues_the_epoch():
    ds = list(range(23))
    full = ResumableSampler(ds, shuffle=True, seed=3)
    full.set_position(2, 0)
    whole = list(full)
    part = ResumableSampler(ds, shuffle=True, seed=3)
    part.set_position(2, 8)
    assert list(part) == whole[8:]
    assert all(e == 2 for e, _ in whole) and sorted(i for _, i in whole) == ds
    # two ranks partition an epoch
    r0, r1 = (ResumableSampler(ds, num_replicas=2, rank=r, seed=3) for r in (0, 1))
    r0.set_epoch(1), r1.set_epoch(1)
    assert len(set(i for _, i in r0) | set(i for _, i in r1)) == 23


def test_seeded_samples_are_reproducible_and_leave_global_rng_alone():
    class Rand(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return torch.rand(3), np.random.rand()

    ds = SeededSamples(Rand(), seed=7)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    x1, x2, y = ds[(0, 1)], ds[(0, 1)], ds[(1, 1)]
    assert torch.equal(before, torch.get_rng_state())
    assert torch.equal(x1[0], x2[0]) and x1[1] == x2[1]
    assert not torch.equal(x1[0], y[0])


def test_atomic_save_leaves_no_temporary_and_bad_checkpoint_is_named(tmp_path):
    p = save_atomic({"model": {}, "config": {"task": "mef"}}, tmp_path / "c.pt")
    assert [f.name for f in tmp_path.iterdir()] == ["c.pt"]
    assert load_checkpoint(p)["config"]["task"] == "mef"
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt"):
        load_checkpoint(bad)


# ----------------------------------------------------------------------------- training
def test_a_few_steps_lower_the_loss_on_a_fixed_batch(demo_root, tmp_path):
    from fusion.config import get_config
    from fusion.data import build_dataset, collate
    from fusion.losses import build_loss
    from fusion.train.inference import model_from_config

    torch.manual_seed(0)
    cfg = get_config("mef", crop_size=(32, 32), drop_path=0.0)
    ds = build_dataset("mef", demo_root / "mef", "train", train=True, cfg=cfg)
    batch = collate([ds[0], ds[1]])
    loss_fn, seen_ids = build_loss(cfg), []

    def recording_loss(*args, **kwargs):  # the loss sees each sample's id (per-dataset intensity targets)
        seen_ids.append(kwargs["ids"])
        return loss_fn(*args, **kwargs)

    tr = Trainer(model_from_config(cfg.to_dict()), recording_loss, ds,
                 TrainSettings(cfg.replace(batch_size=2).optim, steps=12, progress=False), tmp_path, CPU, collate_fn=collate,
                 config=cfg.to_dict(), task="mef")
    losses = [tr.train_step(batch)["loss"] for _ in range(12)]
    assert all(np.isfinite(losses))
    assert seen_ids[0] == batch["id"] and len(seen_ids[0]) == 2
    assert np.mean(losses[-3:]) < 0.8 * losses[0], losses


def test_cpu_bf16_autocasts_the_training_forward_and_keeps_float32_weights(demo_root, tmp_path):
    from fusion.config import get_config
    from fusion.data import build_dataset, collate
    from fusion.losses import build_loss
    from fusion.train.inference import model_from_config

    torch.manual_seed(0)
    cfg = get_config("mef", crop_size=(32, 32), drop_path=0.0, cpu_bf16=True, batch_size=2)
    ds = build_dataset("mef", demo_root / "mef", "train", train=True, cfg=cfg)
    model = model_from_config(cfg.to_dict())
    seen: list[torch.dtype] = []
    model.head.register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))
    tr = Trainer(model, build_loss(cfg), ds, TrainSettings(cfg.optim, steps=3, progress=False), tmp_path, CPU,
                 collate_fn=collate, config=cfg.to_dict(), task="mef")
    batch = collate([ds[0], ds[1]])
    before = model.head.weight.detach().clone()
    parts = [tr.train_step(dict(batch)) for _ in range(3)]
    assert seen == [torch.bfloat16] * 3                       # the convolutions ran in bf16
    assert all(np.isfinite(p["loss"]) and p["skipped"] == 0 for p in parts)
    assert model.head.weight.dtype == torch.float32 and not torch.equal(model.head.weight, before)
    tr32 = Trainer(model_from_config(cfg.replace(cpu_bf16=False).to_dict()), build_loss(cfg), ds,
                   TrainSettings(cfg.replace(cpu_bf16=False).optim, steps=1, progress=False), tmp_path / "fp32", CPU,
                   collate_fn=collate, config=cfg.to_dict(), task="mef")
    seen.clear()
    tr32.model.head.register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))
    tr32.train_step(dict(batch))
    assert seen == [torch.float32]


def test_resume_is_bit_identical(demo_root, tmp_path):
    _tiny_run(demo_root, tmp_path / "straight")
    first = _tiny_run(demo_root, tmp_path / "resumed", stop_after=2)
    assert first["steps"] == 2 and not first["finished"]
    second = _tiny_run(demo_root, tmp_path / "resumed", resume=True)
    assert second["resumed"] and second["steps"] == 4 and second["steps_this_run"] == 2
    a = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")
    for key in ("model",):
        for name, t in a[key].items():
            assert torch.equal(t, b[key][name]), name
    for name, t in a["ema"]["module"].items():
        assert torch.equal(t, b["ema"]["module"][name]), name
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert all(torch.equal(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"]) for i in sa)
    assert a["scheduler"] == b["scheduler"]
    # the CSV log of the resumed run has each step once
    rows = (tmp_path / "resumed" / "metrics.csv").read_text().strip().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == [1, 2, 3, 4]


def test_loader_workers_do_not_change_the_result(demo_root, tmp_path):
    """Augmentation is seeded per (seed, epoch, index): worker processes see the same crops."""
    _tiny_run(demo_root, tmp_path / "w0", steps=3, checkpoint_every=3)
    _tiny_run(demo_root, tmp_path / "w2", steps=3, checkpoint_every=3, num_workers=2)
    a = load_checkpoint(tmp_path / "w0" / "checkpoint.pt")["model"]
    b = load_checkpoint(tmp_path / "w2" / "checkpoint.pt")["model"]
    assert all(torch.equal(t, b[k]) for k, t in a.items())


def test_nan_batch_is_skipped_and_counted(demo_root, caplog, tmp_path):
    from fusion.config import get_config
    from fusion.data import build_dataset, collate
    from fusion.losses import build_loss
    from fusion.train.inference import model_from_config

    cfg = get_config("mef", crop_size=(32, 32), drop_path=0.0)
    base = build_dataset("mef", demo_root / "mef", "train", train=True, cfg=cfg)
    poisoned = base.ids[0]

    class Poison(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            s = base[i]
            if s["id"] == poisoned:
                s["a"] = s["a"].clone()
                s["a"][0, 3, 3] = float("nan")
            return s

    torch.manual_seed(0)
    n_epochs = 2
    tr = Trainer(model_from_config(cfg.to_dict()), build_loss(cfg), Poison(),
                 TrainSettings(cfg.replace(batch_size=1).optim, epochs=n_epochs, progress=False, checkpoint_every=10**6,
                               log_every=10**6), tmp_path, CPU, collate_fn=collate, config=cfg.to_dict(),
                 task="mef")
    tr.save = lambda: None  # no files for this test
    with caplog.at_level(logging.WARNING, logger="fusion.train.trainer"):
        summary = tr.fit()
    assert summary["skipped"] == n_epochs
    assert summary["nonfinite_samples"] == [poisoned] * n_epochs
    assert poisoned in caplog.text and "skipped" in caplog.text
    assert all(torch.isfinite(p).all() for p in tr.model.parameters())


def test_corrupt_sample_is_skipped_and_named(demo_root, tmp_path, caplog):
    root = copy_demo(demo_root, tmp_path)
    from fusion.data import build_dataset

    victim = Path(build_dataset("mef", root / "mef", "train").samples[1].b)
    victim.write_bytes(b"\x89PNG broken")
    with caplog.at_level(logging.WARNING, logger="fusion.train"):
        summary = _tiny_run(root, tmp_path / "run", steps=8)
    assert summary["finished"] and summary["steps"] == 8
    (name, why), = summary["unreadable_samples"].items()
    assert victim.name in why and victim.name in caplog.text


@pytest.mark.slow
def test_train_cli_writes_the_run_folder(demo_root, tmp_path):
    import typer
    from typer.testing import CliRunner

    from fusion.train.cli import register

    app = typer.Typer()
    register(app)
    out = tmp_path / "runs" / "mef"
    res = CliRunner().invoke(app, ["train", "--task", "mef", "--demo-dir", str(demo_root), "--out", str(out),
                                   "--steps", "2", "--batch-size", "2", "--crop", "32x32", "--device", "cpu",
                                   "--no-progress"])
    assert res.exit_code == 0, res.output
    for name in ("checkpoint.pt", "config.yaml", "metrics.json", "report.html", "metrics.csv"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["methods"]) == {"ours", "average"}
    assert {"Qabf", "SSIM"} <= set(metrics["methods"]["ours"])
    n = metrics["n_samples"]
    assert len(list((out / "fused" / "ours").glob("*.png"))) == n
    html = (out / "report.html").read_text()
    assert "Qabf" in html and "fused/ours/" in html
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["config"]["task"] == "mef" and ckpt["step"] == 2
    # the evaluate command on the same checkpoint reproduces the numbers
    res = CliRunner().invoke(app, ["evaluate", "--checkpoint", str(out / "checkpoint.pt"), "--demo-dir",
                                   str(demo_root), "--out", str(tmp_path / "eval"), "--device", "cpu",
                                   "--no-progress"])
    assert res.exit_code == 0, res.output
    again = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert again["methods"]["ours"]["Qabf"]["mean"] == pytest.approx(metrics["methods"]["ours"]["Qabf"]["mean"],
                                                                     rel=1e-5)


@pytest.mark.distributed
def test_torchrun_two_processes_write_one_checkpoint(demo_root, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
           "fusion.train", "train", "--task", "mef", "--demo-dir", str(demo_root), "--out", str(out),
           "--steps", "3", "--batch-size", "1", "--crop", "32x32", "--device", "cpu", "--no-eval",
           "--no-progress"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sorted(p.name for p in out.glob("*.pt")) == ["checkpoint.pt"]
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["step"] == 3 and ckpt["world_size"] == 2 and len(ckpt["rng"]) == 2
