"""``report.html``: sources, masks, captions and fused results side by side, with the metric table."""
from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4f}"
    return html.escape(str(v))


def metric_table(summary: dict[str, dict[str, dict[str, float]]], higher_better: dict[str, bool] | None = None
                 ) -> str:
    """HTML table: one row per method, one column per metric, "mean ± std"; best mean per column in bold."""
    methods = list(summary)
    metrics = sorted({m for s in summary.values() for m in s})
    hb = higher_better or {}
    best: dict[str, str] = {}
    for m in metrics:
        vals = [(summary[k][m]["mean"], k) for k in methods if m in summary[k]
                and not math.isnan(summary[k][m]["mean"])]
        if vals:
            best[m] = (max(vals) if hb.get(m, True) else min(vals))[1]
    rows = ["<tr><th>method</th>" + "".join(
        f"<th>{html.escape(m)} {'&uarr;' if hb.get(m, True) else '&darr;'}</th>" for m in metrics) + "</tr>"]
    for k in methods:
        cells = []
        for m in metrics:
            st = summary[k].get(m)
            txt = "" if st is None else f"{_fmt(st['mean'])} &plusmn; {_fmt(st['std'])}"
            cells.append(f"<td><b>{txt}</b></td>" if best.get(m) == k else f"<td>{txt}</td>")
        rows.append(f"<tr><td>{html.escape(k)}</td>{''.join(cells)}</tr>")
    return "<table>" + "".join(rows) + "</table>"


def write_report(out_dir: str | Path, *, title: str, summary: dict[str, Any], samples: list[dict[str, Any]],
                 higher_better: dict[str, bool] | None = None, notes: list[str] | None = None) -> Path:
    """Write ``out_dir/report.html``.

    ``samples``: dicts with "id", "images" (list of (caption, path relative to out_dir)), optional
    "captions" (dict label -> text) and "metrics" (dict method -> {metric: value}).
    """
    out = Path(out_dir) / "report.html"
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>",
        "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin:.5em 0}",
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}",
        ".row{display:flex;gap:8px;flex-wrap:wrap}.row figure{margin:0}",
        ".row img{max-width:260px;max-height:260px;image-rendering:pixelated}",
        "figcaption{font-size:80%;text-align:center}.cap{font-size:85%;color:#333;max-width:1100px}",
        "</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<h2>Metrics (test split, mean &plusmn; std)</h2>",
        metric_table(summary, higher_better),
    ]
    for n in notes or []:
        parts.append(f"<p>{html.escape(n)}</p>")
    parts.append("<h2>Samples</h2>")
    for s in samples:
        parts.append(f"<h3>{html.escape(str(s['id']))}</h3><div class='row'>")
        for cap, rel in s["images"]:
            parts.append(f"<figure><img src='{html.escape(str(rel))}' alt='{html.escape(cap)}'>"
                         f"<figcaption>{html.escape(cap)}</figcaption></figure>")
        parts.append("</div>")
        for label, text in (s.get("captions") or {}).items():
            if text:
                parts.append(f"<p class='cap'><b>{html.escape(label)}:</b> {html.escape(str(text))}</p>")
        if s.get("metrics"):
            per = {k: {m: {"mean": v, "std": 0.0} for m, v in d.items()} for k, d in s["metrics"].items()}
            parts.append(metric_table(per, higher_better).replace(" &plusmn; 0.0000", ""))
    parts.append("</body></html>")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(parts), encoding="utf-8")
    return out
