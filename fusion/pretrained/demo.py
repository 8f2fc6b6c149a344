"""``python -m fusion demo``: the bundled models against the classical baselines on real pairs, as one HTML page.

For every fusion task (vif, mif, mef, mff) a few pairs are taken, round-robin over the task's test sets, from
the shared real test data (``--data``, default ``../shared/data``), or from the embedded demo data
(``fusion.demo``) when that folder is absent. Each pair (area-downscaled to ``--max-side``) is fused by
the task's bundled model (``fusion.pretrained``) and every baseline of ``fusion.baselines``, scored with the
acceptance metrics and written to ``<out>/report.html``. Tasks without a bundled model show the baselines
and say so. Pansharpening: each bundled model (``pan4``, ``pan8``) and every pan baseline on the held-back
bottom halves of the shared scenes (``fusion.pretrained.testsets.evaluate_pan_testsets``), as false colour. About 30 s on two CPU cores with the defaults.
"""
from __future__ import annotations

import html
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from fusion.pretrained.testsets import LOWER, TEST_METRICS

DEMO_TASKS = ("vif", "mif", "mef", "mff", "pan")
FUSION_DEMO_TASKS = DEMO_TASKS[:4]


def demo_pairs(task: str, data: Path | None, demo_dir: Path, n: int) -> tuple[list[tuple[str, Path, Path]], str]:
    """Up to ``n`` (id, a, b) pairs: real shared test pairs when ``data`` exists, else the embedded demo test split."""
    from fusion.evaluation import take_round_robin
    from rwkvfusion_io.layouts import fusion_pairs

    if data is not None and data.is_dir():
        groups = fusion_pairs(task, data)
        if groups:
            return take_round_robin(groups, n), f"real test pairs from {data}"
    from fusion.demo import build_demo_data
    from rwkvfusion_io.layouts import list_pairs

    if not (demo_dir / task).is_dir():
        build_demo_data(demo_dir, tasks=[task])
    records, _ = list_pairs(task, demo_dir / task, "test")
    return [(f"demo/{r.id}", r.a, r.b) for r in records[:n]], f"embedded demo pairs ({demo_dir}; stand-ins)"


