"""One training run end to end: data, model, loss, Trainer, then evaluation and report on the test split.

With no ``data`` the run uses the embedded demo datasets (built on first use) with a small step budget
(``DEMO_SETTINGS``) sized so ``make train TASK=<task>`` takes about five minutes on two CPU cores;
with ``data`` it uses the paper's settings of the task registry (seed 000 Table 1).
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fusion.train.distributed import DistEnv, barrier, cleanup, init_distributed
from fusion.train.trainer import Trainer, TrainSettings

logger = logging.getLogger(__name__)

# Demo budget per task: steps, per-process batch size and config overrides (small crops so a CPU run is
# short; drop path off for so few steps).  `make train TASK=mef` (250 steps + evaluation) used 291 s of
# CPU time on 2 cores: 7 min wall on a machine loaded about 2x by other work, an estimated 3-4 min idle.
_DEMO_COMMON = {"steps": 250, "batch_size": 4}
DEMO_SETTINGS: dict[str, dict[str, Any]] = {
    "vif": {**_DEMO_COMMON, "overrides": {"crop_size": (64, 80), "drop_path": 0.0}},
    "mif": {**_DEMO_COMMON, "overrides": {"crop_size": (64, 64), "drop_path": 0.0}},
    # MEF is unsupervised in the paper (seed 000 sec. 1 iii: normally exposed images are not used as GT)
    "mef": {**_DEMO_COMMON, "overrides": {"crop_size": (64, 64), "drop_path": 0.0}},
    "mff": {**_DEMO_COMMON, "overrides": {"crop_size": (64, 64), "drop_path": 0.0}},
    "pan": {"steps": 250, "batch_size": 8, "overrides": {"crop_size": (32, 32), "drop_path": 0.0}},
    "hmif": {"steps": 250, "batch_size": 8, "overrides": {"crop_size": (32, 32), "drop_path": 0.0}},
}


def demo_task_root(demo_dir: str | Path, task: str, env: DistEnv) -> Path:
    """The demo dataset of ``task`` under ``demo_dir``, built by rank 0 when absent."""
    from fusion.data.demo import build_demo_data

    demo_dir = Path(demo_dir)
    root = demo_dir / task
    if env.is_main and not root.is_dir():
        logger.info("building the demo data for %s in %s", task, demo_dir)
        build_demo_data(demo_dir, tasks=[task])
    barrier(env)
    if not root.is_dir():
        raise FileNotFoundError(f"demo data for {task} not found in {root} after building it")
    return root


def run_training(task: str, out: str | Path, *, data: str | Path | None = None, manifest: str | Path | None = None,
                 demo_dir: str | Path = "demo_data", layout: str = "auto", steps: int | None = None,
                 epochs: int | None = None, batch_size: int | None = None, device: str | None = None,
                 resume: bool = False, stop_after: int | None = None, seed: int = 0, num_workers: int = 0,
                 checkpoint_every: int | None = None, log_every: int = 10, overrides: dict[str, Any] | None = None,
                 evaluate: bool = True, eval_split: str = "test", progress: bool = True,
                 compile_model: bool = False) -> dict[str, Any]:
    """Train ``task`` into ``out`` (checkpoint.pt, config.yaml, train.json, metrics.csv; after the last
    step metrics.json, fused/ and report.html).  Works single-process or under torchrun (DDP)."""
    from fusion.config import get_config
    from fusion.data import build_dataset, collate
    from fusion.losses import build_loss
    from fusion.train.checkpoint import seed_everything
    from fusion.train.inference import model_from_config

    env = init_distributed(device)
    out = Path(out)
    try:
        demo = data is None
        cfg_over: dict[str, Any] = {}
        if demo:
            ds = DEMO_SETTINGS[task]
            cfg_over.update(ds["overrides"])
            steps = steps if steps is not None or epochs is not None else ds["steps"]
            batch_size = batch_size or ds["batch_size"]
            root = demo_task_root(demo_dir, task, env)
        else:
            root = Path(data)
            if not root.exists():
                raise FileNotFoundError(f"--data {root} does not exist")
        cfg_over.update(overrides or {})
        cfg = get_config(task, **cfg_over)
        settings = TrainSettings(
            steps=steps, epochs=None if steps is not None else (epochs or cfg.epochs),
            batch_size=batch_size or cfg.batch_size, lr=cfg.lr, lr_min=cfg.min_lr, betas=cfg.betas,
            weight_decay=cfg.weight_decay, seed=seed, num_workers=num_workers, progress=progress,
            checkpoint_every=checkpoint_every or (100 if demo else 1000), log_every=log_every,
            extra={"data": str(root), "manifest": str(manifest) if manifest else None, "demo": demo,
                   "layout": layout, "world_size": env.world_size})
        seed_everything(seed + env.rank)
        model = model_from_config(cfg.to_dict())
        dataset = build_dataset(task, root, "train", layout=layout, manifest=manifest, train=True, cfg=cfg)
        if manifest is not None and env.is_main and hasattr(dataset, "guidance_summary"):
            gs = dataset.guidance_summary()
            logger.info("manifest %s: %s (samples without annotation train unguided)", manifest, gs)
        trainer = Trainer(model, build_loss(cfg), dataset, settings, out, env, collate_fn=collate,
                          config=cfg.to_dict(), task=task)
        if compile_model:  # after the EMA copy: torch.compile of the training forward (backward via AOT autograd)
            trainer.model.compile(dynamic=False)   # fixed crops; dynamic shapes trip Inductor on this model
        if env.is_main:
            out.mkdir(parents=True, exist_ok=True)
            (out / "config.yaml").write_text(cfg.to_yaml())
            (out / "train.json").write_text(json.dumps({"settings": asdict(settings),
                                                         "total_steps": trainer.total_steps}, indent=2))
        resumed = trainer.resume() if resume else False
        if resume and not resumed and env.is_main:
            logger.warning("--resume: no checkpoint in %s, starting from scratch", out)
        if resumed and env.is_main:
            logger.info("resumed %s at step %d of %d", trainer.checkpoint_path, trainer.step, trainer.total_steps)
        t0 = time.perf_counter()
        summary = trainer.fit(stop_after=stop_after)
        summary.update({"train_seconds": time.perf_counter() - t0, "resumed": resumed,
                        "checkpoint": str(trainer.checkpoint_path)})
        if summary["skipped"] and env.is_main:
            logger.warning("%d steps skipped for non-finite values (samples %s)", summary["skipped"],
                           sorted(set(summary["nonfinite_samples"])))
        # every rank is done with collectives; only rank 0 evaluates (no barrier after it, so a long
        # evaluation cannot time out the process group of the other ranks)
        barrier(env)
        if evaluate and summary["finished"] and env.is_main:
            summary["evaluation"] = evaluate_run(trainer, task, root, out, layout=layout, manifest=manifest,
                                                 split=eval_split, cfg=cfg, progress=progress)
        if env.is_main:
            (out / "train_summary.json").write_text(json.dumps(summary, indent=2, default=str))
        return summary
    finally:
        cleanup(env)


def evaluate_run(trainer: Trainer, task: str, root: Path, out: Path, *, layout: str, manifest: Any,
                 split: str, cfg: Any, progress: bool) -> dict[str, Any]:
    """Score the EMA weights and the average baseline on ``split``; writes metrics.json, fused/, report.html."""
    from fusion.data import build_dataset
    from fusion.train.evaluate import evaluate_dataset

    test = build_dataset(task, root, split, layout=layout, manifest=manifest, train=False, cfg=cfg)
    notes = []
    if manifest is not None and hasattr(test, "guidance_summary"):
        notes.append(f"guidance from {manifest}: {test.guidance_summary()}")
    notes += [f"{trainer.step} training steps ({trainer.skipped} skipped), batch {trainer.batch_size}, "
             f"world size {trainer.env.world_size}; model = EMA weights; data {root} ({split} split)."]
    res = evaluate_dataset(trainer.ema.module, test, out, task=task, progress=progress, notes=notes,
                           title=f"RWKVFusion {task}: {split} split")
    return {m: {k: v["mean"] for k, v in s.items()} for m, s in res["methods"].items()}
