"""One training run end to end: data, model, loss, Trainer, then evaluation and report on the test split.

With no ``data`` the run uses the embedded demo datasets (built on first use) with a small step budget
(``DEMO_SETTINGS``) sized so ``make train TASK=<task>`` takes about five minutes on two CPU cores;
with ``data`` it uses the paper's settings of the task registry (Table 1).
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fusion.model.pointwise import compile_regions
from fusion.train.trainer import Trainer, TrainSettings
from rwkvfusion_io.distributed import DistEnv, barrier, cleanup, init_distributed

logger = logging.getLogger(__name__)

# Demo budget per task: steps, per-process batch size and config overrides (small crops so a CPU run is
# short; drop path off for so few steps).  `make train TASK=mef` (250 steps + evaluation) used 291 s of
# CPU time on 2 cores: 7 min wall on a machine loaded about 2x by other work, an estimated 3-4 min idle.
_DEMO_COMMON = {"steps": 250, "batch_size": 4}
DEMO_SETTINGS: dict[str, dict[str, Any]] = {
    "vif": {**_DEMO_COMMON, "overrides": {"crop_size": (64, 80), "drop_path": 0.0}},
    "mif": {**_DEMO_COMMON, "overrides": {"crop_size": (64, 64), "drop_path": 0.0}},
    # MEF is unsupervised in the paper (supplement sec. 1 iii: normally exposed images are not used as GT)
    "mef": {**_DEMO_COMMON, "overrides": {"crop_size": (64, 64), "drop_path": 0.0}},
    "mff": {**_DEMO_COMMON, "overrides": {"crop_size": (64, 64), "drop_path": 0.0}},
    "pan": {"steps": 250, "batch_size": 8, "overrides": {"crop_size": (32, 32), "drop_path": 0.0}},
    "hmif": {"steps": 250, "batch_size": 8, "overrides": {"crop_size": (32, 32), "drop_path": 0.0}},
}


def demo_task_root(demo_dir: str | Path, task: str, env: DistEnv) -> Path:
    """The demo dataset of ``task`` under ``demo_dir``, built by rank 0 when absent."""
    from fusion.demo import build_demo_data

    demo_dir = Path(demo_dir)
    root = demo_dir / task
    if env.is_main and not root.is_dir():
        logger.info("building the demo data for %s in %s", task, demo_dir)
        build_demo_data(demo_dir, tasks=[task])
    barrier(env)
    if not root.is_dir():
        raise FileNotFoundError(f"demo data for {task} not found in {root} after building it")
    return root


# what a run writes into its folder (removed by ``overwrite`` so no stale report outlives its checkpoint)
RUN_OUTPUTS = ("checkpoint.pt", "config.yaml", "train.json", "metrics.csv", "metrics.json", "report.html",
               "train_summary.json", "fused", "val.json", "best.safetensors", "val_weights")


def check_run_folder(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse to start a fresh run in a folder that already holds one (unless ``resume`` or ``overwrite``)."""
    ckpt = out / "checkpoint.pt"
    if resume or overwrite or not ckpt.exists():
        return
    raise FileExistsError(f"{out} already holds a training run ({ckpt}); pass --resume to continue it, "
                          "--overwrite to replace it, or choose another --out")


def remove_run_outputs(out: Path) -> None:
    """Delete the files of a previous run in ``out`` (only the names a run writes)."""
    import shutil

    for name in RUN_OUTPUTS:
        p = out / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()


