"""Bench section 4: quality of the classical baselines, trained checkpoints and bundled models on the real
test pairs of ../shared/data."""
from __future__ import annotations

import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from fusion.bench.machine import _median
from fusion.bench.settings import REPO, BenchSettings


# ============================================================================ 4. quality
def _summarise(scores: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, dict[str, float]]]:
    """method -> metric -> {mean, std, n} (population std over pairs; NaNs dropped)."""
    from fusion.evaluation import summarise

    return {m: summarise(rows, keep_empty=False) for m, rows in scores.items()}


def find_checkpoints(task: str, runs_dir: Path | None = None) -> tuple[list[Path], list[str]]:
    """``runs/*/checkpoint.pt`` files trained for ``task`` (and notes on unreadable ones)."""
    from fusion.train.checkpoint import load_checkpoint

    found, notes = [], []
    for p in sorted((runs_dir or REPO / "runs").glob("*/checkpoint.pt")):
        try:
            ck = load_checkpoint(p)
        except (ValueError, FileNotFoundError) as err:
            notes.append(str(err))
            continue
        if str(ck.get("task", (ck.get("config") or {}).get("task"))) == task:
            found.append(p)
            notes.append(f"model:{p.parent.name} = {p} (step {ck.get('step')}, epoch {ck.get('epoch')}; EMA "
                         "weights, no text or mask)")
    return found, notes


def _bundled_fuser(task: str, notes: list[str]) -> Callable[[np.ndarray, np.ndarray], np.ndarray] | None:
    """Fusion fn(Y_a, Y_b) of the package's bundled model of ``task`` (``fusion.pretrained``), or None."""
    from fusion.evaluation import as_fuser
    from fusion.pretrained import NoBundledModel, bundled_info, load_pretrained

    try:
        model = load_pretrained(task)
    except NoBundledModel:
        notes.append(f"no bundled {task} model in fusion/pretrained/weights")
        return None
    tr = bundled_info(task)["training"]
    notes.append(f"bundled:{task} = fusion/pretrained/weights/{task}.safetensors ({tr['weights']}, recipe "
                 f"{(tr.get('recipe') or {}).get('name')}; no text or mask)")
    return as_fuser(model)


def _pan_model_fuser(path: Path) -> Callable[..., np.ndarray]:
    """Pan fn(ms, pan, ratio, max_value) of a checkpoint (``fusion.train.pansharpen.model_pansharpen``)."""
    from fusion.train.inference import load_model
    from fusion.train.pansharpen import model_pansharpen

    return model_pansharpen(load_model(path)[0])


def _fusion_inputs(pairs: list[tuple[str, Path, Path]], st: BenchSettings,
                   notes: list[str]) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(id, Y_a, Y_b) of each pair: luma in [0, 1], b resized to a when sizes differ, longer side <= max_side."""
    import cv2

    from rwkvfusion_io.images import read_luma

    for pid, pa, pb in pairs:
        a, b = read_luma(pa), read_luma(pb)
        if a.shape != b.shape:
            notes.append(f"{pid}: shapes {a.shape} vs {b.shape}; b resized to a")
            b = cv2.resize(b, (a.shape[1], a.shape[0]), interpolation=cv2.INTER_AREA)
        scale = st.max_side / max(a.shape)
        if scale < 1.0:  # same downscaled inputs for every method (keeps metrics and CPU models in budget)
            size = (max(16, round(a.shape[1] * scale)), max(16, round(a.shape[0] * scale)))
            a, b = (cv2.resize(x, size, interpolation=cv2.INTER_AREA) for x in (a, b))
        yield pid, a, b


def _quality_fusion(task: str, root: Path, st: BenchSettings) -> dict[str, Any]:
    from fusion.baselines import methods_for
    from fusion.evaluation import as_fuser, fusion_pair_scores, take_round_robin
    from rwkvfusion_io.layouts import fusion_pairs

    pairs = take_round_robin(fusion_pairs(task, root), st.max_pairs)
    methods: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {s.name: s.fn for s in methods_for(task)}
    cks, notes = find_checkpoints(task)
    bundled = _bundled_fuser(task, notes)
    if bundled is not None:
        methods[f"bundled:{task}"] = bundled
    for ck in cks:
        try:
            methods[f"model:{ck.parent.name}"] = as_fuser(ck)
        except Exception as err:  # noqa: BLE001 - reported
            notes.append(f"checkpoint {ck}: {type(err).__name__}: {err}")
    scores = fusion_pair_scores(_fusion_inputs(pairs, st, notes), methods)
    return {"pairs": [p[0] for p in pairs], "summary": scores.summary(keep_empty=False),
            "seconds_per_pair": {m: _median(v) for m, v in scores.seconds.items()}, "notes": notes,
            "protocol": (f"luma Y (BT.601) of each source in [0, 1], pairs larger than {st.max_side} px on the "
                         "longer side area-downscaled to it (same inputs for every method); metrics on the "
                         "0-255 scale (fusion.metrics.fusion_metrics, grey)")}


def _load_pan(path: Path) -> dict[str, Any]:
    """A .mat scene (``rwkvfusion_io.spectral.load_mat``) -> MS HxWxC and PAN HxW float64 in DN, sensor, bits, ratio."""
    from rwkvfusion_io.spectral import load_mat

    d = load_mat(path)
    ms = d.get("I_MS", d.get("I_MS_LR"))
    pan = d.get("I_PAN")
    if ms is None or pan is None:
        raise ValueError(f"{path}: expected keys I_MS (or I_MS_LR) and I_PAN, found {sorted(d)}")
    sensor = str(d["sensor"][0]) if "sensor" in d else ("WV3" if "WV3" in path.name else None)
    bits = int(np.asarray(d["L"]).ravel()[0]) if "L" in d else 11
    ratio = int(np.asarray(d["ratio"]).ravel()[0]) if "ratio" in d else pan.shape[0] // ms.shape[0]
    return {"ms": ms.astype(np.float64), "pan": pan.astype(np.float64), "sensor": sensor, "bits": bits, "ratio": ratio}


def _wald(ms: np.ndarray, pan: np.ndarray, ratio: int, sensor: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Reduced-resolution pair by Wald's protocol (``rwkvfusion_io.wald.wald_degrade``: sensor MTF + decimation)."""
    from rwkvfusion_io.wald import wald_degrade

    return wald_degrade(ms, pan, ratio=ratio, sensor=sensor)


