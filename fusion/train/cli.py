"""``python -m fusion train | evaluate | fuse`` (registered into fusion.cli)."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import typer

TASK_HELP = "vif | mif | mef | mff | pan | hmif"


def _setup_logging() -> None:
    import os

    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format=f"[rank {rank}] %(levelname)s %(name)s: %(message)s" if "RANK" in os.environ
                        else "%(levelname)s %(name)s: %(message)s")


def _fail(msg: str) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(2)


def train(
    task: str = typer.Option(..., "--task", help=TASK_HELP),
    out: Path = typer.Option(None, "--out", help="run folder (default runs/<task>)"),
    data: Path | None = typer.Option(None, "--data", help="dataset root; omitted = embedded demo data"),
    manifest: Path | None = typer.Option(None, "--manifest", help="Parquet manifest (file or folder)"),
    demo_dir: Path = typer.Option(Path("demo_data"), "--demo-dir", help="where the demo data lives / is built"),
    layout: str = typer.Option("auto", "--layout", help="dataset layout (auto-detected by default)"),
    steps: int | None = typer.Option(None, "--steps", help="total optimisation steps (overrides epochs)"),
    epochs: int | None = typer.Option(None, "--epochs", help="epochs (default: the task's Table 1 value)"),
    batch_size: int | None = typer.Option(None, "--batch-size", help="per-process batch size"),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, cuda:1 (default: auto)"),
    resume: bool = typer.Option(False, "--resume", help="continue exactly from <out>/checkpoint.pt"),
    stop_after: int | None = typer.Option(None, "--stop-after",
                                             help="stop after this many steps of this invocation (resumable)"),
    seed: int = typer.Option(0, "--seed"),
    workers: int = typer.Option(0, "--workers", help="DataLoader worker processes"),
    checkpoint_every: int | None = typer.Option(None, "--checkpoint-every", help="steps between checkpoints"),
    log_every: int = typer.Option(10, "--log-every", help="steps between metrics.csv rows"),
    crop: str | None = typer.Option(None, "--crop", help="training crop HxW, e.g. 128x128 (overrides config)"),
    no_eval: bool = typer.Option(False, "--no-eval", help="skip the test-split evaluation and report"),
    no_progress: bool = typer.Option(False, "--no-progress", help="no progress bar"),
    compile_model: bool = typer.Option(False, "--compile", help="torch.compile the training forward/backward"),
) -> None:
    """Train TASK (demo data unless --data); writes checkpoint.pt, metrics.json, fused/ and report.html."""
    from fusion.config import TASKS

    _setup_logging()
    if task not in TASKS:
        _fail(f"--task {task!r}: expected one of {', '.join(TASKS)}")
    if data is None and manifest is not None:
        _fail("--manifest needs --data (the demo data carries its own guidance)")
    overrides = {}
    if crop:
        try:
            h, w = (int(x) for x in crop.lower().split("x"))
        except ValueError:
            _fail(f"--crop {crop!r}: expected HxW such as 128x128")
        overrides["crop_size"] = (h, w)
    from fusion.train.runner import run_training

    summary = run_training(task, out or Path("runs") / task, data=data, manifest=manifest, demo_dir=demo_dir,
                           layout=layout, steps=steps, epochs=epochs, batch_size=batch_size, device=device,
                           resume=resume, stop_after=stop_after, seed=seed, num_workers=workers,
                           checkpoint_every=checkpoint_every, log_every=log_every, overrides=overrides, evaluate=not no_eval,
                           progress=not no_progress, compile_model=compile_model)
    import os
    if int(os.environ.get("RANK", "0")) == 0:
        brief = {k: summary[k] for k in ("steps", "skipped", "last_loss", "train_seconds", "checkpoint")
                 if k in summary}
        if "evaluation" in summary:
            brief["evaluation"] = summary["evaluation"]
        typer.echo(json.dumps(brief, indent=2, default=str))


def evaluate(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="checkpoint.pt of a training run"),
    out: Path = typer.Option(..., "--out", help="output folder (metrics.json, fused/, report.html)"),
    data: Path | None = typer.Option(None, "--data", help="dataset root"),
    demo_dir: Path | None = typer.Option(None, "--demo-dir", help="demo data folder (instead of --data)"),
    manifest: Path | None = typer.Option(None, "--manifest", help="Parquet manifest for guidance"),
    split: str = typer.Option("test", "--split"),
    layout: str = typer.Option("auto", "--layout"),
    baseline: str | None = typer.Option(None, "--baseline", help="baseline scored alongside (default average)"),
    device: str | None = typer.Option(None, "--device"),
    no_progress: bool = typer.Option(False, "--no-progress"),
    compile_model: bool = typer.Option(False, "--compile", help="torch.compile the model (faster after warm-up)"),
) -> None:
    """Fuse a test split with a checkpoint and score it (and a baseline) with the metrics suite."""
    _setup_logging()
    if (data is None) == (demo_dir is None):
        _fail("give exactly one of --data DIR or --demo-dir DIR")
    from fusion.config import TaskConfig
    from fusion.data import build_dataset
    from fusion.train.distributed import resolve_device
    from fusion.train.evaluate import evaluate_dataset
    from fusion.train.inference import load_model
    from fusion.train.runner import demo_task_root

    model, ckpt = load_model(checkpoint, resolve_device(device), compile_model=compile_model)
    cfg = TaskConfig.from_dict(ckpt["config"])
    if data is None:
        from fusion.train.distributed import DistEnv
        root = demo_task_root(demo_dir, cfg.task, DistEnv(0, 1, 0, resolve_device(device)))
    else:
        root = data
        if not root.exists():
            _fail(f"--data {root} does not exist")
    ds = build_dataset(cfg.task, root, split, layout=layout, manifest=manifest, train=False, cfg=cfg)
    res = evaluate_dataset(model, ds, out, task=cfg.task, baseline=baseline, progress=not no_progress,
                           title=f"RWKVFusion {cfg.task}: {root} ({split})",
                           notes=[f"checkpoint {checkpoint} (step {ckpt.get('step')}, EMA weights)"])
    typer.echo(json.dumps({m: {k: round(v["mean"], 4) for k, v in s.items()} for m, s in res["methods"].items()},
                          indent=2))


def fuse(
    a: Path = typer.Option(..., "--a", help="source A image or folder (ir / MRI / under-exposed / far focus)"),
    b: Path = typer.Option(..., "--b", help="source B image or folder (visible / SPECT / over-exposed / near)"),
    out: Path = typer.Option(..., "--out", help="output image (one pair) or folder"),
    checkpoint: Path | None = typer.Option(None, "--checkpoint", help="trained model"),
    method: str | None = typer.Option(None, "--method", help="classical baseline instead of a checkpoint"),
    manifest: Path | None = typer.Option(None, "--manifest", help="manifest with captions/masks (guidance)"),
    device: str | None = typer.Option(None, "--device"),
    compile_model: bool = typer.Option(False, "--compile", help="torch.compile the model (faster after warm-up)"),
    tile: int | None = typer.Option(None, "--tile", help="tiled inference: tile side in pixels (large images)"),
    overlap: int = typer.Option(64, "--overlap", help="overlap of neighbouring tiles (with --tile)"),
    bf16: bool = typer.Option(False, "--bf16", help="bfloat16 autocast on CPU (faster; see the bench for accuracy)"),
) -> None:
    """Fuse registered image pairs (files, or folders matched by name); colour restored, size kept."""
    _setup_logging()
    if (checkpoint is None) == (method is None):
        _fail("give exactly one of --checkpoint PATH or --method NAME")
    from fusion.train.inference import fuse_files, pair_inputs

    try:
        pairs = pair_inputs(a, b)
    except (ValueError, FileNotFoundError) as err:
        _fail(str(err))
    fuse_y_for = None
    if method is not None:
        from fusion.baselines import get_method

        try:
            spec = get_method(method)
        except ValueError as err:
            _fail(str(err))
        if spec.kind != "fusion":
            _fail(f"--method {spec.name} is a pansharpening method; `fuse` fuses image pairs "
                  "(use `python -m fusion bench` or `evaluate` for pansharpening)")
        if manifest is not None:
            _fail("--manifest guides the network; classical --method baselines take no guidance")
        fuse_y = lambda ya, yb: spec.fn(ya, yb)  # noqa: E731
    else:
        from fusion.train.distributed import resolve_device
        from fusion.train.inference import load_model, model_fuse_y

        model, ckpt = load_model(checkpoint, resolve_device(device), compile_model=compile_model)
        if not model.cfg.is_fusion:
            _fail(f"checkpoint {checkpoint} is a {model.cfg.task} model; `fuse` handles vif/mif/mef/mff")
        fuse_y = model_fuse_y(model, tile=tile, overlap=overlap, bf16=True if bf16 else None)
        if manifest is not None:
            from fusion.train.guidance import manifest_guidance

            fuse_y_for = manifest_guidance(model, manifest)
    try:
        written = fuse_files(fuse_y, pairs, out, fuse_y_for=fuse_y_for)
    except ValueError as err:
        _fail(str(err))
    typer.echo(f"wrote {len(written)} fused image(s) to {out}")


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("evaluate")(evaluate)
    app.command("fuse")(fuse)