def run_training(task: str, out: str | Path, *, data: str | Path | Sequence[str | Path] | None = None,
                 manifest: str | Path | None = None, recipe: str | None = None,
                 demo_dir: str | Path = "demo_data", layout: str = "auto", steps: int | None = None,
                 epochs: int | None = None, batch_size: int | None = None, device: str | None = None,
                 resume: bool = False, stop_after: int | None = None, seed: int = 0, num_workers: int = 0,
                 checkpoint_every: int | None = None, log_every: int = 10, overrides: dict[str, Any] | None = None,
                 evaluate: bool = True, eval_split: str = "test", progress: bool = True,
                 hash_mismatch: str = "error", overwrite: bool = False,
                 compile_model: bool = False) -> dict[str, Any]:
    """Train ``task`` into ``out`` (checkpoint.pt, config.yaml, train.json, metrics.csv; after the last
    step metrics.json, fused/ and report.html).  Works single-process or under torchrun (DDP).

    ``data``: one root or several. For vif/mif/mef/mff without a manifest every dataset found under the
    roots is trained on (``fusion.data.multi.MultiDataset``, weights ``TaskConfig.data.dataset_weights``) and a
    validation split carved from them selects the best EMA weights (``best.safetensors``, ``val.json``);
    the final evaluation then runs on that validation split. Pansharpening scenes under the half-scene protocol
    (``cfg.data.scene_split == "halves"``) validate on the top halves' right quarters (Q2n) and are evaluated on
    the held-back bottom halves. ``recipe`` ("paper" = Table 1, the default
    with ``data``; "cpu") sets budget and EMA, and its config overrides set crops, batch and schedule
    (``fusion.config.get_recipe``); explicit ``steps``/``epochs``/``batch_size``/``checkpoint_every``/``overrides``
    win over it. The optimiser numbers of the run are ``cfg.optim`` of the resulting config.
    A folder that already holds a run is continued with ``resume``, replaced with ``overwrite`` (its old
    outputs removed first), and otherwise refused (FileExistsError), so a finished run is never clobbered.
    ``hash_mismatch`` ("error" / "skip") is passed to the dataset's manifest join."""
    import torch

    from fusion.config import FUSION_TASKS, get_config, get_recipe
    from fusion.data import build_dataset, collate
    from fusion.losses import build_loss
    from fusion.train.checkpoint import seed_everything
    from fusion.train.inference import model_from_config

    out = Path(out)
    check_run_folder(out, resume=resume, overwrite=overwrite)
    env = init_distributed(device)
    try:
        demo = data is None
        cfg_over: dict[str, Any] = {}
        roots: list[Path] = []
        rec = get_recipe(task, recipe or "paper") if (recipe or not demo) else None
        if rec is not None:
            cfg_over.update(rec.overrides)
            if steps is None and epochs is None:
                steps, epochs = rec.steps, rec.epochs
            checkpoint_every = checkpoint_every or rec.checkpoint_every
        if demo:
            ds = DEMO_SETTINGS[task]
            if rec is None:
                cfg_over.update(ds["overrides"], batch_size=ds["batch_size"])
                steps = steps if steps is not None or epochs is not None else ds["steps"]
            root = demo_task_root(demo_dir, task, env)
        else:
            roots = [Path(d) for d in ([data] if isinstance(data, (str, Path)) else data)]
            for r in roots:
                if not r.exists():
                    raise FileNotFoundError(f"--data {r} does not exist")
            root = roots[0]
        cfg_over.update(overrides or {})
        if batch_size:
            cfg_over["batch_size"] = batch_size
        cfg = get_config(task, **cfg_over)
        multi = bool(roots) and task in FUSION_TASKS and manifest is None
        if len(roots) > 1 and not multi:
            raise ValueError(f"several --data roots need a paired-image task without --manifest ({task})")
        settings = TrainSettings(
            optim=cfg.optim, steps=steps, epochs=None if steps is not None else (epochs or cfg.optim.epochs),
            seed=seed, num_workers=num_workers, progress=progress,
            ema_decay=rec.ema_decay if rec is not None else TrainSettings.ema_decay,
            checkpoint_every=checkpoint_every or (100 if demo else 1000), log_every=log_every,
            extra={"data": [str(r) for r in roots] if multi else str(root),
                   "manifest": str(manifest) if manifest else None, "demo": demo, "layout": layout,
                   "world_size": env.world_size, "recipe": rec.to_dict() if rec is not None else None,
                   # CPU float reductions depend on the thread count, so a run reproduces to 1e-3 with the same one
                   "threads": torch.get_num_threads()})
        seed_everything(seed + env.rank)
        model = model_from_config(cfg.to_dict())
        validator = val_set = None
        if multi:
            from fusion.data.multi import training_sets
            from fusion.train.validate import Validator

            dataset = training_sets(task, roots, "train", cfg=cfg, train=True)
            val_set = training_sets(task, roots, "val", cfg=cfg, train=False)
            assert rec is not None
            validator = Validator(val_set, out, every=rec.val_every, max_pairs=rec.val_max_pairs,
                                  max_side=rec.val_max_side, resume=resume)
            if env.is_main:
                logger.info("training datasets %s; validation %s", dataset.datasets,
                            [(n, k) for n, k, _ in val_set.datasets])
        else:
            dataset = build_dataset(task, root, "train", layout=layout, manifest=manifest, train=True, cfg=cfg,
                                    hash_mismatch=hash_mismatch)
            if cfg.data.scene_split == "halves" and rec is not None:  # val regions of the same scenes select the weights
                from fusion.train.validate import Validator

                val_set = build_dataset(task, root, "val", layout=layout, train=False, cfg=cfg)
                validator = Validator(val_set, out, every=rec.val_every, max_pairs=rec.val_max_pairs,
                                      max_side=rec.val_max_side, resume=resume)
                if env.is_main:
                    logger.info("training regions %s (ignored: %s); validation regions %s",
                                sorted({r.id for r in dataset.samples}), getattr(dataset, "ignored_files", []),
                                [r.id for r in val_set.samples])
        if manifest is not None and env.is_main and hasattr(dataset, "guidance_summary"):
            gs = dataset.guidance_summary()
            logger.info("manifest %s: %s (samples without annotation train unguided)", manifest, gs)
        trainer = Trainer(model, build_loss(cfg), dataset, settings, out, env, collate_fn=collate,
                          config=cfg.to_dict(), task=task)
        if compile_model:  # after the EMA copy: the elementwise regions through torch.compile (fusion.model.pointwise)
            compile_regions(trainer.model)
        if env.is_main:
            if overwrite and not resume:
                remove_run_outputs(out)
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
        summary = trainer.fit(stop_after=stop_after, on_checkpoint=validator)
        summary.update({"train_seconds": time.perf_counter() - t0, "resumed": resumed,
                        "checkpoint": str(trainer.checkpoint_path)})
        if summary["skipped"] and env.is_main:
            logger.warning("%d steps skipped for non-finite values (samples %s)", summary["skipped"],
                           sorted(set(summary["nonfinite_samples"])))
        if summary["unreadable_samples"] and env.is_main:
            logger.warning("%d unreadable training sample(s) skipped: %s", len(summary["unreadable_samples"]),
                           "; ".join(f"{k}: {v}" for k, v in sorted(summary["unreadable_samples"].items())))
        # every rank is done with collectives; only rank 0 evaluates (no barrier after it, so a long
        # evaluation cannot time out the process group of the other ranks)
        barrier(env)
        if validator is not None and validator.best is not None:
            summary["best_validation"] = {"step": validator.best["step"], **validator.best["mean"]}
            summary["best_validation_per_dataset"] = validator.best.get("per_dataset", {})
        if evaluate and summary["finished"] and env.is_main:
            if val_set is not None and multi:  # multi-dataset run: the best weights on the carved validation split
                summary["evaluation"] = evaluate_best_on_val(trainer, val_set, out, task=task, progress=progress)
            else:
                summary["evaluation"] = evaluate_run(trainer, task, root, out, layout=layout, manifest=manifest,
                                                     split=eval_split, cfg=cfg, progress=progress,
                                                     hash_mismatch=hash_mismatch)
        if env.is_main:
            (out / "train_summary.json").write_text(json.dumps(summary, indent=2, default=str))
        return summary
    finally:
        cleanup(env)