def _bundled_pan(root: Path, notes: list[str]) -> dict[str, Any]:
    """Each bundled pansharpening model (``pan4``, ``pan8``) and every pan baseline on the held-back bottom
    halves of the scenes (the top halves trained it: ``fusion.pretrained.testsets.evaluate_pan_testsets``)."""
    from fusion.pretrained import bundled_tasks, load_pretrained
    from fusion.pretrained.testsets import evaluate_pan_testsets

    out: dict[str, Any] = {}
    for name in (n for n in bundled_tasks() if n.startswith("pan")):
        try:
            out[name] = evaluate_pan_testsets(load_pretrained(name), root, model_name=f"bundled:{name}")
        except Exception as err:  # noqa: BLE001 - reported
            notes.append(f"bundled {name}: {type(err).__name__}: {err}")
    if not out:
        notes.append("no bundled pansharpening model in fusion/pretrained/weights")
    return out


def _quality_pan(root: Path, st: BenchSettings) -> dict[str, Any]:
    from fusion.baselines import methods_for
    from fusion.metrics import pansharpening_metrics

    files = sorted((root / "pan").glob("*.mat"))[: st.max_pairs]
    methods: dict[str, Callable[..., np.ndarray]] = {s.name: s.fn for s in methods_for("pan")}
    cks, notes = find_checkpoints("pan")
    held_back = _bundled_pan(root, notes)
    for ck in cks:
        try:
            methods[f"model:{ck.parent.name}"] = _pan_model_fuser(ck)
        except Exception as err:  # noqa: BLE001 - reported
            notes.append(f"checkpoint {ck}: {type(err).__name__}: {err}")
    rr: dict[str, list[dict[str, float]]] = {m: [] for m in methods}
    fr: dict[str, list[dict[str, float]]] = {m: [] for m in methods}
    for f in files:
        d = _load_pan(f)
        ms, pan, ratio, sensor = d["ms"], d["pan"], d["ratio"], d["sensor"]
        maxv = float(2 ** d["bits"] - 1)
        ms_lr, pan_lr = _wald(ms, pan, ratio, sensor)
        # full resolution: a centre crop keeps QNR cheap
        c = min(st.pan_full_crop, pan.shape[0]) // ratio
        y0, x0 = (ms.shape[0] - c) // 2, (ms.shape[1] - c) // 2
        ms_c, pan_c = ms[y0:y0 + c, x0:x0 + c], pan[y0 * ratio:(y0 + c) * ratio, x0 * ratio:(x0 + c) * ratio]
        for name, fn in methods.items():
            kw: dict[str, Any] = ({"sensor": sensor} if name == "mtf-glp-hpm" else
                                  {"max_value": maxv} if name.startswith("model:") else {})
            try:
                fused = np.clip(fn(ms_lr, pan_lr, ratio, **kw), 0, maxv)
            except ValueError as err:  # e.g. a checkpoint trained for another band count
                notes.append(f"{f.name} {name}: {err}")
                continue
            m = pansharpening_metrics(fused, ms, ratio=ratio, sensor=sensor, max_value=maxv)
            rr[name].append({k: float(v) for k, v in m.items() if isinstance(v, (int, float, np.floating))})
            try:
                fused_full = np.clip(fn(ms_c, pan_c, ratio, **kw), 0, maxv)
                m = pansharpening_metrics(fused_full, None, ms=ms_c, pan=pan_c, ratio=ratio, sensor=sensor,
                                          max_value=maxv)
                fr[name].append({k: float(v) for k, v in m.items() if isinstance(v, (int, float, np.floating))})
            except Exception as err:  # noqa: BLE001 - full resolution is optional
                notes.append(f"{f.name} {name} full resolution: {type(err).__name__}: {err}")
    return {"images": [f.name for f in files], "reduced": _summarise(rr), "full": _summarise(fr), "notes": notes,
            "held_back": held_back,
            "protocol": "reduced resolution by Wald's protocol (rwkvfusion_io.wald.wald_degrade, sensor MTF gains), "
                        "reference = original MS; "
                        f"full resolution (D_lambda, D_s, HQNR) on a centre crop of {st.pan_full_crop} PAN pixels"}


def section_quality(out_dir: Path, st: BenchSettings, data_root: Path) -> dict[str, Any]:
    """Every applicable baseline (and checkpoint) on the real pairs, mean and std per method."""
    if not data_root.is_dir():
        return {"skipped": f"real data folder {data_root} is absent (set RWKVFUSION_SHARED_DATA)"}
    res: dict[str, Any] = {"data_root": str(data_root), "max_pairs": st.max_pairs, "tasks": {}}
    for task in st.quality_tasks:
        try:
            res["tasks"][task] = _quality_pan(data_root, st) if task == "pan" else _quality_fusion(task, data_root, st)
        except Exception as err:  # noqa: BLE001 - one task failing must not hide the others
            res["tasks"][task] = {"error": f"{type(err).__name__}: {err}", "trace": traceback.format_exc(limit=3)}
    return res
