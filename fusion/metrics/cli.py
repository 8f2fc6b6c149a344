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

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp")
ARRAY_EXTS = (".npy", ".mat", ".tif", ".tiff")
FUSION_TASKS = ("vif", "mif", "mef", "mff")
SHARPEN_TASKS = ("pan", "hmif")
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
def read_image(path: Path) -> np.ndarray:
    """HxW (grey) or HxWx3 array of an image file on the 0..255 scale.

    8-bit images come back as uint8. 16-bit images (PNG/TIFF ``I;16``, or ``I`` with values above 255)
    are scaled by 255/65535 to float64, keeping their precision; float images (``F``) with values in
    [0, 1] are multiplied by 255 and those in [0, 255] kept. Anything else (NaN, negative or larger
    values, images over Pillow's decompression-bomb limit) raises a ValueError naming the file.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
                arr = np.asarray(img, dtype=np.float64)
            else:
                arr = np.asarray(img if mode in ("L", "RGB") else img.convert("RGB"))
    except Image.DecompressionBombError as err:
        raise ValueError(f"{path}: image too large to read safely ({err})") from err
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(f"{path}: cannot decode image ({err})") from err
    if arr.dtype == np.float64:
        arr = _to_255_scale(arr, mode, path)
    if arr.ndim == 3 and np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 1], arr[..., 2]):
        arr = arr[..., 0]  # grey stored as 3 channels
    return arr


def _to_255_scale(arr: np.ndarray, mode: str, path: Path) -> np.ndarray:
    if not np.isfinite(arr).all():
        raise ValueError(f"{path}: {int((~np.isfinite(arr)).sum())} pixels are NaN or infinite")
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    if mode.startswith("I;16") or (mode == "I" and 255 < hi <= 65535 and lo >= 0):
        return arr * (255.0 / 65535.0)
    if mode == "I" and 0 <= lo and hi <= 255:
        return arr
    if mode == "F" and 0 <= lo and hi <= 1.0:
        return arr * 255.0
    if mode == "F" and 0 <= lo and hi <= 255.0:
        return arr
    raise ValueError(f"{path}: {mode} image with values in [{lo:g}, {hi:g}]; expected 8/16-bit integers or "
                     "floats in [0, 1] or [0, 255]")


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
                *, color: str = "gray", ratio: int = 4, sensor: str | None = None, max_value: float = 2047,
                metrics: list[str] | None = None, lpips_weights: Path | None = None, progress: bool = True,
                a_suffix: str = "", b_suffix: str = "") -> MetricsReport:
    """Score every method folder in ``fused``; never stops on a missing or mismatched file (see ``problems``)."""
    from fusion.metrics import fusion_metrics, hmif_metrics, pansharpening_metrics

    if task not in FUSION_TASKS + SHARPEN_TASKS:
        raise ValueError(f"--task must be one of {FUSION_TASKS + SHARPEN_TASKS}, got {task!r}")
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
            fi, ai, bi = read_image(fp), read_image(ap), read_image(bp)
            for nm, arr, p in (("a", ai, ap), ("b", bi, bp)):
                if arr.shape[:2] != fi.shape[:2]:
                    report.problems.append(f"{method}: size mismatch for {stem!r}: fused {fp.name} {fi.shape[:2]} "
                                           f"vs {nm} {p.name} {arr.shape[:2]}")
                    return None
            return fusion_metrics(fi, ai, bi, color=color, metrics=metrics, lpips_weights=lpips_weights)
        fi = read_array(fp, "fused")
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
        if mrows:
            report.summary[method] = {
                k: (float(np.mean(v)), float(np.std(v)), len(v))
                for k in seen if (v := [r[k] for r in mrows if k in r])
            }
    return report


def write_csv(report: MetricsReport, out: Path) -> None:
    """Per-image rows, then ``mean`` and ``std`` rows per method (written atomically).

    File names that are not valid UTF-8 are written with their original bytes.
    """
    import io

    from manifests.io import atomic_write

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
    from manifests.io import printable

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
        table.add_row(k + (" ↓" if k in LOWER_IS_BETTER else ""), *cells)
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
        color: str = typer.Option("gray", "--color", help="gray (rgb2gray, default) or per_channel (VIFB)"),
        ratio: int = typer.Option(4, "--ratio", help="pan/hmif resolution ratio"),
        sensor: str | None = typer.Option(None, "--sensor", help="pan sensor for MTF gains (QB, IKONOS, GeoEye1, WV2, WV3)"),
        max_value: float = typer.Option(2047.0, "--max-value", help="sensor DN peak for normalised pan data"),
        metric: list[str] | None = typer.Option(None, "--metric", help="compute only these fusion metrics"),
        lpips_weights: Path | None = typer.Option(None, "--lpips-weights", help="local LPIPS backbone state dict"),
        a_suffix: str = typer.Option("", "--a-suffix", help="name suffix of A files to strip when matching (e.g. -A)"),
        b_suffix: str = typer.Option("", "--b-suffix", help="name suffix of B files to strip when matching (e.g. -B)"),
    ) -> None:
        """Compute every metric per image and mean/std per method; print a table, optionally write a CSV."""
        from rich.console import Console

        from fusion.metrics import LPIPS_SKIP_MESSAGE

        console = Console()
        if task in FUSION_TASKS and lpips_weights is None:
            console.print(f"[dim]{LPIPS_SKIP_MESSAGE}[/dim]")
        try:
            report = run_metrics(task, list(fused), a, b, ref, color=color, ratio=ratio, sensor=sensor,
                                 max_value=max_value, metrics=metric or None, lpips_weights=lpips_weights,
                                 a_suffix=a_suffix, b_suffix=b_suffix)
        except (ValueError, FileNotFoundError) as err:
            raise typer.BadParameter(str(err)) from err
        print_report(report, console)
        if out is not None:
            write_csv(report, out)
            from manifests.io import printable

            console.print(f"wrote {printable(str(out))}", markup=False)
        if not report.rows:
            raise typer.Exit(code=1)