def evaluate_run(trainer: Trainer, task: str, root: Path, out: Path, *, layout: str, manifest: Any,
                 split: str, cfg: Any, progress: bool, hash_mismatch: str = "error") -> dict[str, Any]:
    """Score the EMA weights and the average baseline on ``split``; writes metrics.json, fused/, report.html."""
    from fusion.data import build_dataset
    from fusion.train.evaluate import evaluate_dataset

    test = build_dataset(task, root, split, layout=layout, manifest=manifest, train=False, cfg=cfg,
                         hash_mismatch=hash_mismatch)
    notes = []
    if manifest is not None and hasattr(test, "guidance_summary"):
        notes.append(f"guidance from {manifest}: {test.guidance_summary()}")
    notes += [f"{trainer.step} training steps ({trainer.skipped} skipped), batch {trainer.batch_size}, "
             f"world size {trainer.env.world_size}; model = EMA weights; data {root} ({split} split)."]
    res = evaluate_dataset(trainer.ema.module, test, out, task=task, progress=progress, notes=notes,
                           title=f"RWKVFusion {task}: {split} split")
    return {m: {k: v["mean"] for k, v in s.items()} for m, s in res["methods"].items()}


def evaluate_best_on_val(trainer: Trainer, val_set: Any, out: Path, *, task: str, progress: bool) -> dict[str, Any]:
    """Score the best validated EMA weights (``best.safetensors``, else the final EMA) and the average
    baseline on the carved validation split; writes metrics.json, fused/, report.html."""
    import copy

    from fusion.train.evaluate import evaluate_dataset

    model = trainer.ema.module
    best = out / "best.safetensors"
    note = f"model = final EMA weights (step {trainer.step})"
    if best.is_file():
        from safetensors.torch import load_file

        model = copy.deepcopy(model)
        model.load_state_dict(load_file(str(best)))
        note = f"model = best validated EMA weights ({best.name})"
    notes = [f"{trainer.step} training steps ({trainer.skipped} skipped), batch {trainer.batch_size}; {note}; "
             f"validation split carved from the training data: {[(n, k) for n, k, _ in val_set.datasets]}"]
    res = evaluate_dataset(model, val_set, out, task=task, progress=progress, notes=notes,
                           title=f"RWKVFusion {task}: validation split")
    return {m: {k: v["mean"] for k, v in s.items()} for m, s in res["methods"].items()}