def _fit(img: np.ndarray, max_side: int) -> np.ndarray:
    import cv2

    s = max_side / max(img.shape[:2])
    if s >= 1.0:
        return img
    size = (max(16, round(img.shape[1] * s)), max(16, round(img.shape[0] * s)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def run_demo(out: Path, *, data: Path | None, demo_dir: Path, pairs: int = 3, max_side: int = 384,
             tasks: tuple[str, ...] = DEMO_TASKS) -> Path:
    """Write ``out/report.html`` (+ images, ``results.json``); returns the report path."""
    from fusion.baselines import methods_for
    from fusion.evaluation import score_fusion
    from fusion.metrics import rgb2gray
    from fusion.pretrained import NoBundledModel, bundled_info, load_pretrained
    from fusion.train.inference import fuse_arrays, model_fuse_y, read_image, write_image

    t_start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    sections, results = [], {}
    for task in (t for t in tasks if t in FUSION_DEMO_TASKS):
        methods: dict[str, Any] = {}
        note = ""
        try:
            model = load_pretrained(task)
            info = bundled_info(task)
            methods["rwkvfusion"] = model_fuse_y(model)
            tr = info["training"]
            note = (f"bundled model: {tr['weights']}, {tr['steps_trained']} steps, recipe "
                    f"{(tr.get('recipe') or {}).get('name')} (fusion/pretrained/weights/{task}.md)")
        except NoBundledModel as err:
            note = str(err)
        for spec in methods_for(task):
            methods[spec.name] = spec.fn
        plist, source = demo_pairs(task, data, demo_dir, pairs)
        scores: dict[str, list[dict[str, float]]] = {m: [] for m in methods}
        rows = []
        for pid, pa, pb in plist:
            a, b = _fit(read_image(pa), max_side), _fit(read_image(pb), max_side)
            stem = pid.replace("/", "_")
            cells = [("source a", write_image(out / task / f"{stem}_a.png", a)),
                     ("source b", write_image(out / task / f"{stem}_b.png", b))]
            grey = lambda x: (rgb2gray(x * 255.0) if x.ndim == 3 and x.shape[2] == 3  # noqa: E731
                              else x.reshape(x.shape[:2]) * 255.0)
            for m, fn in methods.items():
                f = fuse_arrays(fn, a, b)
                cells.append((m, write_image(out / task / f"{stem}_{m}.png", f)))
                scores[m].append(score_fusion(grey(f), grey(a), grey(b), scale=1.0, metrics=TEST_METRICS))
            rows.append((pid, cells))
        summary = {m: {k: {"mean": float(np.mean([s[k] for s in v])), "std": float(np.std([s[k] for s in v]))}
                       for k in TEST_METRICS} for m, v in scores.items() if v}
        results[task] = {"source": source, "pairs": [p[0] for p in plist], "summary": summary, "note": note}
        sections.append(_section(task, source, note, summary, rows, out))
    if "pan" in tasks:
        sec, res = _pan_section(out, data)
        sections.append(sec)
        results["pan"] = res
    seconds = time.perf_counter() - t_start
    (out / "results.json").write_text(json.dumps(results, indent=2))
    page = ["<!doctype html><html><head><meta charset='utf-8'><title>RWKVFusion demo</title><style>",
            "body{font-family:sans-serif;margin:1.5em} table{border-collapse:collapse;margin:0.5em 0}",
            "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px} img{max-width:180px;display:block}",
            "figure{display:inline-block;margin:4px;vertical-align:top} figcaption{font-size:12px}",
            "</style></head><body><h1>RWKVFusion: bundled models vs classical baselines</h1>",
            f"<p>{len(tasks)} tasks, up to {pairs} pairs each, downscaled to {max_side} px; metrics on grey 0-255 "
            f"(Qcv: lower is better); {seconds:.0f} s. The full test-set tables are in the model cards "
            "(<code>python -m fusion.pretrained evaluate --task T</code>).</p>", *sections, "</body></html>"]
    report = out / "report.html"
    report.write_text("\n".join(page))
    return report


def _pan_section(out: Path, data: Path | None) -> tuple[str, dict[str, Any]]:
    """Each bundled pansharpening model against every pan baseline on the held-back halves of the shared scenes."""
    from fusion.pretrained import bundled_tasks, load_pretrained
    from fusion.pretrained.testsets import evaluate_pan_testsets

    names = [n for n in bundled_tasks() if n.startswith("pan")]
    if data is None or not (data / "pan").is_dir() or not names:
        why = "no bundled pansharpening model" if not names else f"no shared pan scenes under {data}"
        return f"<h2>PAN</h2><p>{html.escape(why)}.</p>", {"skipped": why}
    parts, res = ["<h2>PAN</h2>"], {}
    for name in names:
        r = evaluate_pan_testsets(load_pretrained(name), data, model_name=f"bundled:{name}", images=out / "pan")
        res[name] = {k: {"means": v["means"], "verdict": v["verdict"]} for k, v in r["sets"].items()}
        parts.append(f"<h3>{html.escape(name)}</h3><p>{html.escape(r['protocol'])}</p>")
        for scene, v in r["sets"].items():
            rows = "".join(f"<tr><td>{html.escape(m)}</td>" + "".join(f"<td>{x[k]:.4f}</td>" for k in v["metrics"])
                           + "</tr>" for m, x in v["means"].items())
            figs = "".join(f"<figure><img src='{html.escape(Path(p).relative_to(out).as_posix())}'><figcaption>"
                           f"{html.escape(c)}</figcaption></figure>" for c, p in v["images"])
            parts.append(f"<p><b>{html.escape(scene)}</b>: {html.escape(v['verdict'])}</p><table><tr><th>method</th>"
                         + "".join(f"<th>{k}</th>" for k in v["metrics"]) + f"</tr>{rows}</table><div>{figs}</div>")
    return "\n".join(parts), res


def _section(task: str, source: str, note: str, summary: dict[str, Any], rows: list, out: Path) -> str:
    from fusion.train.report import metric_table

    hb = {k: k not in LOWER for k in TEST_METRICS}
    parts = [f"<h2>{task.upper()}</h2><p>{html.escape(source)}. {html.escape(note)}</p>",
             metric_table(summary, hb) if summary else "<p>no pairs found</p>"]
    for pid, cells in rows:
        figs = "".join(f"<figure><img src='{html.escape(p.relative_to(out).as_posix())}'><figcaption>"
                       f"{html.escape(c)}</figcaption></figure>" for c, p in cells)
        parts.append(f"<div><b>{html.escape(pid)}</b><br>{figs}</div>")
    return "\n".join(parts)


def register(app: Any) -> None:
    import typer

    @app.command("demo")
    def demo_cmd(out: Path = typer.Option(Path("runs/demo"), "--out", help="report folder"),
                 data: Path = typer.Option(Path("../shared/data"), "--data",
                                           help="shared real test data (embedded demo pairs when absent)"),
                 demo_dir: Path = typer.Option(Path("demo_data"), "--demo-dir"),
                 pairs: int = typer.Option(3, "--pairs", help="pairs per task"),
                 max_side: int = typer.Option(384, "--max-side", help="pairs area-downscaled to this longer side"),
                 ) -> None:
        """Fuse real pairs with the bundled models and the classical baselines; write an HTML report."""
        report = run_demo(out, data=data, demo_dir=demo_dir, pairs=pairs, max_side=max_side)
        typer.echo(f"wrote {report}")
