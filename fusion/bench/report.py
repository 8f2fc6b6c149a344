"""The bench report: markdown, HTML with embedded plots, per-section status."""
from __future__ import annotations

import base64
import html
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fusion.bench.settings import BenchSettings


# ============================================================================ report
class Report:
    """Blocks (heading, text, table, image) rendered to Markdown and self-contained HTML."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.blocks: list[tuple[str, Any]] = []

    def h(self, text: str, level: int = 2) -> None:
        self.blocks.append(("h", (level, text)))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def table(self, header: list[str], rows: list[list[Any]]) -> None:
        self.blocks.append(("table", (header, rows)))

    def image(self, name: str, caption: str) -> None:
        self.blocks.append(("img", (name, caption)))

    def markdown(self) -> str:
        out = []
        for kind, val in self.blocks:
            if kind == "h":
                out.append("#" * val[0] + " " + val[1])
            elif kind == "p":
                out.append(val)
            elif kind == "table":
                header, rows = val
                out.append("| " + " | ".join(header) + " |")
                out.append("| " + " | ".join("---" for _ in header) + " |")
                out += ["| " + " | ".join(_fmt(c) for c in r) + " |" for r in rows]
            else:
                out.append(f"![{val[1]}]({val[0]})")
            out.append("")
        return "\n".join(out)

    def html(self) -> str:
        body = []
        for kind, val in self.blocks:
            if kind == "h":
                body.append(f"<h{val[0]}>{html.escape(val[1])}</h{val[0]}>")
            elif kind == "p":
                body.append(f"<p>{html.escape(val)}</p>")
            elif kind == "table":
                header, rows = val
                th = "".join(f"<th>{html.escape(h)}</th>" for h in header)
                trs = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in r) + "</tr>" for r in rows)
                body.append(f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>")
            else:
                data = base64.b64encode((self.out_dir / val[0]).read_bytes()).decode()
                body.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(val[1])}">'
                            f"<figcaption>{html.escape(val[1])}</figcaption></figure>")
        style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;}table{border-collapse:collapse;"
                 "margin:1em 0;font-size:13px}td,th{border:1px solid #bbb;padding:3px 7px;text-align:right}"
                 "th{background:#eee}img{max-width:100%}")
        return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>rwkvfusion bench</title>"
                f"<style>{style}</style></head><body>{''.join(body)}</body></html>")


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        if not math.isfinite(x):
            return "-"
        return f"{x:.4g}" if abs(x) < 1e5 else f"{x:.3e}"
    return str(x).replace("|", "/")


def _plot_scaling(out_dir: Path, sc: dict[str, Any]) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs = []
    for key, ylabel, fname in (("median_s", "forward time [s]", "scaling_time.png"),
                               ("peak_mem_mib", "peak memory increase [MiB]", "scaling_memory.png")):
        fig, ax = plt.subplots(figsize=(6, 4))
        for op, pts in sc["series"].items():
            ok = [p for p in pts if key in p and p[key] is not None and p[key] > 0]
            if not ok:
                continue
            px = np.array([p["pixels"] for p in ok], dtype=float)
            ax.loglog(px, [p[key] for p in ok], "o-", label=op)
            if key == "median_s" and sc["exponents"][op]["largest_three"] is not None:
                ax.plot([], [], " ", label=f"{op}: time ~ pixels^{sc['exponents'][op]['largest_three']:.2f}")
        pts0 = [p for pts in sc["series"].values() for p in pts if p.get(key)]
        if pts0:  # reference slopes through the smallest measured point
            p0 = min(pts0, key=lambda p: p["pixels"])
            xs = np.array([p0["pixels"], max(p["pixels"] for p in pts0)], dtype=float)
            for slope, style in ((1, ":"), (2, "--")):
                ax.loglog(xs, p0[key] * (xs / xs[0]) ** slope, "k" + style, lw=0.8, label=f"slope {slope}")
        ax.set_xlabel("pixels (H x W)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out_dir / fname, dpi=100)
        plt.close(fig)
        figs.append((fname, f"{ylabel} vs pixels, RWKV (bi_wkv) vs softmax attention, log-log"))
    return figs


def _plot_cost(out_dir: Path, cost: dict[str, Any]) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in cost["rows"] if "forward" in r]
    if not rows:
        return []
    fig, ax = plt.subplots(figsize=(6, 3.5))
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [r["forward"]["images_per_s"] for r in rows], 0.4, label="forward")
    ax.bar(x + 0.2, [r["train"]["images_per_s"] for r in rows if "train" in r] + [0] * (len(rows) - sum(
        "train" in r for r in rows)), 0.4, label="forward+backward")
    ax.set_xticks(x, [r["task"] for r in rows])
    ax.set_ylabel(f"images/s at {cost['size']}x{cost['size']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "cost_throughput.png", dpi=100)
    plt.close(fig)
    return [("cost_throughput.png", "throughput per task configuration (batch 1)")]


def _tables_from(obj: Any, path: str = "") -> list[tuple[str, list[dict[str, Any]]]]:
    """Every list of dicts inside ``obj``, as (dotted path, rows with their scalar fields only)."""
    scalar = (int, float, str, bool, type(None))
    if isinstance(obj, list) and obj and all(isinstance(r, dict) for r in obj):
        return [(path or "table", [{k: v for k, v in r.items() if isinstance(v, scalar)} for r in obj])]
    found: list[tuple[str, list[dict[str, Any]]]] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            found += _tables_from(v, f"{path}.{k}" if path else str(k))
    return found


def _leaf_scalars(obj: Any, path: str = "", skip: tuple[str, ...] = ()) -> list[list[Any]]:
    """[dotted key, value] for every scalar inside nested dicts (lists are left to :func:`_tables_from`)."""
    if not isinstance(obj, dict):
        return []
    out: list[list[Any]] = []
    for k, v in obj.items():
        key = f"{path}.{k}" if path else str(k)
        if k in skip:
            continue
        if isinstance(v, dict):
            out += _leaf_scalars(v, key, skip)
        elif isinstance(v, (int, float, str, bool)) or v is None:
            out.append([key, v])
    return out


def build_report(results: dict[str, Any], out_dir: Path) -> Report:
    """Turn ``results`` into the report (tables and plots)."""
    rep = Report(out_dir)
    mi = results["machine"]
    rep.h("rwkvfusion benchmark report", 1)
    rep.p(f"Measured on {mi['device_label']}; {mi['platform']}; Python {mi['python']}; date {mi['date_utc']}; "
          f"git {mi.get('git_commit')}; OMP_NUM_THREADS={mi.get('OMP_NUM_THREADS')}; load average at start "
          f"{mi.get('load_average_1_5_15')}, at end {results.get('load_average_end')} (other processes share "
          "the CPU: high load inflates times). Versions: "
          + ", ".join(f"{k} {v}" for k, v in mi["versions"].items() if v) + ". "
          f"{'QUICK run (tiny sizes: plumbing only). ' if results['settings']['quick'] else ''}"
          "Times are medians of repeated runs after one warm-up; the benchmark reports, it does not assert.")
    kept = results.get("kept_sections") or {}
    if kept:
        rep.p("Sections kept from earlier runs (`--merge`): " + "; ".join(
            f"{k} ({v.get('date_utc')}, git {v.get('git_commit')})" for k, v in kept.items()) + ".")
    sec = results["sections"]

    if "speed" in sec:
        _report_speed(rep, sec.get("speed"))
    rep.h("1. Kernels: Bi-WKV and cross-scan scaling")
    _section_status(rep, sec.get("kernels"))
    kern = sec.get("kernels") or {}
    if kern.get("result") is not None:
        res = kern["result"]
        rep.p("Bi-WKV: exact O(T) PyTorch path (and Triton kernels on CUDA) against scaled_dot_product_attention, "
              "from rwkvfusion_kernels.bench (full report: kernels.md beside this file).")
        for name, rows in _tables_from(res):
            keys = list(dict.fromkeys(k for r in rows for k in r))
            rep.p(f"`{name}`")
            rep.table(keys, [[r.get(k) for k in keys] for r in rows])
        sc = _leaf_scalars(res, skip=("machine",))
        if sc:
            rep.table(["field", "value"], sc)
    if kern.get("cross_scan") is not None:
        cs = kern["cross_scan"]
        rep.p("Cross-scan / cross-merge (ESS), batch 1: median times and achieved bandwidth as a fraction of a "
              "same-size clone's copy bandwidth; exponents of time vs tokens: "
              + ", ".join(f"{k[9:]} {_fmt(v)}" for k, v in cs.items() if k.startswith("exponent_")) + ".")
        keys = list(cs["rows"][0]) if cs["rows"] else []
        rep.table(keys, [[r.get(k) for k in keys] for r in cs["rows"]])

    rep.h("2. Model cost per task configuration")
    cost = sec.get("cost")
    _section_status(rep, cost)
    if cost and "rows" in cost:
        pp = cost["paper"]
        rep.p(f"{cost['size']}x{cost['size']}, batch {cost['batch']}, {cost['note']}. Paper (Table 4, "
              f"{pp['device']}, VIF): {pp['params_M']} M parameters, {pp['GFLOPs']} GFLOPs, {pp['images_per_s']} "
              f"images/s ({pp['images_per_s_with_semantics']} with offline semantics). Measured on: "
              f"{mi['device_label']}. Peak memory: {_mem_method(cost)}. Papers' FLOP tools (thop/fvcore) "
              "usually count one multiply-add as one FLOP: compare the paper's figure with the GMAC column. "
              "CPU columns: median process CPU time (all threads) per pass, less sensitive than wall time to the "
              "load of other processes on a shared machine.")
        header = ["task", "params [M]", "GFLOPs", "GMAC", "fwd images/s", "fwd+bwd images/s", "fwd CPU [s]",
                  "fwd+bwd CPU [s]", "fwd peak [MiB]", "fwd+bwd peak [MiB]", "device", "FLOP counter"]
        rows = [["paper (VIF)", pp["params_M"], pp["GFLOPs"], None, pp["images_per_s"], None, None, None, None, None,
                 pp["device"], "paper"]]
        for r in cost["rows"]:
            if "error" in r:
                rows.append([r["task"], "error: " + r["error"]] + [None] * 10)
                continue
            fw, tr = r.get("forward", {}), r.get("train", {})
            rows.append([r["task"], r["params"] / 1e6, r.get("flops", float("nan")) / 1e9,
                         r.get("flops", float("nan")) / 2e9, fw.get("images_per_s"), tr.get("images_per_s"),
                         fw.get("median_cpu_s"), tr.get("median_cpu_s"), fw.get("peak_mem_mib"), tr.get("peak_mem_mib"), r["device"], r.get("counter")])
        _table_with_plots(rep, header, rows, _plot_cost(out_dir, cost))

    rep.h("3. Scaling with resolution: RWKV vs softmax attention")
    sc = sec.get("scaling")
    _section_status(rep, sc)
    if sc and "series" in sc:
        ex = sc["exponents"]
        rep.p(f"Task {sc['task']} configuration, batch {sc['batch']}, {sc['note']}. Fitted exponents: "
              + "; ".join(f"{op}: p = {_fmt(e['largest_three'])} over sizes {e['largest_three_sizes']} (all "
                          f"{e['points']} sizes: {_fmt(e['all'])}; last two: {_fmt(e['last_two'])}; process CPU "
                          f"time: {_fmt(e.get('cpu_largest_three'))} over the same sizes, {_fmt(e.get('cpu_all'))} "
                          f"over all; peak memory vs pixels: {_fmt(e['memory_all'])})" for op, e in ex.items())
              + ". On a shared machine wall time is inflated by other processes' load; the process CPU time "
                "(all threads) is less sensitive to it"
              + ". Linear cost means p = 1, full softmax attention p = 2 (its convolutions and MLPs add a "
                "linear part, so the fitted p approaches 2 from below as the attention share grows).")
        rows = []
        for op, pts in sc["series"].items():
            for p in pts:
                rows.append([op, f"{p['size']}x{p['size']}", p["pixels"], p.get("median_s"), p.get("median_cpu_s"),
                             p.get("peak_mem_mib"), p.get("skipped", "")])
        _table_with_plots(rep, ["spatial mix", "size", "pixels", "forward wall [s]", "forward CPU [s]",
                                "peak mem [MiB]", "skipped because"], rows, _plot_scaling(out_dir, sc))

    rep.h("4. Quality on real data")
    q = sec.get("quality")
    _section_status(rep, q)
    if q and "tasks" in q:
        rep.p(f"Data: {q['data_root']}; at most {q['max_pairs']} pairs (or images) per task, round-robin over "
              "the task's datasets. Cells: mean ± std (population) over pairs.")
        for task, tr in q["tasks"].items():
            rep.h(task.upper(), 3)
            if "error" in tr:
                rep.p(f"error: {tr['error']}")
                continue
            rep.p(tr["protocol"] + ". " + ("pairs: " + ", ".join(tr.get("pairs", tr.get("images", [])))))
            for label, summ in ((("reduced resolution", tr["reduced"]), ("full resolution", tr["full"]))
                                if task == "pan" else (("", tr["summary"]),)):
                if not summ:
                    continue
                metrics = list(dict.fromkeys(k for m in summ.values() for k in m))
                if label:
                    rep.p(label)
                rep.table(["method"] + metrics,
                          [[m] + [f"{v[k]['mean']:.4g} ± {v[k]['std']:.2g}" if k in v else None for k in metrics]
                           for m, v in summ.items()])
            for name, res in (tr.get("held_back") or {}).items():
                rep.p(f"bundled {name} on the held-back halves: {res['protocol']}")
                for scene, r in res["sets"].items():
                    rep.table([f"{scene}: method"] + r["metrics"],
                              [[m] + [f"{v[k]:.4g}" for k in r["metrics"]] for m, v in r["means"].items()])
                    rep.p(r["verdict"])
            if tr.get("seconds_per_pair"):
                rep.p("median seconds per pair: "
                      + ", ".join(f"{m} {s:.3g}" for m, s in tr["seconds_per_pair"].items()))
            for n in tr.get("notes", [])[:10]:
                rep.p("note: " + n)

    rep.h("5. Annotation cost per model")
    an = sec.get("annotate")
    _section_status(rep, an)
    if an and "rows" in an:
        reps = an["rows"][0]["repeats"] if an["rows"] else 0
        rep.p(f"{an['label']} ({an['device']}; {an['source']}; median of {reps} runs). For scale: {an['paper']}.")
        rep.table(["model", "load [s]", "seconds per image"], [[r["model"], r["load_s"], r["s_per_image"]]
                                                                for r in an["rows"]])

    rep.h("6. Metric suite speed")
    ms = sec.get("metrics")
    _section_status(rep, ms)
    if ms and "vifb_grey_s" in ms:
        rep.p(f"{ms['image']}; median of {ms['repeats']} runs; budget {ms['budget_s']} s for the whole VIFB suite "
              f"({'met' if ms['vifb_within_budget'] else 'NOT met'}).")
        rep.table(["suite", "seconds"], [["VIFB, grey fused", ms["vifb_grey_s"]],
                                         ["VIFB, colour fused (per channel)", ms["vifb_colour_s"]],
                                         ["MEFB, grey fused", ms["mefb_grey_s"]]])
        rep.table(["VIFB metric (colour)", "seconds"], [[k, v] for k, v in ms["per_metric_vifb_colour_s"].items()])
        rep.table(["MEFB metric (grey)", "seconds"], [[k, v] for k, v in ms["per_metric_mefb_grey_s"].items()])
    return rep


def _mem_method(cost: dict[str, Any]) -> str:
    dev = next((r.get("device") for r in cost["rows"] if "device" in r), "cpu")
    return ("torch.cuda.max_memory_allocated above the model and inputs" if dev == "cuda" else
            "increase of the resident set during the warm-up pass over the built model and inputs, in a fresh "
            "subprocess (ru_maxrss high-water mark, or a 1 ms RSS sampler when the mark did not move); it "
            "includes allocator slack")


def _section_speed(out: Path, st: BenchSettings, root: Path, log: Callable[[str], None]) -> dict[str, Any]:
    from fusion.bench.speed import section_speed

    return section_speed(out, quick=st.quick, data_root=root, log=log, with_compile=st.speed_compile)


def _report_speed(rep: Report, sec: dict[str, Any] | None) -> None:
    from fusion.bench.speed import report_lines

    rep.h("Speed: CPU fast path beside the previous implementation")
    _section_status(rep, sec)
    if not sec or "forward" not in sec:
        return
    head, rows, trows, notes = report_lines(sec)
    rep.p("VIF forward, batch 1, 2 threads, torch.inference_mode, no text or mask; modes: previous (git "
          f"{sec.get('baseline_rev')}, fp32 eager), eager (fp32), bf16 (CPU autocast), compile (fp32, `--compile`: "
          "the blocks' elementwise regions through torch.compile, fusion.model.pointwise).")
    rep.table(head, rows)
    spec = sec.get("train", {}).get("spec", {})
    rep.p(f"Training step (batch {spec.get('batch')}, {spec.get('size')}x{spec.get('size')}, forward + backward + "
          "AdamW step):")
    rep.table(["mode", "median s", "median CPU s", "peak RSS MiB", "speedup (wall)", "speedup (CPU)"], trows)
    for n in notes:
        rep.p(n)


def _table_with_plots(rep: Any, header: list[str], rows: list[list[Any]], plots: list[tuple[str, str]]) -> None:
    """A results table followed by its figures (file name, caption)."""
    rep.table(header, rows)
    for fname, cap in plots:
        rep.image(fname, cap)


def _section_status(rep: Report, sec: dict[str, Any] | None) -> None:
    if sec is None:
        rep.p("not run (not selected).")
    elif "skipped" in sec:
        rep.p(f"skipped: {sec['skipped']}")
    elif "error" in sec:
        rep.p(f"could not run: {sec['error']}")
    if sec is not None and "seconds" in sec:
        rep.p(f"(section wall time {sec['seconds']:.0f} s)")
