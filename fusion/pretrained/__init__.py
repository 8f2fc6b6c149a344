"""Bundled trained models: one fp16 safetensors file per task, with its config and model card.

Files live in ``fusion/pretrained/weights/`` (installed as package data):

A bundle is named after its task (``vif``, ``mif``, ...); pansharpening bundles add their band count
(``pan4``, ``pan8``: one model per band count, ``bundle_name``).

- ``<task>.safetensors``: the EMA weights in float16 (loaded back as float32), safetensors only (no pickle);
- ``<task>.json``: ``{"format", "task", "config" (TaskConfig.to_dict()), "training" {...}, "validation",
  "test"}`` -- everything needed to rebuild the network and to say where the weights came from;
- ``<task>.md``: the model card (data, recipe, steps, wall time, validation and test metrics).

``load_pretrained(task)`` rebuilds the model; ``export_run(run_dir)`` writes the three files from a
training run (``python -m fusion.pretrained export --run runs/mif``).
"""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
FORMAT = 1


class NoBundledModel(FileNotFoundError):
    """No bundled model for a task (the message names the task and the bundled ones)."""


def bundle_name(config: dict[str, Any]) -> str:
    """The bundle name of a model config: its task, with the band count for pan/hmif (``pan4``)."""
    from fusion.config import TaskConfig

    cfg = TaskConfig.from_dict(dict(config))  # sectioned, or the flat form of older checkpoints
    return f"{cfg.task}{cfg.model.a_channels}" if cfg.task in ("pan", "hmif") else cfg.task


def bundled_tasks(weights_dir: Path | None = None) -> list[str]:
    """Tasks with a bundled model (both the .safetensors and the .json present)."""
    d = weights_dir or WEIGHTS_DIR
    if not d.is_dir():
        return []
    return sorted(p.stem for p in d.glob("*.safetensors") if p.with_suffix(".json").is_file())


def bundled_files(task: str, weights_dir: Path | None = None) -> tuple[Path, Path, Path]:
    """(weights, config json, model card) paths of ``task``; ``NoBundledModel`` when absent."""
    d = weights_dir or WEIGHTS_DIR
    w, j, md = d / f"{task}.safetensors", d / f"{task}.json", d / f"{task}.md"
    if not (w.is_file() and j.is_file()):
        have = bundled_tasks(d)
        raise NoBundledModel(f"no bundled model for task {task!r} (bundled: {', '.join(have) or 'none'}); "
                             "train one (make train TASK=... DATA=...) and pass --checkpoint, or use --method")
    return w, j, md


