"""``python -m fusion train | evaluate | fuse`` (registered into fusion.cli)."""
from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import typer

T = TypeVar("T")

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


def one_line(err: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty)."""
    lines = str(err).strip().splitlines()
    text = lines[0] if lines else ""
    if isinstance(err, KeyError) or not text:  # KeyError quotes its key; bare errors say nothing
        text = f"{type(err).__name__}: {text}" if text else type(err).__name__
    return text


def _run(debug: bool, fn: Callable[[], T]) -> T:
    """``fn()``, with any failure printed as one ``error:`` line (exit 1); ``--debug`` shows the traceback."""
    try:
        return fn()
    except (typer.Exit, typer.Abort, KeyboardInterrupt):
        raise
    except Exception as err:  # noqa: BLE001 - the CLI reports every failure in one line
        if debug:
            raise
        typer.echo(f"error: {one_line(err)} (run with --debug for the traceback)", err=True)
        raise typer.Exit(1) from None


DEBUG_HELP = "show the full traceback of an error"
HASH_HELP = "a source file whose sha256 differs from the manifest: error (default) or skip (use it unguided)"


def _baseline_names() -> str:
    from fusion.baselines import METHODS

    return ", ".join(sorted(n for n, s in METHODS.items() if s.kind == "fusion"))


def train(
    task: str = typer.Option(..., "--task", help=TASK_HELP),
    out: Path = typer.Option(None, "--out", help="run folder (default runs/<task>)"),
    data: list[Path] | None = typer.Option(None, "--data", help="dataset root (repeat for several; every "
                                            "dataset found under it is used); omitted = embedded demo data"),
    manifest: Path | None = typer.Option(None, "--manifest", help="Parquet manifest (file or folder)"),
    recipe: str | None = typer.Option(None, "--recipe", help="paper (Table 1, default with --data) | cpu "
                                      "(2-core budget); numbers in fusion.config"),
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
    bands: int | None = typer.Option(None, "--bands", help="pan/hmif: MS/HS band count of the model (scenes "
                                     "with other band counts under --data are skipped)"),
    no_eval: bool = typer.Option(False, "--no-eval", help="skip the test-split evaluation and report"),
    no_progress: bool = typer.Option(False, "--no-progress", help="no progress bar"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace a run already in --out (default: refuse)"),
    hash_mismatch: str = typer.Option("error", "--hash-mismatch", help=HASH_HELP),
    debug: bool = typer.Option(False, "--debug", help=DEBUG_HELP),
    compile_model: bool = typer.Option(False, "--compile", help="torch.compile the blocks' elementwise regions (forward and backward; "
                                       "fusion.model.pointwise)"),
) -> None:
    """Train TASK (demo data unless --data); writes checkpoint.pt, metrics.json, fused/ and report.html."""
    from fusion.config import TASKS

    _setup_logging()
    if task not in TASKS:
        _fail(f"--task {task!r}: expected one of {', '.join(TASKS)}")
    from fusion.config import RECIPES

    if recipe is not None and recipe not in RECIPES:
        _fail(f"--recipe {recipe!r}: expected one of {', '.join(RECIPES)}")
    data = list(data) if data else None
    if data is None and manifest is not None:
        _fail("--manifest needs --data (the demo data carries its own guidance)")
    overrides = {}
    if crop:
        try:
            h, w = (int(x) for x in crop.lower().split("x"))
        except ValueError:
            _fail(f"--crop {crop!r}: expected HxW such as 128x128")
        overrides["crop_size"] = (h, w)
    if bands is not None:
        if task not in ("pan", "hmif") or bands < 1:
            _fail(f"--bands {bands}: only for pan/hmif, and at least 1")
        overrides["bands"] = bands
    if hash_mismatch not in ("error", "skip"):
        _fail(f"--hash-mismatch {hash_mismatch!r}: expected error or skip")
    from fusion.train.runner import run_training

    summary = _run(debug, lambda: run_training(
        task, out or Path("runs") / task, data=data, manifest=manifest, recipe=recipe, demo_dir=demo_dir,
        layout=layout, steps=steps, epochs=epochs, batch_size=batch_size, device=device,
        resume=resume, stop_after=stop_after, seed=seed, num_workers=workers,
        checkpoint_every=checkpoint_every, log_every=log_every, overrides=overrides, evaluate=not no_eval,
        progress=not no_progress, hash_mismatch=hash_mismatch, overwrite=overwrite, compile_model=compile_model))
    import os
    if int(os.environ.get("RANK", "0")) == 0:
        brief = {k: summary[k] for k in ("steps", "skipped", "last_loss", "train_seconds", "checkpoint",
                                         "best_validation")
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
    hash_mismatch: str = typer.Option("error", "--hash-mismatch", help=HASH_HELP),
    debug: bool = typer.Option(False, "--debug", help=DEBUG_HELP),
    compile_model: bool = typer.Option(False, "--compile", help="torch.compile the blocks' elementwise regions "
                                       "(fusion.model.pointwise)"),
) -> None:
    """Fuse a test split with a checkpoint and score it (and a baseline) with the metrics suite."""
    _setup_logging()
    if (data is None) == (demo_dir is None):
        _fail("give exactly one of --data DIR or --demo-dir DIR")
    if hash_mismatch not in ("error", "skip"):
        _fail(f"--hash-mismatch {hash_mismatch!r}: expected error or skip")
    _run(debug, lambda: _evaluate(checkpoint, out, data, demo_dir, manifest, split, layout, baseline, device,
                                  no_progress, hash_mismatch, compile_model))


def _evaluate(checkpoint: Path, out: Path, data: Path | None, demo_dir: Path | None, manifest: Path | None,
              split: str, layout: str, baseline: str | None, device: str | None, no_progress: bool,
              hash_mismatch: str, compile_model: bool = False) -> None:
    from fusion.config import TaskConfig
    from fusion.data import build_dataset
    from fusion.train.evaluate import evaluate_dataset
    from fusion.train.inference import load_model
    from fusion.train.runner import demo_task_root
    from rwkvfusion_io.distributed import resolve_device

    model, ckpt = load_model(checkpoint, resolve_device(device), compile_model=compile_model)
    cfg = TaskConfig.from_dict(ckpt["config"])
    if data is None:
        from rwkvfusion_io.distributed import DistEnv
        root = demo_task_root(demo_dir, cfg.task, DistEnv(0, 1, 0, resolve_device(device)))
    else:
        root = data
        if not root.exists():
            _fail(f"--data {root} does not exist")
        from fusion.train.inference import warn_task_mismatch

        if root.is_dir():
            kids = [p for p in sorted(root.iterdir()) if p.is_dir()]
            warn_task_mismatch(checkpoint, cfg.task, *kids, *(q for k in kids for q in sorted(k.iterdir())
                                                               if q.is_dir()))
    ds = build_dataset(cfg.task, root, split, layout=layout, manifest=manifest, train=False, cfg=cfg,
                       hash_mismatch=hash_mismatch)
    res = evaluate_dataset(model, ds, out, task=cfg.task, baseline=baseline, progress=not no_progress,
                           title=f"RWKVFusion {cfg.task}: {root} ({split})",
                           notes=[f"checkpoint {checkpoint} (step {ckpt.get('step')}, EMA weights)"])
    typer.echo(json.dumps({m: {k: round(v["mean"], 4) for k, v in s.items()} for m, s in res["methods"].items()},
                          indent=2))


def _report_written(written: list[Path], failures: list[tuple[str, str]], total: int, out: Path, unit: str,
                    what: str) -> None:
    """One error line per failed input, a summary line; exit status 1 when anything failed."""
    for name, why in failures:
        typer.echo(f"error: {unit} {name!r}: {why}", err=True)
    typer.echo(f"wrote {len(written)} {what}(s) to {out}"
               + (f"; {len(failures)} of {total} {unit}(s) failed (listed above)" if failures else ""))
    if failures:
        raise typer.Exit(1)


def _checkpoint_task(checkpoint: Path) -> str | None:
    """The task a checkpoint was trained for (None when it cannot be read: the fuse path reports that)."""
    try:
        from fusion.train.checkpoint import load_checkpoint

        return str(load_checkpoint(checkpoint)["config"]["task"])
    except Exception:  # noqa: BLE001 - the regular loader names the problem
        return None


def _pansharpen(a: Path, b: Path, out: Path, checkpoint: Path | None, device: str | None, debug: bool,
                tile: int | None, overlap: int) -> None:
    """``fuse --task pan``: MS + PAN scenes -> pansharpened TIFFs (``fusion.train.pansharpen``)."""
    from fusion.train.inference import pair_inputs
    from fusion.train.pansharpen import SCENE_EXTS, model_pansharpen, pansharpen_files, read_scene_image
    from rwkvfusion_io.distributed import resolve_device

    try:
        scenes = pair_inputs(a, b, SCENE_EXTS)
    except (ValueError, FileNotFoundError) as err:
        _fail(str(err))
    if checkpoint is not None:
        from fusion.train.inference import load_model

        model, _ = _run(debug, lambda: load_model(checkpoint, resolve_device(device)))
    else:
        from fusion.pretrained import NoBundledModel, bundled_files, load_pretrained

        bands = _run(debug, lambda: read_scene_image(scenes[0][1], "ms")[0].shape[2])
        try:
            bundled_files(f"pan{bands}")
        except NoBundledModel as err:
            _fail(f"{scenes[0][1]} has {bands} bands: {err}")
        model = _run(debug, lambda: load_pretrained(f"pan{bands}", resolve_device(device)))
    failures: list[tuple[str, str]] = []
    written = _run(debug, lambda: pansharpen_files(model_pansharpen(model, tile=tile, overlap=overlap), scenes, out,
                                                   failures=None if debug else failures))
    _report_written(written, failures, len(scenes), out, "scene", "pansharpened image")


def fuse(
    a: Path = typer.Option(..., "--a", help="source A image or folder (ir / MRI / under-exposed / far focus)"),
    b: Path = typer.Option(..., "--b", help="source B image or folder (visible / SPECT / over-exposed / near)"),
    out: Path = typer.Option(..., "--out", help="output image (one pair) or folder"),
    checkpoint: Path | None = typer.Option(None, "--checkpoint", help="trained model"),
    method: str | None = typer.Option(None, "--method",
                                      help=f"classical baseline instead of a checkpoint: {_baseline_names()}"),
    task: str | None = typer.Option(None, "--task", help="vif | mif | mef | mff | pan: the bundled model of the "
                                    "task (used when neither --checkpoint nor --method is given; pan: the model "
                                    "of the MS band count, --a MS and --b PAN scenes)"),
    manifest: Path | None = typer.Option(None, "--manifest", help="manifest with captions/masks (guidance)"),
    device: str | None = typer.Option(None, "--device"),
    debug: bool = typer.Option(False, "--debug", help=DEBUG_HELP),
    compile_model: bool = typer.Option(False, "--compile", help="torch.compile the blocks' elementwise regions "
                                       "(fusion.model.pointwise)"),
    tile: int | None = typer.Option(None, "--tile", help="tiled inference: tile side in pixels (large images)"),
    overlap: int = typer.Option(64, "--overlap", help="overlap of neighbouring tiles (with --tile)"),
    bf16: bool = typer.Option(False, "--bf16", help="bfloat16 autocast on CPU (less memory; on AVX-512 CPUs no "
                              "faster than the fused float32 path: see the bench for speed and accuracy)"),
) -> None:
    """Fuse registered image pairs (files, or folders matched by name); colour restored, size kept.

    Over folders, a pair that cannot be fused is reported and the others are still fused; the exit
    status is 1 when any pair failed.
    """
    _setup_logging()
    if checkpoint is not None and method is not None:
        _fail("give only one of --checkpoint PATH, --method NAME or --task TASK (bundled model)")
    if checkpoint is None and method is None and task is None:
        _fail("give --task TASK (the bundled model), --checkpoint PATH or --method NAME")
    if task == "pan" or (checkpoint is not None and method is None and _checkpoint_task(checkpoint) == "pan"):
        return _pansharpen(a, b, out, checkpoint, device, debug, tile, overlap)
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
        from fusion.train.inference import load_model, model_fuse_y, warn_task_mismatch
        from rwkvfusion_io.distributed import resolve_device

        if checkpoint is None:  # the bundled model of --task
            from fusion.config import FUSION_TASKS
            from fusion.pretrained import NoBundledModel, bundled_files, load_pretrained

            if task not in FUSION_TASKS:
                _fail(f"--task {task!r}: `fuse` fuses image pairs of {', '.join(FUSION_TASKS)}")
            try:
                bundled_files(task)
            except NoBundledModel as err:
                _fail(str(err))
            model = _run(debug, lambda: load_pretrained(task, resolve_device(device)))
        else:
            model, _ckpt = _run(debug, lambda: load_model(checkpoint, resolve_device(device)))
            if task is not None and model.cfg.task != task:
                _fail(f"--task {task} but checkpoint {checkpoint} is a {model.cfg.task} model")
        if compile_model:                                   # either model: its elementwise regions compiled
            from fusion.model.pointwise import compile_regions

            compile_regions(model)
        if not model.cfg.is_fusion:
            _fail(f"checkpoint {checkpoint} is a {model.cfg.task} model; `fuse` handles vif/mif/mef/mff")
        warn_task_mismatch(checkpoint or f"(bundled {model.cfg.task} model)", model.cfg.task, a, b)
        fuse_y = model_fuse_y(model, tile=tile, overlap=overlap, bf16=True if bf16 else None)
        if manifest is not None:
            from fusion.train.guidance import manifest_guidance

            fuse_y_for = _run(debug, lambda: manifest_guidance(model, manifest))
    failures: list[tuple[str, str]] = []
    written = _run(debug, lambda: fuse_files(fuse_y, pairs, out, fuse_y_for=fuse_y_for,
                                             failures=None if debug else failures))
    _report_written(written, failures, len(pairs), out, "pair", "fused image")


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("evaluate")(evaluate)
    app.command("fuse")(fuse)
