"""``python -m fusion metrics``: score any method's fused images against their sources (or reference).

Fusion tasks (vif/mif/mef/mff)::

    python -m fusion metrics --task vif --a IR_DIR --b VIS_DIR --fused METHOD1_DIR --fused METHOD2_DIR --out m.csv

Files are matched by name (stem, extension ignored) against the files of ``--a``; any of ``--a``, ``--b``,
``--fused`` may be a single file (then it is used for every name). ``--a-suffix``/``--b-suffix`` strip a name
suffix before matching (Lytro: ``--a DIR --b DIR --a-suffix -A --b-suffix -B`` with fused ``lytro-01.png``). Images: PNG/JPG/BMP/TIF read with Pillow,
grey or RGB (other modes converted to RGB), 0..255 scale; colour handling per :func:`fusion_metrics`.

Pansharpening / HMIF (``--task pan`` or ``hmif``): arrays HxWxC in ``.npy``, ``.mat`` (MATLAB v5, read with
scipy; the variable is the only array in the file or the first of the role's usual names: fused ``I_F``/``fused``/
``sr``/``output``, reference ``I_GT``/``gt``/``I_MS``, MS ``I_MS_LR``/``ms``/``I_MS``, PAN ``I_PAN``/``pan``) or
``.tif`` (tifffile). ``--ref`` gives reduced-resolution metrics (SAM, ERGAS, Q2n, SCC; HMIF: PSNR, SSIM, SAM,
ERGAS); ``--a`` (low-res MS) with ``--b`` (PAN) gives full-resolution D_lambda, D_s, HQNR.

Benchmark suites (``--suite vifb|mefb|pan``): the toolbox's metric set in its published order and colour
protocol (:mod:`fusion.metrics.suites`), e.g. ``python -m fusion metrics --suite vifb --a VIS --b IR --fused M``.
Fusion images: ``--bit-depth 8`` (default: 8-bit files only), ``16`` (16-bit PNG/TIFF, mapped from ``--range``,
default 0,65535, to 0..255) or ``float`` (float TIFF, ``--range LO,HI`` required); a file of another bit depth
or with values outside ``--range`` is reported as an error, never clipped. Pansharpening suite: arrays in sensor
DN; ``--cut 21`` applies the toolbox's border cut, ``--threshold`` its clipping of F to [0, 2^bits]
(``--bits``), both off unless asked for; normalised [0, 1] data need ``--max-value`` (DN peak) explicitly.

Output: a progress bar, a table of mean +- std (rows metrics, columns methods) (population std), and with ``--out`` a CSV of every
image (columns method, image, metrics...) followed by ``mean`` and ``std`` rows per method. Missing or
size-mismatched files are reported by name and skipped.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rwkvfusion_io.images import IMAGE_EXTS
from rwkvfusion_io.tasks import FUSION_TASKS, SPECTRAL_TASKS

ARRAY_EXTS = (".npy", ".mat", ".tif", ".tiff")
_MAT_NAMES = {
    "fused": ("I_F", "fused", "I_Fus", "sr", "SR", "output", "out"),
    "ref": ("I_GT", "gt", "GT", "I_MS", "ref"),
    "ms": ("I_MS_LR", "ms", "MS", "I_MS"),
    "pan": ("I_PAN", "pan", "PAN"),
}


@dataclass
class MetricsReport:
    """Per-image rows, per-method summary and the problems met on the way."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, dict[str, tuple[float, float, int]]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    metric_names: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- reading
def read_image(path: Path, bit_depth: str = "8", value_range: tuple[float, float] | None = None) -> np.ndarray:
    """HxW (grey) or HxWx3 image on the 0..255 scale (:func:`fusion.metrics.imageio.read_fusion_image`)."""
    from fusion.metrics.imageio import read_fusion_image

    return read_fusion_image(path, bit_depth, value_range)