def read_card(j: Path) -> dict[str, Any]:
    """An exported model's JSON sidecar (``<task>.json``: format, task, config, training, ...), checked."""
    try:
        info = json.loads(Path(j).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{j}: not a readable JSON model sidecar ({err})") from err
    if not isinstance(info, dict) or not isinstance(info.get("config"), dict):
        raise ValueError(f"{j}: no 'config' object in this model sidecar")
    if int(info.get("format", 0)) > FORMAT:
        raise ValueError(f"{j}: format {info.get('format')} is newer than this code ({FORMAT})")
    return info


def bundled_info(task: str, weights_dir: Path | None = None) -> dict[str, Any]:
    """The JSON sidecar of the bundled model of ``task``."""
    _, j, _ = bundled_files(task, weights_dir)
    return read_card(j)


def load_pretrained(task: str, device: str | torch.device = "cpu", *, weights_dir: Path | None = None
                    ) -> nn.Module:
    """The bundled model of ``task`` in eval mode (float32 weights on ``device``); safetensors only
    (``fusion.train.inference.load_model`` reads the config from the JSON sidecar)."""
    from fusion.train.inference import load_model

    w, _, _ = bundled_files(task, weights_dir)
    return load_model(w, device)[0]


# --------------------------------------------------------------------------- export
def _wall_seconds(run: Path) -> float:
    """Training time summed from ``metrics.csv`` (sec_per_step x steps between rows; survives resumes)."""
    p = run / "metrics.csv"
    if not p.is_file():
        return float("nan")
    total, prev = 0.0, 0
    with p.open() as fh:
        for row in csv.DictReader(fh):
            try:
                step, sps = int(row["step"]), float(row["sec_per_step"])
            except (KeyError, ValueError):
                continue
            if step > prev:
                total += sps * (step - prev)
                prev = step
    return total


def export_run(run: str | Path, out_dir: Path | None = None, *, weights: str = "best",
               test: dict[str, Any] | None = None, notes: list[str] | None = None) -> tuple[Path, Path, Path]:
    """Write ``<task>.safetensors`` (fp16), ``<task>.json`` and ``<task>.md`` from a training run folder.

    ``weights="best"`` takes ``best.safetensors`` (best validated EMA weights) when the run has one, else the
    final EMA weights of ``checkpoint.pt`` (read with ``fusion.train.checkpoint.load_checkpoint``);
    ``"final"`` the latter; ``"step:<n>"`` the EMA weights validated at step n (``val_weights/``).
    ``test`` (from ``fusion.pretrained.testsets.evaluate_testsets``) is stored and tabulated in the card.
    """
    from safetensors.torch import load_file, save_file

    from fusion.train.checkpoint import load_checkpoint

    run = Path(run)
    ckpt = load_checkpoint(run / "checkpoint.pt")
    task = bundle_name(ckpt["config"])
    val = json.loads((run / "val.json").read_text()) if (run / "val.json").is_file() else None
    best = run / "best.safetensors"
    if weights == "best" and best.is_file():
        state = load_file(str(best))
        source = f"best validated EMA weights (step {val['best']['step'] if val else '?'})"
        step = int(val["best"]["step"]) if val else int(ckpt["step"])
    elif weights in ("best", "final"):
        state = ckpt["ema"]["module"] if ckpt.get("ema") else ckpt["model"]
        source, step = f"final EMA weights (step {ckpt['step']})", int(ckpt["step"])
    elif re.fullmatch(r"step:\d+", weights):
        from fusion.train.validate import snapshot_path

        step = int(weights.split(":")[1])
        snap = snapshot_path(run, step)
        if not snap.is_file():
            raise ValueError(f"export_run: {run} has no validated weights of step {step} ({snap} is absent)")
        state = load_file(str(snap))
        source = f"validated EMA weights of step {step} (chosen with --weights {weights})"
    else:
        raise ValueError(f"export_run: weights must be 'best', 'final' or 'step:<n>', got {weights!r}")
    out_dir = Path(out_dir or WEIGHTS_DIR)
    out_dir.mkdir(parents=True, exist_ok=True)
    half = {k: v.detach().to(torch.float16).contiguous().cpu() for k, v in state.items()}
    w = out_dir / f"{task}.safetensors"
    save_file(half, str(w), metadata={"task": task, "format": str(FORMAT)})
    settings = ckpt.get("settings") or {}
    extra = settings.get("extra") or {}
    training = {"run": run.name, "weights": source, "step": step, "steps_trained": int(ckpt["step"]),
                "total_steps": int(ckpt.get("total_steps", ckpt["step"])), "batch_size": ckpt.get("batch_size"),
                "seed": settings.get("seed"), "data": extra.get("data"), "recipe": extra.get("recipe"),
                "wall_seconds": round(_wall_seconds(run), 1), "world_size": ckpt.get("world_size"),
                "threads": extra.get("threads")}
    validated = {int(h["step"]): h for h in (val or {}).get("history", [])}
    info = {"format": FORMAT, "task": task, "config": ckpt["config"], "training": training,
            "validation": validated.get(step) if weights.startswith("step:") else (val or {}).get("best"),
            "test": test, "notes": notes or []}
    j = out_dir / f"{task}.json"
    j.write_text(json.dumps(info, indent=2, default=str) + "\n")
    md = out_dir / f"{task}.md"
    md.write_text(model_card(info))
    return w, j, md


def _listed(v: Any) -> Any:
    """Tuples as the lists the JSON sidecar shows."""
    return list(v) if isinstance(v, tuple) else v


def model_card(info: dict[str, Any]) -> str:
    """Markdown model card of a bundled model's JSON sidecar."""
    from fusion.config import TaskConfig

    t, tr = info["task"], info["training"]
    cfg = TaskConfig.from_dict(info["config"])  # the run's effective config (flat in older sidecars)
    rec = tr.get("recipe") or {}
    pan = cfg.task in ("pan", "hmif")
    data_note = ("top half of every scene with this band count (``scene_split='halves'``: train region + its "
                 "right quarter for validation); the bottom halves are held back for testing" if pan else
                 "synthetic multi-focus pairs (fusion.data.defocus: random focus maps, Gaussian defocus) of the "
                 "all-in-focus photographs found under the roots, the photograph as ground truth; validation "
                 "photographs carved from them, never the test sets" if cfg.data.synthetic == "defocus" else
                 "every dataset found under the roots; validation split carved from them, never the test sets")
    loss = (f"Eq. 19, L1 + {cfg.loss.pan_lambda} (1 - SSIM) against the reduced-resolution reference" if pan else
            f"Eq. 20 weights eta = {_listed(cfg.loss.eta)}, intensity target `{cfg.loss.intensity_target}`"
            + "".join(f" (`{v}` for {k})" for k, v in sorted(cfg.loss.intensity_target_by_dataset.items())) + ", "
            f"SSIM weights per {cfg.loss.ssim_weighting}, head base `{cfg.model.fusion_base}` (docs/ablations.md)"
            + (f", + {cfg.loss.gt_weight} L1(F, GT)" if cfg.data.synthetic == "defocus" else ""))
    lines = [f"# RWKVFusion {t}: bundled model", "",
             f"- Weights: `{t}.safetensors`, float16, {tr['weights']}.",
             f"- Data: {tr.get('data')} ({data_note}).",
             f"- Recipe: `{rec.get('name')}` -- batch {tr.get('batch_size')}, crop {_listed(cfg.data.crop_size)}, "
             f"lr {cfg.optim.lr} -> {cfg.optim.min_lr} cosine, EMA {rec.get('ema_decay')}, drop path "
             f"{cfg.model.drop_path}; seed {tr.get('seed')}.",
             f"- Steps: {tr['steps_trained']} of {tr['total_steps']} trained; exported step {tr['step']}; "
             f"wall time {tr['wall_seconds'] / 60:.1f} min ({tr.get('world_size')} process"
             + (f", {tr['threads']} threads" if tr.get("threads") else "") + ", CPU).",
             f"- Loss: {loss}.",
             "- Guidance: trained and run without text or masks (no manifests for these training sets).", ""]
    val = info.get("validation")
    if val:
        lines += [f"## Validation (step {val['step']}, carved split)", "",
                  "| metric | " + " | ".join(val["mean"]) + " |", "| --- |" + " --- |" * len(val["mean"]),
                  f"| mean over {'scenes' if pan else 'datasets'} | " + " | ".join(f"{v:.4f}" for v in val["mean"].values()) + " |", ""]
    test = info.get("test")
    if test:
        lines += test_tables(test)
    else:
        lines += ["## Test sets", "", "Not evaluated yet.", ""]
    for n in info.get("notes") or []:
        lines.append(f"- {n}")
    return "\n".join(lines).rstrip() + "\n"


def test_tables(test: dict[str, Any]) -> list[str]:
    """Markdown tables of ``evaluate_testsets`` results: one per test set, methods as rows."""
    lines = ["## Test sets", "", test.get("protocol", ""), ""]
    for ds, res in test["sets"].items():
        metrics = res["metrics"]
        reg = res.get("region")
        what = (f"held-back region: MS rows {reg['rows'][0]}:{reg['rows'][1]}, columns {reg['cols'][0]}:{reg['cols'][1]}; "
                f"sensor {reg['sensor'] or 'generic MTF'}" if reg else f"{res['pairs']} pairs")
        lines += [f"### {ds} ({what})", "",
                  "| method | " + " | ".join(metrics) + " |", "| --- |" + " --- |" * len(metrics)]
        for method, means in res["means"].items():
            cells = []
            for m in metrics:
                v = means.get(m, float("nan"))
                best = res["best"].get(m) == method
                cells.append(f"**{v:.4f}**" if best else f"{v:.4f}")
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        verdict = res.get("verdict")
        if verdict:
            lines += ["", verdict]
        lines.append("")
    return lines


__all__ = ["WEIGHTS_DIR", "NoBundledModel", "bundle_name", "bundled_tasks", "bundled_files", "bundled_info", "read_card", "load_pretrained",
           "export_run", "model_card"]
