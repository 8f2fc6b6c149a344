"""``python -m annotate run``: annotate a dataset into a Parquet manifest directory.

Deterministic sample order; rank ``r`` of a ``torchrun`` launch (``RANK``/``WORLD_SIZE``/``LOCAL_RANK``)
takes samples ``i`` with ``i % world == r`` and writes its own part files (``part-rRRR-NNNNN.parquet``,
atomic); without torchrun it runs single-process. Resumable: samples whose latest row is ``ok`` (and,
unless ``--redo-errors``, ``error``) are skipped, so a killed run loses at most its unwritten buffer.
A wrong model path or a manifest of another schema version fails before any sample is processed.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import typer

ROLE_OPTIONS = ("captioner", "text_encoder", "detector", "segmenter")


@dataclass
class RunSummary:
    """What one rank did: shard size, skipped (already done), rows written (ok / error), part files."""

    rank: int
    world: int
    samples: int
    shard: int
    skipped: int
    written: int = 0
    errors: int = 0
    parts: list[str] = field(default_factory=list)
    timings: dict[str, dict[str, float]] = field(default_factory=dict)


def dist_env() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from the torchrun environment; ``(0, 1, 0)`` otherwise."""
    try:
        return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))
    except ValueError as e:
        raise ValueError(f"bad torchrun environment (RANK/WORLD_SIZE/LOCAL_RANK): {e}") from e


def model_sources_from_dir(model_dir: str | Path, needed: dict[str, bool]) -> dict[str, str]:
    """``{role: DIR/role}`` for each needed role; ValueError naming the missing subdirectory."""
    root = Path(model_dir)
    if not root.is_dir():
        raise ValueError(f"--model-dir {root} does not exist or is not a directory")
    out = {}
    for role in ROLE_OPTIONS:
        if needed.get(role):
            d = root / role
            if not d.is_dir():
                raise ValueError(f"--model-dir {root} has no {role}/ subdirectory (needed by this task's stages)")
            out[role] = str(d)
    return out


def _init_dist(world: int, device: str | None) -> bool:
    if world <= 1:
        return False
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        use_nccl = torch.cuda.is_available() and (device is None or device.startswith("cuda"))
        dist.init_process_group(backend="nccl" if use_nccl else "gloo")
    return True


def _shared_created(distributed: bool, created: str | None) -> str:
    value = created or datetime.now(timezone.utc).isoformat(timespec="seconds")
    if distributed:  # one provenance time for the whole run: rank 0's
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        value = box[0]
    return value


def run_annotation(task: str, data: str | Path, out: str | Path, *, split: str | None = None,
                   dataset: str | None = None, config_path: str | Path | None = None,
                   overrides: dict[str, Any] | None = None, model_dir: str | Path | None = None,
                   model_sources: dict[str, str] | None = None, device: str | None = None,
                   dtype: str | None = None, batch_size: int = 4, redo_errors: bool = False,
                   rows_per_part: int = 16, progress: bool = True, created: str | None = None,
                   on_row: Callable[[dict[str, Any]], None] | None = None) -> RunSummary:
    """Annotate ``data`` for ``task`` into the manifest directory ``out`` (this rank's shard).

    ``overrides``: nested config values (:func:`annotate.config.load_config`); ``model_dir``: a folder
    with ``captioner/ text_encoder/ detector/ segmenter/``; ``model_sources``: ``{role: id or dir}``
    (wins over both). ``on_row`` is called after each row is handed to the writer (tests use it to
    interrupt a run). ``created`` fixes the provenance time (default: now, UTC; rank 0's under torchrun).
    """
    from annotate.config import load_config
    from annotate.discover import discover_samples
    from annotate.pipeline import Annotator
    from manifests import ManifestWriter, status_by_id
    from manifests.io import printable

    rank, world, _ = dist_env()
    out = Path(out)
    previous = status_by_id(out)            # SchemaError (naming the file) for another schema version
    cfg = load_config(task, config_path, overrides)
    sources = dict(model_sources_from_dir(model_dir, cfg.needs)) if model_dir is not None else {}
    sources.update(model_sources or {})
    if sources:
        cfg = load_config(task, config_path, _with_models(overrides, sources))
    samples = discover_samples(data, split, task=task, label_dir=cfg.dataset_labels.dir if cfg.dataset_labels.enabled else None)
    distributed = _init_dist(world, device)
    try:
        annotator = Annotator(cfg, dataset=dataset or Path(data).resolve().name.lower(), device=device, dtype=dtype,
                              batch_size=batch_size, created=None)
        annotator.created = _shared_created(distributed, created)
        if rank == 0 and previous:
            _warn_other_configs(out, annotator.config_hash)
        skip_status = {"ok"} if redo_errors else {"ok", "error"}
        shard = [s for i, s in enumerate(samples) if i % world == rank]
        # rows store ids that UTF-8 cannot encode (undecodable file names) escaped: compare them that way
        todo = [s for s in shard if previous.get(printable(s.sample_id)) not in skip_status]
        summary = RunSummary(rank, world, len(samples), len(shard), len(shard) - len(todo))
        bar = _progress(len(todo), enabled=progress and rank == 0, desc=f"annotate {task}")
        try:
            with ManifestWriter.for_rank(out, rank, rows_per_part=rows_per_part) as writer:
                for row in annotator.rows(todo):
                    writer.write(row)
                    summary.written += 1
                    summary.errors += row["status"] == "error"
                    bar.update(1)
                    bar.set_postfix(errors=summary.errors, refresh=False)
                    if on_row is not None:
                        on_row(row)
        finally:
            bar.close()
            summary.timings = {k: dict(v) for k, v in annotator.timings.items()}
        summary.parts = [str(p) for p in writer.paths]
        if distributed:
            import torch.distributed as dist

            dist.barrier()
        return summary
    finally:
        if distributed:
            import torch.distributed as dist

            dist.destroy_process_group()


