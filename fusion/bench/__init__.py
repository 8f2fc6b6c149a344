"""``python -m fusion bench``: one report of speed, memory scaling and quality.

Sections: 1. kernels (``rwkvfusion_kernels.bench.run_kernel_bench``); 2. model cost per task at 256x256 next to the
paper's Table 4; 3. time and peak memory against resolution, RWKV vs softmax attention, with fitted
exponents; 4. quality of the classical baselines (and trained checkpoints in ``runs/*/checkpoint.pt``)
on the real pairs of ../shared/data; 5. annotation cost (tiny models on CPU: a plumbing check).

Writes ``<out>/results.json``, ``<out>/report.md`` (PNG plots beside it) and ``<out>/report.html``
(plots embedded). The benchmark reports, it does not assert: a section that cannot run records why.

Timing: every figure is the median of repeated runs after one warm-up run. Peak memory: on CUDA
``torch.cuda.max_memory_allocated``; on CPU the resident-set increase during the warm-up pass
(:class:`PeakRSS`: ``ru_maxrss`` high-water mark, or a 1 ms RSS sampler when the mark does not move),
in a fresh subprocess per configuration so earlier runs cannot mask it. It includes allocator slack;
tracemalloc is not used because it does not see torch's allocations.
"""
from __future__ import annotations

import json
import os
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fusion.bench.machine import machine_info
from fusion.bench.probe import jsonable
from fusion.bench.quality import section_quality
from fusion.bench.report import _fmt, _section_speed, build_report
from fusion.bench.sections import (
    section_annotate,
    section_cost,
    section_kernels,
    section_metrics,
    section_scaling,
)
from fusion.bench.settings import DEFAULT_DATA, SECTIONS, BenchSettings


# ============================================================================ driver
def run_bench(out_dir: str | Path, *, quick: bool = False, data_root: str | Path | None = None,
              sections: tuple[str, ...] = SECTIONS, settings: BenchSettings | None = None,
              log: Callable[[str], None] = print, merge: bool = False) -> dict[str, Any]:
    """Run the selected sections and write results.json, report.md and report.html into ``out_dir``.

    ``merge``: keep the other sections of an existing ``<out_dir>/results.json`` (each kept section records the
    run it came from in ``results["kept_sections"]``), so one section can be re-measured without the rest."""
    bad = [s for s in sections if s not in SECTIONS]
    if bad:
        raise ValueError(f"sections: unknown {bad}; valid: {', '.join(SECTIONS)}")
    st = settings or (BenchSettings.quick_settings() if quick else BenchSettings())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    root = Path(data_root) if data_root is not None else DEFAULT_DATA
    results: dict[str, Any] = {"machine": machine_info(), "settings": jsonable(st.__dict__), "sections": {}}
    prior_path = out / "results.json"
    if merge and prior_path.is_file():
        try:
            prior = json.loads(prior_path.read_text())
            kept = {k: v for k, v in prior["sections"].items() if k not in sections}
            stamp = {k: prior["machine"].get(k) for k in ("date_utc", "git_commit")}
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise ValueError(f"{prior_path}: cannot merge into it ({type(err).__name__}: {err})") from err
        results["sections"].update(kept)
        earlier = prior.get("kept_sections") or {}       # sections an earlier merge kept: their own run's stamp
        results["kept_sections"] = {k: earlier.get(k, stamp) for k in kept}
    runners: dict[str, Callable[[], dict[str, Any]]] = {
        "kernels": lambda: section_kernels(out, st), "cost": lambda: section_cost(out, st),
        "scaling": lambda: section_scaling(out, st), "quality": lambda: section_quality(out, st, root),
        "speed": lambda: _section_speed(out, st, root, log),
        "annotate": lambda: section_annotate(out, st), "metrics": lambda: section_metrics(out, st, root)}
    t_all = time.perf_counter()
    for name in sections:
        log(f"[bench] {name} ...")
        t0 = time.perf_counter()
        try:
            res = runners[name]()
        except Exception as err:  # noqa: BLE001 - a section that cannot run records why
            res = {"error": f"{type(err).__name__}: {err}", "trace": traceback.format_exc(limit=4)}
        res["seconds"] = time.perf_counter() - t0
        results["sections"][name] = jsonable(res)
        (out / "results.json").write_text(json.dumps(jsonable(results), indent=1))  # partial results so far
        log(f"[bench] {name} done in {res['seconds']:.0f} s" + (f" ({res['error']})" if "error" in res else ""))
    results["total_seconds"] = time.perf_counter() - t_all
    results["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    (out / "results.json").write_text(json.dumps(jsonable(results), indent=1))
    rep = build_report(results, out)
    rep.p(f"Total bench wall time: {results['total_seconds']:.0f} s.")
    (out / "report.md").write_text(rep.markdown())
    (out / "report.html").write_text(rep.html())
    sc = results["sections"].get("scaling", {})
    for op, e in sc.get("exponents", {}).items():
        log(f"[bench] fitted exponent time ~ pixels^p, {op}: p = {_fmt(e['largest_three'])} over sizes "
            f"{e['largest_three_sizes']} (all {e['points']} sizes: {_fmt(e['all'])})")
    return results


def register(app: Any) -> None:
    """Add the ``bench`` command to the fusion CLI."""
    import typer

    @app.command("bench")
    def bench(out: Path = typer.Option(Path("bench"), "--out", help="output folder"),
              quick: bool = typer.Option(False, "--quick", help="tiny sizes (tests / plumbing check)"),
              data: Path | None = typer.Option(None, "--data", help="real data root (default ../shared/data)"),
              sections: str = typer.Option(",".join(SECTIONS), "--sections", help="comma-separated subset"),
              max_pairs: int | None = typer.Option(None, "--max-pairs", help="pairs per task in the quality section"),
              compile_model: bool = typer.Option(True, "--compile/--no-compile",
                                                 help="speed section: also measure torch.compile'd models"),
              merge: bool = typer.Option(False, "--merge", help="keep the other sections of <out>/results.json"),
              ) -> None:
        """Speed, memory scaling and quality report: bench/results.json, report.md, report.html."""
        st = BenchSettings.quick_settings() if quick else BenchSettings()
        if max_pairs is not None:
            st.max_pairs = max_pairs
        st.speed_compile = compile_model
        try:
            run_bench(out, quick=quick, data_root=data, settings=st, merge=merge,
                      sections=tuple(s.strip() for s in sections.split(",") if s.strip()))
        except ValueError as err:
            raise typer.BadParameter(str(err)) from err
        typer.echo(f"wrote {out}/results.json, {out}/report.md, {out}/report.html")
