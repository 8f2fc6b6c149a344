"""Short training ablations on the carved validation split (results table of docs/ablations.md).

``python -m fusion.train.ablate --task mif --data ../shared/data/train/mif --steps 200 [--only a,b]``
trains each named setting with the task's CPU recipe (``fusion.config.get_recipe``), a fixed seed and
the overrides below, for ``--steps`` steps, and appends one row per setting (steps, minutes, validation
metrics of the final EMA weights, mean and Qabf per dataset) to ``<out>/results.json`` and
``<out>/results.md``. ``--val-seed`` holds out other validation groups (``DataConfig.val_seed``: e.g. another
Harvard series per modality), so a setting can be cross-validated over several splits; ``--val-fraction`` holds out
more of each dataset (0.5: one of the two Harvard PET-MRI series too, which the default 0.1 keeps for training).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer

# name -> TaskConfig overrides on top of the CPU recipe
ABLATIONS: dict[str, dict[str, Any]] = {
    "eq20": {"fusion_base": "none"},                              # the paper's loss and head
    "int_max": {"intensity_target": "max"},
    "int_max_eta5": {"intensity_target": "max", "eta": (5.0, 2.0, 20.0)},   # half the pull to max(A, B)
    "int_max_ct": {"intensity_target_by_dataset": {"harvard/CT-MRI": "max"}},  # MIF: max(A, B) for CT-MRI only
    "bright_ct": {"intensity_target_by_dataset": {"harvard/CT-MRI": "bright"}},  # MIF: max(A, B) on CT bone only
    "bright": {"intensity_target": "bright"},                     # max(A, B) where a source is near white (VIF: hot IR)
    "int_exposed": {"intensity_target": "exposedness"},           # MEF: Mertens well-exposedness pixel weights
    "int_unclipped": {"intensity_target": "exposedness", "exposedness": (0.4, 8.0)},  # MEF: discount clipped pixels
    "int_exposed_blur8": {"intensity_target": "exposedness", "exposedness_blur": 8.0},  # MEF: smooth Mertens weights
    "int_blend8": {"intensity_target": "exposure_blend", "exposedness_blur": 8.0},  # MEF: low-pass of a blend
    "base_mean": {"fusion_base": "mean"},
    "base_mean+int_max": {"fusion_base": "mean", "intensity_target": "max"},
    "weights": {"fusion_base": "weights"},                        # per-pixel source weights + residual head
    "select": {"fusion_base": "select"},                          # per-pixel source weights, no residual
    "ssim_pixel": {"ssim_weighting": "pixel"},                     # SSIM weights per pixel, not per image
    "mef_ssim": {"ssim_weighting": "mef"},                         # MEF: 1 - MEF-SSIM(F; A, B) as the SSIM term
    "grad40": {"eta": (10.0, 2.0, 40.0)},                         # Eq. 20 with twice the gradient weight
    "hflip": {"flip": True},                                      # left-right mirror of half the crops
    "grad10": {"eta": (10.0, 2.0, 10.0)},                         # half the gradient weight (less over-sharpening?)
    "pet2": {"dataset_weights": {"harvard/PET-MRI": 2.0}},        # MIF: PET-MRI pairs drawn twice as often
    "ct3": {"dataset_weights": {"harvard/CT-MRI": 3.0}},          # MIF: CT-MRI pairs drawn three times as often
    "ct0": {"dataset_weights": {"harvard/CT-MRI": 0.0}},          # MIF: no CT-MRI training pairs (still validated)
    "lr3e-3": {"lr": 3e-3},
    "native_scale": {"crop_scale": (0.02, 0.3)},                  # MEF: crops near native resolution, not whole images
    "push2": {"exposure_gain": 2.0},                              # MEF: darker under / brighter over exposures
    "bf16": {"cpu_bf16": True},                                   # bf16 autocast of the CPU training forward
    "crop128": {"crop_size": (128, 128)},                         # run with --steps 50: same pixels as 200 x 64^2
}


def main(task: str = typer.Option(..., "--task"), data: list[Path] = typer.Option(..., "--data"),
         steps: int = typer.Option(200, "--steps"), only: str = typer.Option("", "--only"),
         out: Path = typer.Option(Path("runs/ablations"), "--out"),
         crop: int = typer.Option(64, "--crop", help="square training crop of the short runs"),
         seed: int = typer.Option(0, "--seed"),
         val_seed: int = typer.Option(0, "--val-seed", help="another validation split (DataConfig.val_seed)"),
         val_fraction: float | None = typer.Option(
             None, "--val-fraction", help="groups held out per dataset (DataConfig.val_fraction)")) -> None:
    from fusion.config import get_config, get_recipe
    from fusion.train.runner import run_training

    names = [n for n in only.split(",") if n and n != "baselines"] or list(ABLATIONS)
    if "baselines" in only.split(","):
        names = [n for n in only.split(",") if n and n != "baselines"]
    rec = get_recipe(task, "cpu")
    batch = rec.apply(get_config(task)).optim.batch_size
    split = {**({"val_seed": val_seed} if val_seed else {}),
             **({"val_fraction": val_fraction} if val_fraction is not None else {})}
    base: dict[str, Any] = {"crop_size": (crop, crop), **split}
    if task == "mif":  # exact windows of the 256x256 slices (no resampling), as the CPU recipe
        base.update(crop_scale=((crop / 256) ** 2,) * 2, crop_ratio=(1.0, 1.0))
    root = out / task
    root.mkdir(parents=True, exist_ok=True)
    results_path = root / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else []
    if "baselines" in only.split(","):
        results = [r for r in results if not r["setting"].startswith("baseline:")]
        results += baseline_rows(task, data, rec, split)
        results_path.write_text(json.dumps(results, indent=2))
        write_markdown(results, root / "results.md")
    for name in names:
        over = {**base, **ABLATIONS[name]}
        if "crop_size" in ABLATIONS[name] and task == "mif":
            c = ABLATIONS[name]["crop_size"][0]
            over.update(crop_scale=((c / 256) ** 2,) * 2)
        t0 = time.perf_counter()
        summary = run_training(task, root / name, data=data, recipe="cpu", steps=steps, seed=seed, overrides=over,
                               evaluate=False, progress=False, checkpoint_every=steps, log_every=25,
                               overwrite=True)
        row = {"setting": name, "overrides": {k: list(v) if isinstance(v, tuple) else v for k, v in over.items()},
               "steps": steps, "batch": batch, "minutes": round((time.perf_counter() - t0) / 60, 1),
               "last_loss": summary.get("last_loss"), "val": summary.get("best_validation"),
               "per_dataset": summary.get("best_validation_per_dataset", {})}
        results = [r for r in results if r["setting"] != name] + [row]
        results_path.write_text(json.dumps(results, indent=2))
        write_markdown(results, root / "results.md")
        typer.echo(json.dumps(row))


def baseline_rows(task: str, data: list[Path], rec: Any, split: dict[str, Any] | None = None
                  ) -> list[dict[str, Any]]:
    """The classical baselines scored on the same validation pairs (reference rows of the table); ``split``: the
    ``val_seed`` / ``val_fraction`` overrides of the rows."""
    from fusion.baselines import methods_for
    from fusion.config import get_config
    from fusion.data.multi import MultiDataset
    from fusion.train.validate import validate

    val = MultiDataset(task, data, "val", cfg=get_config(task, **(split or {})))
    rows = []
    for spec in methods_for(task):
        t0 = time.perf_counter()
        res = validate(spec.fn, val, max_pairs=rec.val_max_pairs, max_side=rec.val_max_side)
        rows.append({"setting": f"baseline:{spec.name}", "overrides": {}, "steps": 0, "batch": 0,
                     "minutes": round((time.perf_counter() - t0) / 60, 1), "last_loss": None,
                     "val": {"step": 0, **res["mean"]}, "per_dataset": res["per_dataset"]})
    return rows


def write_markdown(results: list[dict[str, Any]], path: Path) -> None:
    """The results table: mean validation metrics, and Qabf per dataset when there are several."""
    metrics = ("Qabf", "MI", "VIF", "SF", "Qy", "SSIM")
    names = sorted({d for r in results for d in r.get("per_dataset") or {}})
    names = names if len(names) > 1 else []
    head = ["Qabf", *(f"Qabf {d}" for d in names), *metrics[1:]]
    lines = ["| setting | steps | batch | minutes | " + " | ".join(head) + " |",
             "| --- | --- | --- | --- | " + " | ".join("---" for _ in head) + " |"]
    for r in results:
        v, per = r.get("val") or {}, r.get("per_dataset") or {}
        cells = [f"{v['Qabf']:.4f}" if "Qabf" in v else "-"]
        cells += [f"{per[d]['Qabf']:.4f}" if "Qabf" in per.get(d, {}) else "-" for d in names]
        cells += [f"{v[m]:.4f}" if m in v else "-" for m in metrics[1:]]
        lines.append(f"| {r['setting']} | {r['steps']} | {r['batch']} | {r['minutes']} | {' | '.join(cells)} |")
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    typer.run(main)