def _warn_other_configs(out: Path, current: str) -> None:
    # Resuming under another configuration mixes settings in one manifest: say so (rows are kept).
    import pyarrow.parquet as pq

    from manifests import manifest_files

    hashes = {h for f in manifest_files(out) for h in pq.read_table(f, columns=["config_hash"]).column(0).to_pylist()}
    others = sorted(h for h in hashes if h and h != current)
    if others:
        print(f"warning: {out} holds rows annotated with other configurations (config_hash {', '.join(h[:12] for h in others)}; "
              f"now {current[:12]}); they are kept and skipped -- use a new --out to re-annotate everything",
              file=sys.stderr)


def _with_models(overrides: dict[str, Any] | None, sources: dict[str, str]) -> dict[str, Any]:
    merged = dict(overrides or {})
    merged["models"] = {**dict(merged.get("models") or {}), **sources}
    return merged


def _progress(total: int, *, enabled: bool, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="pair", disable=not enabled, dynamic_ncols=True, file=sys.stderr)


def register(app: typer.Typer) -> None:
    """Add the ``run`` command to the ``annotate`` CLI."""

    @app.command("run")
    def run_cmd(
        task: str = typer.Option(..., help="fusion task: vif, mif, mef, mff, pan, hmif"),
        data: Path = typer.Option(..., help="dataset root (layouts: see annotate/discover.py)"),
        out: Path = typer.Option(..., help="manifest directory (part files are added; re-runs resume)"),
        split: str | None = typer.Option(None, envvar="ANNOTATE_SPLIT",
                                          help="split folder to annotate (default: all / 'all')"),
        dataset: str | None = typer.Option(None, help="dataset name for the manifest (default: root folder name)"),
        config: Path | None = typer.Option(None, envvar="ANNOTATE_CONFIG",
                                           help="YAML file layered over the task's configuration"),
        model_dir: Path | None = typer.Option(None, envvar="ANNOTATE_MODEL_DIR",
                                              help="folder with captioner/ text_encoder/ detector/ segmenter/"),
        captioner: str | None = typer.Option(None, help="Florence-2 hub id or local directory"),
        text_encoder: str | None = typer.Option(None, help="T5 hub id or local directory"),
        detector: str | None = typer.Option(None, help="Grounding DINO hub id or local directory"),
        segmenter: str | None = typer.Option(None, help="SAM hub id or local directory"),
        dataset_labels: bool | None = typer.Option(None, "--dataset-labels/--generated-masks",
                                                   help="use the dataset's segmentation labels (MSRS)"),
        device: str | None = typer.Option(None, help="torch device (default: cuda:LOCAL_RANK if available, else cpu)"),
        dtype: str | None = typer.Option(None, help="bf16, fp16 or fp32 (default: bf16 on CUDA, fp32 on CPU)"),
        batch_size: int = typer.Option(4, min=1, help="images per model call"),
        rows_per_part: int = typer.Option(16, min=1, help="rows per Parquet part file"),
        redo_errors: bool = typer.Option(False, help="retry samples whose latest row is an error"),
        progress: bool = typer.Option(True, help="show a progress bar (rank 0)"),
    ) -> None:
        """Caption, encode, detect, segment and merge masks for a dataset; write Parquet manifest parts."""
        from annotate.models.base import ModelLoadError
        from manifests import SchemaError

        sources = {k: v for k, v in (("captioner", captioner), ("text_encoder", text_encoder),
                                     ("detector", detector), ("segmenter", segmenter)) if v}
        overrides = {} if dataset_labels is None else {"dataset_labels": {"enabled": dataset_labels}}
        try:
            s = run_annotation(task, data, out, split=split, dataset=dataset, config_path=config, overrides=overrides,
                               model_dir=model_dir, model_sources=sources, device=device, dtype=dtype,
                               batch_size=batch_size, redo_errors=redo_errors, rows_per_part=rows_per_part,
                               progress=progress)
        except (ModelLoadError, SchemaError, FileNotFoundError, ValueError) as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from e
        typer.echo(f"rank {s.rank}/{s.world}: {s.shard} of {s.samples} samples in this shard, {s.skipped} already done, "
                   f"{s.written} annotated ({s.errors} errors) -> {out}")
        if s.rank == 0:  # every rank has passed the final barrier: the manifest is complete for this run
            from manifests import status_by_id

            status = status_by_id(out)
            n_err = sum(v == "error" for v in status.values())
            typer.echo(f"manifest {out}: {len(status)} rows for {s.samples} samples ({len(status) - n_err} ok, "
                       f"{n_err} error; retry errors with --redo-errors)")