def read_array(path: Path, role: str = "fused") -> np.ndarray:
    """HxWxC (or HxW) array from .npy, .mat or .tif; ``role`` picks the .mat variable (see module doc)."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return np.load(path)
    if suffix in (".tif", ".tiff"):
        import tifffile

        return tifffile.imread(path)
    if suffix == ".mat":
        import scipy.io

        data = {k: v for k, v in scipy.io.loadmat(path).items()
                if not k.startswith("__") and isinstance(v, np.ndarray) and v.ndim >= 2 and v.dtype.kind in "biuf"
                and min(v.shape[:2]) > 1}
        if len(data) == 1:
            return next(iter(data.values()))
        for name in _MAT_NAMES.get(role, ()):
            if name in data:
                return data[name]
        raise ValueError(f"{path}: cannot tell which variable is the {role} image among {sorted(data)}")
    raise ValueError(f"{path}: unsupported file type {suffix!r} (use {', '.join(ARRAY_EXTS)})")


def index_files(path: Path, exts: tuple[str, ...], suffix: str = "") -> dict[str, Path]:
    """{stem: file} for a directory (files with ``exts``) or a single file.

    With ``suffix`` (e.g. ``-A`` for Lytro's ``lytro-01-A.jpg``) only stems ending with it are kept and the
    key drops it, so ``lytro-01-A.jpg``, ``lytro-01-B.jpg`` and a fused ``lytro-01.png`` share the key.
    """
    path = Path(path)
    if path.is_file():
        return {path.stem[: len(path.stem) - len(suffix)] if suffix else path.stem: path}
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such file or directory")
    out: dict[str, Path] = {}
    for p in sorted(path.iterdir()):
        if not (p.is_file() and p.suffix.lower() in exts) or (suffix and not p.stem.endswith(suffix)):
            continue
        key = p.stem[: len(p.stem) - len(suffix)] if suffix else p.stem
        out.setdefault(key, p)
    return out


def _lookup(index: dict[str, Path], source: Path, stem: str) -> Path | None:
    if Path(source).is_file():  # a single file serves every name
        return next(iter(index.values()))
    return index.get(stem)


def _method_names(fused: list[Path]) -> list[str]:
    """Label each ``--fused`` path by its shortest trailing path components that tell it apart from the others
    (``ours/set1`` vs ``gff/set1``; a file drops its extension); ``#k`` only for identical paths."""
    parts = [Path(p).resolve().with_suffix("").parts if Path(p).is_file() else Path(p).resolve().parts
             for p in fused]
    names: list[str] = []
    for pi in parts:
        depth = 1
        while depth < len(pi) and any(pj != pi and pj[-depth:] == pi[-depth:] for pj in parts):
            depth += 1
        base = "/".join(pi[-depth:])
        name, k = base, 2
        while name in names:
            name, k = f"{base}#{k}", k + 1
        names.append(name)
    return names


# ---------------------------------------------------------------- scoring
def run_metrics(task: str, fused: list[Path], a: Path | None = None, b: Path | None = None, ref: Path | None = None,
                *, color: str | None = None, ratio: int = 4, sensor: str | None = None, max_value: float = 2047,
                metrics: list[str] | None = None, lpips_weights: Path | None = None, progress: bool = True,
                a_suffix: str = "", b_suffix: str = "", suite: str | None = None, bit_depth: str = "8",
                value_range: tuple[float, float] | None = None, cut: int = 0, threshold: bool = False,
                bits: int = 11, dn_scale: float | None = None) -> MetricsReport:
    """Score every method folder in ``fused``; never stops on a missing or mismatched file (see ``problems``).

    With ``suite`` (vifb, mefb, pan) the rows hold that suite's metrics in its order; ``color="gray"`` then
    converts every image with rgb2gray first, None (default) keeps the suite's own colour protocol; without a
    suite None means "gray".
    """
    from fusion.evaluation import score_fusion, summarise
    from fusion.metrics import hmif_metrics, pansharpening_metrics
    from fusion.metrics.suites import SUITES, mefb_suite, pan_suite, vifb_suite

    if suite is not None:
        if suite not in SUITES:
            raise ValueError(f"--suite must be one of {list(SUITES)}, got {suite!r}")
        if suite == "pan" and task not in SPECTRAL_TASKS:
            task = "pan"
        if suite in ("vifb", "mefb") and task not in FUSION_TASKS:
            raise ValueError(f"--suite {suite} scores two-source fusion (--task vif/mif/mef/mff), not {task!r}")

    if task not in FUSION_TASKS + SPECTRAL_TASKS:
        raise ValueError(f"--task must be one of {FUSION_TASKS + SPECTRAL_TASKS}, got {task!r}")
    if not fused:
        raise ValueError("give at least one --fused folder or file")
    report = MetricsReport()
    if task in FUSION_TASKS:
        if a is None or b is None:
            raise ValueError(f"--task {task} needs --a and --b (the two sources)")
        exts, key_role = IMAGE_EXTS, "a"
    else:
        if ref is None and (a is None or b is None):
            raise ValueError(f"--task {task} needs --ref (reduced resolution) or --a MS and --b PAN (full resolution)")
        if task == "hmif" and ref is None:
            raise ValueError("--task hmif needs --ref (the reference hyperspectral image)")
        exts, key_role = ARRAY_EXTS, "ref" if ref is not None else "a"
    suffixes = {"a": a_suffix, "b": b_suffix, "ref": ""}
    sources = {"a": a, "b": b, "ref": ref}
    idx = {role: index_files(Path(src), exts, suffixes[role]) for role, src in sources.items() if src is not None}
    idx["key"] = idx[key_role]
    key_src = Path(sources[key_role])
    names = _method_names(fused)
    jobs = []
    for method, fpath in zip(names, fused):
        fidx = index_files(Path(fpath), exts)
        for stem in idx["key"]:
            jobs.append((method, Path(fpath), fidx, stem))
    if not idx["key"]:
        report.problems.append(f"no input files found in {key_src}")

    def score(method: str, fsrc: Path, fidx: dict[str, Path], stem: str) -> dict[str, float] | None:
        fp = _lookup(fidx, fsrc, stem)
        if fp is None:
            report.problems.append(f"{method}: missing fused file for {stem!r} in {fsrc}")
            return None
        if task in FUSION_TASKS:
            ap, bp = _lookup(idx["a"], Path(a), stem), _lookup(idx["b"], Path(b), stem)
            if bp is None:
                report.problems.append(f"missing source b for {stem!r} in {b}")
                return None
            fi, ai, bi = (read_image(x, bit_depth, value_range) for x in (fp, ap, bp))
            for nm, arr, p in (("a", ai, ap), ("b", bi, bp)):
                if arr.shape[:2] != fi.shape[:2]:
                    report.problems.append(f"{method}: size mismatch for {stem!r}: fused {fp.name} {fi.shape[:2]} "
                                           f"vs {nm} {p.name} {arr.shape[:2]}")
                    return None
            if suite is not None:
                if color == "gray":
                    from fusion.metrics import rgb2gray

                    fi, ai, bi = (rgb2gray(x) if x.ndim == 3 else x for x in (fi, ai, bi))
                fn = vifb_suite if suite == "vifb" else mefb_suite
                return fn(fi, ai, bi, metrics)
            return score_fusion(fi, ai, bi, scale=1.0, color=color or "gray", metrics=metrics,
                                lpips_weights=lpips_weights)
        fi = read_array(fp, "fused")
        if suite == "pan":
            arrays = {"fused": fi}
            if ref is not None:
                rp = _lookup(idx["ref"], Path(ref), stem)
                if rp is None:
                    report.problems.append(f"missing reference for {stem!r} in {ref}")
                    return None
                arrays["ref"] = read_array(rp, "ref")
            if a is not None and b is not None:
                mp, pp = _lookup(idx["a"], Path(a), stem), _lookup(idx["b"], Path(b), stem)
                if mp is None or pp is None:
                    report.problems.append(f"missing MS/PAN for {stem!r} (full-resolution metrics skipped)")
                else:
                    arrays["ms"], arrays["pan"] = read_array(mp, "ms"), read_array(pp, "pan")
            normalised = all(np.asarray(v).dtype.kind == "f" and np.asarray(v).max() <= 1.0 for v in arrays.values())
            if normalised and dn_scale is None:
                raise ValueError("the arrays look normalised to [0, 1]; the toolbox works in sensor DN: pass "
                                 "--max-value (the DN peak, e.g. 2047) to scale them explicitly")
            if dn_scale is not None:
                arrays = {k: np.asarray(v, dtype=np.float64) * dn_scale for k, v in arrays.items()}
            return pan_suite(arrays["fused"], arrays.get("ref"), ms=arrays.get("ms"), pan=arrays.get("pan"),
                             ratio=ratio, sensor=sensor, bits=bits, cut=cut, threshold=threshold)
        out: dict[str, float] = {}
        if ref is not None:
            rp = _lookup(idx["ref"], Path(ref), stem)
            ri = read_array(rp, "ref")
            if ri.shape != fi.shape:
                report.problems.append(f"{method}: size mismatch for {stem!r}: fused {fp.name} {fi.shape} vs "
                                       f"reference {rp.name} {ri.shape}")
                return None
            out.update(hmif_metrics(fi, ri, ratio) if task == "hmif" else
                       pansharpening_metrics(fi, ri, ratio=ratio, sensor=sensor, max_value=max_value))
        if task == "pan" and a is not None and b is not None:
            mp, pp = _lookup(idx["a"], Path(a), stem), _lookup(idx["b"], Path(b), stem)
            if mp is None or pp is None:
                report.problems.append(f"missing MS/PAN for {stem!r} (full-resolution metrics skipped)")
            else:
                mi, pi = read_array(mp, "ms"), read_array(pp, "pan")
                if mi.shape[0] * ratio != fi.shape[0] or pi.shape[:2] != fi.shape[:2]:
                    report.problems.append(f"{method}: size mismatch for {stem!r}: fused {fi.shape}, MS {mi.shape}, "
                                           f"PAN {pi.shape} (ratio {ratio})")
                else:
                    out.update(pansharpening_metrics(fi, ms=mi, pan=pi, ratio=ratio, sensor=sensor,
                                                     max_value=max_value))
        return out or None

    def run_all(iterable):
        for method, fsrc, fidx, stem in iterable:
            try:
                res = score(method, fsrc, fidx, stem)
            except (ValueError, OSError, MemoryError) as err:
                lines = str(err).strip().splitlines()
                report.problems.append(f"{method}: {stem!r}: {lines[0] if lines else type(err).__name__}")
                continue
            if res is not None:
                report.rows.append({"method": method, "image": stem, **res})

    if progress and jobs:
        from rich.progress import track

        run_all(track(jobs, description="scoring", transient=True))
    else:
        run_all(jobs)
    seen: list[str] = []
    for row in report.rows:
        seen += [k for k in row if k not in ("method", "image") and k not in seen]
    report.metric_names = seen
    for method in names:
        mrows = [r for r in report.rows if r["method"] == method]
        if mrows:  # NaNs kept: a metric that failed on one image shows as NaN
            stats = summarise(mrows, drop_nan=False, keep_empty=False)
            report.summary[method] = {k: (stats[k]["mean"], stats[k]["std"], stats[k]["n"]) for k in seen if k in stats}
    return report


def write_csv(report: MetricsReport, out: Path) -> None:
    """Per-image rows, then ``mean`` and ``std`` rows per method (written atomically).

    File names that are not valid UTF-8 are written with their original bytes.
    """
    import io

    from rwkvfusion_io.files import atomic_write

    cols = ["method", "image", *report.metric_names]

    def write(fh: Any) -> None:
        text = io.TextIOWrapper(fh, encoding="utf-8", errors="surrogateescape", newline="")
        w = csv.DictWriter(text, fieldnames=cols)
        w.writeheader()
        for row in report.rows:
            w.writerow({k: row.get(k, "") for k in cols})
        for method, stats in report.summary.items():
            for i, label in ((0, "mean"), (1, "std")):
                w.writerow({"method": method, "image": label, **{k: v[i] for k, v in stats.items()}})
        text.flush()
        text.detach()

    atomic_write(out, write)


def print_report(report: MetricsReport, console: Any = None) -> None:
    """A rich table of mean +- std, one row per metric and one column per method, then the problems."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from fusion.metrics import LOWER_IS_BETTER
    from fusion.metrics.suites import SUITE_LOWER_IS_BETTER
    from manifests.io import printable

    lower = LOWER_IS_BETTER | SUITE_LOWER_IS_BETTER

    console = console or Console()
    table = Table(title="metrics (mean ± std; ↓ lower is better)")
    table.add_column("metric")
    methods = list(report.summary)
    for method in methods:
        n = max(v[2] for v in report.summary[method].values())
        table.add_column(printable(f"{method} (n={n})"), justify="right")
    for k in report.metric_names:
        cells = []
        for method in methods:
            st = report.summary[method].get(k)
            cells.append(f"{st[0]:.4f} ± {st[1]:.4f}" if st else "-")
        table.add_row(k + (" ↓" if k in lower else ""), *cells)
    console.print(table)
    for msg in report.problems:
        console.print(f"[yellow]warning:[/yellow] {escape(printable(msg))}", highlight=False)


def register(app: Any) -> None:
    """Add the ``metrics`` command to the fusion CLI."""
    import typer

    @app.command("metrics")
    def metrics_cmd(
        task: str = typer.Option("vif", "--task", help="vif, mif, mef, mff, pan or hmif"),
        a: Path | None = typer.Option(None, "--a", help="source A folder/file (ir/MRI/under/far; pan: low-res MS)"),
        b: Path | None = typer.Option(None, "--b", help="source B folder/file (vis/SPECT/over/near; pan: PAN)"),
        fused: list[Path] = typer.Option(..., "--fused", help="a method's fused folder/file; repeat per method"),
        ref: Path | None = typer.Option(None, "--ref", help="pan/hmif reference folder/file (reduced resolution)"),
        out: Path | None = typer.Option(None, "--out", help="CSV file of per-image values and mean/std rows"),
        color: str = typer.Option("auto", "--color", help="gray (rgb2gray) or per_channel (VIFB); auto (default): "
                                  "gray, or with --suite that benchmark's own colour protocol"),
        ratio: int = typer.Option(4, "--ratio", help="pan/hmif resolution ratio"),
        sensor: str | None = typer.Option(None, "--sensor", help="pan sensor for MTF gains (QB, IKONOS, GeoEye1, WV2, WV3)"),
        max_value: float | None = typer.Option(None, "--max-value",
                                               help="sensor DN peak for normalised pan data (default 2047; "
                                                    "the pan suite scales only when this is given)"),
        suite: str | None = typer.Option(None, "--suite", help="vifb, mefb or pan: that benchmark's metric "
                                         "set, order and colour protocol"),
        bit_depth: str = typer.Option("8", "--bit-depth", help="fusion images: 8 (default), 16 or float"),
        value_range: str | None = typer.Option(None, "--range", help="LO,HI of 16-bit/float images, mapped "
                                               "to 0..255 (values outside are an error)"),
        cut: int = typer.Option(0, "--cut", help="pan suite: toolbox border cut dim_cut (21 in its demos)"),
        threshold: bool = typer.Option(False, "--threshold", help="pan suite: clip F to [0, 2^bits] first"),
        bits: int = typer.Option(11, "--bits", help="pan suite: radiometric resolution L for --threshold"),
        metric: list[str] | None = typer.Option(None, "--metric", help="compute only these fusion metrics"),
        lpips_weights: Path | None = typer.Option(None, "--lpips-weights", help="local LPIPS backbone state dict"),
        a_suffix: str = typer.Option("", "--a-suffix", help="name suffix of A files to strip when matching (e.g. -A)"),
        b_suffix: str = typer.Option("", "--b-suffix", help="name suffix of B files to strip when matching (e.g. -B)"),
    ) -> None:
        """Compute every metric per image and mean/std per method; print a table, optionally write a CSV."""
        from rich.console import Console

        from fusion.metrics import LPIPS_SKIP_MESSAGE

        console = Console()
        if task in FUSION_TASKS and lpips_weights is None and suite is None:
            console.print(f"[dim]{LPIPS_SKIP_MESSAGE}[/dim]")
        try:
            vrange = None
            if value_range is not None:
                parts = value_range.split(",")
                if len(parts) != 2:
                    raise ValueError(f"--range must be LO,HI, got {value_range!r}")
                vrange = (float(parts[0]), float(parts[1]))
            if color not in ("auto", "gray", "per_channel"):
                raise ValueError(f"--color must be auto, gray or per_channel, got {color!r}")
            if color == "auto":
                color = None
            report = run_metrics(task, list(fused), a, b, ref, color=color, ratio=ratio, sensor=sensor,
                                 max_value=2047.0 if max_value is None else max_value, metrics=metric or None,
                                 lpips_weights=lpips_weights, a_suffix=a_suffix, b_suffix=b_suffix, suite=suite,
                                 bit_depth=bit_depth, value_range=vrange, cut=cut, threshold=threshold,
                                 bits=bits, dn_scale=max_value)
        except (ValueError, FileNotFoundError) as err:
            raise typer.BadParameter(str(err)) from err
        print_report(report, console)
        if out is not None:
            write_csv(report, out)
            from manifests.io import printable

            console.print(f"wrote {printable(str(out))}", markup=False)
        if not report.rows:
            raise typer.Exit(code=1)
