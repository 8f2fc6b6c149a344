"""Bi-WKV scaling benchmark: ``python -m rwkvfusion_kernels.bench --out bench [--quick]``.

Writes ``<out>/kernels.json`` and ``<out>/kernels.md``:
* CPU: forward and forward+backward wall time (median of repeats) and peak extra memory of the O(T)
  PyTorch path for T = 64^2 .. 512^2 tokens (B=1, C=64), against ``scaled_dot_product_attention`` with
  one head of the same width where it fits (sizes whose predicted time or memory is too large are
  skipped with the reason recorded), and the fitted exponent of time vs T.
* CUDA (when present): the same for the Triton kernels, the PyTorch path and SDPA, plus the achieved
  bandwidth of the Triton kernels as a fraction of the measured device copy bandwidth.

Each CPU configuration runs in a fresh subprocess so its peak RSS is its own. The machine may be shared:
the load average at start is recorded. Nothing here asserts a timing.
"""
from __future__ import annotations

import datetime
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

SIZES = [64, 128, 256, 512]            # image side; T = side^2
QUICK_SIZES = [32, 64]
WIDTH = 64
SDPA_MAX_SECONDS = 60.0                # predicted fwd+bwd time above which SDPA is skipped on CPU
MEMORY_LIMIT_BYTES = 8 * 2**30


def _inputs(T: int, C: int, device: str, requires_grad: bool = True):
    import torch

    g = torch.Generator(device="cpu").manual_seed(0)
    k = ((torch.rand(1, T, C, generator=g) * 2 - 1) * 5).to(device)
    v = torch.randn(1, T, C, generator=g).to(device)
    w = ((torch.rand(C, generator=g) * 2 - 1) * 20).to(device)
    u = ((torch.rand(C, generator=g) * 2 - 1) * 3).to(device)
    return [x.requires_grad_(requires_grad) for x in (k, v, w, u)]


def _run_once(impl: str, T: int, C: int, device: str, backward: bool):
    """Returns a closure doing one forward (and backward) pass."""
    import torch

    if impl == "sdpa":
        q = torch.randn(1, 1, T, C, device=device, requires_grad=backward)
        kk = torch.randn(1, 1, T, C, device=device, requires_grad=backward)
        vv = torch.randn(1, 1, T, C, device=device, requires_grad=backward)

        def step():
            out = torch.nn.functional.scaled_dot_product_attention(q, kk, vv)
            if backward:
                out.backward(torch.ones_like(out))
            return out
        return step
    from rwkvfusion_kernels import bi_wkv

    k, v, w, u = _inputs(T, C, device, requires_grad=backward)

    def step():
        with torch.set_grad_enabled(backward):
            y = bi_wkv(k, v, w, u, impl=impl)
        if backward:
            y.backward(torch.ones_like(y))
        return y
    return step


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def _time(step, repeats: int, device: str, cpu_times: list[float] | None = None) -> list[float]:
    """Wall times of ``repeats`` calls after one warm-up; CPU seconds (all threads) go to ``cpu_times``."""
    step()                                                   # warm-up (and Triton compile)
    _sync(device)
    times = []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        _sync(device)
        times.append(time.perf_counter() - t0)
        if cpu_times is not None:
            cpu_times.append(time.process_time() - c0)
    return times


def _worker(impl: str, T: int, C: int, repeats: int, threads: int = 0) -> dict:
    """One CPU configuration in this (fresh) process: fwd and fwd+bwd median time, peak extra RSS.

    ``threads`` > 0 sets torch's intra-op thread count (0 keeps the default, i.e. OMP_NUM_THREADS).
    """
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    res = {"impl": impl, "T": T, "C": C, "threads": torch.get_num_threads()}
    for mode, backward in (("fwd", False), ("fwd_bwd", True)):
        step = _run_once(impl, T, C, "cpu", backward)
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        cpu = []
        times = _time(step, repeats, "cpu", cpu)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        res[f"{mode}_s"] = statistics.median(times)
        res[f"{mode}_min_s"] = min(times)
        res[f"{mode}_runs_s"] = times
        # CPU seconds summed over threads: a load-independent view on a shared machine
        res[f"{mode}_cpu_s"] = statistics.median(cpu)
        # ru_maxrss is in KiB on Linux; the forward runs first, so fwd_bwd's figure is its own only if larger
        res[f"{mode}_peak_extra_mib"] = max(0, peak - base) / 1024
    return res


def _spawn(impl: str, T: int, C: int, repeats: int, timeout: float, threads: int = 0) -> dict:
    cmd = [sys.executable, "-m", "rwkvfusion_kernels.bench", "--worker", impl, str(T), str(C), str(repeats), str(threads)]
    env = dict(os.environ)
    env.pop("TRITON_INTERPRET", None)
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                             cwd=str(Path(__file__).resolve().parents[1]))
    except subprocess.TimeoutExpired:
        return {"impl": impl, "T": T, "C": C, "skipped": f"timed out after {timeout:.0f} s"}
    if out.returncode != 0:
        return {"impl": impl, "T": T, "C": C, "skipped": f"worker failed: {out.stderr.strip()[-300:]}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _fit_exponent(rows: list[dict], key: str) -> float | None:
    pts = [(math.log(r["T"]), math.log(r[key])) for r in rows if key in r and r[key] > 0]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx


def _machine() -> dict:
    import torch

    info = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
        "cpu_count": os.cpu_count(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "torch_threads": torch.get_num_threads(), "load_average_at_start": os.getloadavg(),
    }
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def _scaling(rows: list[dict]) -> dict:
    ok = [r for r in rows if "fwd_bwd_s" in r]
    out = {"exponent_fwd": _fit_exponent(ok, "fwd_s"), "exponent_fwd_bwd": _fit_exponent(ok, "fwd_bwd_s"),
           "exponent_fwd_bwd_cpu_time": _fit_exponent(ok, "fwd_bwd_cpu_s")}
    by_t = {r["T"]: r for r in ok}
    if 256 * 256 in by_t and 512 * 512 in by_t:
        out["ratio_fwd_bwd_512_over_256"] = by_t[512 * 512]["fwd_bwd_s"] / by_t[256 * 256]["fwd_bwd_s"]
        out["ratio_fwd_bwd_cpu_time_512_over_256"] = (by_t[512 * 512]["fwd_bwd_cpu_s"]
                                                      / by_t[256 * 256]["fwd_bwd_cpu_s"])
        out["ratio_fwd_bwd_min_512_over_256"] = by_t[512 * 512]["fwd_bwd_min_s"] / by_t[256 * 256]["fwd_bwd_min_s"]
    return out


def _cpu_bench(sizes: list[int], quick: bool) -> dict:
    """PyTorch Bi-WKV at the default thread count and single-threaded (robust on a shared machine), and SDPA."""
    rows, rows_1t, sdpa_rows, cpu_rows = [], [], [], []
    for side in sizes:
        T = side * side
        repeats = 3 if quick else 5
        cpu_rows.append(_spawn("cpu", T, WIDTH, repeats, timeout=600))     # the C kernel (the CPU default)
        rows.append(_spawn("torch", T, WIDTH, repeats, timeout=600))
        rows_1t.append(_spawn("torch", T, WIDTH, repeats, timeout=600, threads=1))
    # SDPA is O(T^2) in time: extrapolate from the measured sizes and skip what would take too long
    for side in sizes:
        T = side * side
        math_bytes = 4 * T * T                                # the T x T score matrix of the math backend
        done = [r for r in sdpa_rows if "fwd_bwd_s" in r]
        predicted = done[-1]["fwd_bwd_s"] * (T / done[-1]["T"]) ** 2 if done else 0.0
        if predicted > SDPA_MAX_SECONDS:
            sdpa_rows.append({"impl": "sdpa", "T": T, "C": WIDTH, "skipped":
                              f"predicted fwd+bwd {predicted:.0f} s (O(T^2) time) > {SDPA_MAX_SECONDS:.0f} s; "
                              f"a materialised score matrix would need {math_bytes / 2**30:.1f} GiB"})
            continue
        if math_bytes > MEMORY_LIMIT_BYTES and not done:
            sdpa_rows.append({"impl": "sdpa", "T": T, "C": WIDTH,
                              "skipped": f"score matrix {math_bytes / 2**30:.1f} GiB > 8 GiB"})
            continue
        sdpa_rows.append(_spawn("sdpa", T, WIDTH, 3 if T <= 128 * 128 else 1, timeout=300))
    out = {"bi_wkv_cpu": cpu_rows, "bi_wkv_torch": rows, "bi_wkv_torch_1_thread": rows_1t, "sdpa": sdpa_rows}
    out.update(_scaling(rows))
    out["cpu_kernel"] = _scaling(cpu_rows)
    by_t = {r["T"]: r for r in rows if "fwd_bwd_s" in r}
    out["speedup_cpu_over_torch_fwd_bwd"] = {str(r["T"]): by_t[r["T"]]["fwd_bwd_s"] / r["fwd_bwd_s"]
                                             for r in cpu_rows if "fwd_bwd_s" in r and r["T"] in by_t}
    out["single_thread"] = _scaling(rows_1t)
    out["exponent_sdpa_fwd_bwd"] = _fit_exponent([r for r in sdpa_rows if "fwd_bwd_s" in r], "fwd_bwd_s")
    return out


def _cuda_bench(sizes: list[int], quick: bool) -> dict:
    import torch

    dev = "cuda"
    n = 256 * 2**20
    src = torch.empty(n // 4, device=dev, dtype=torch.float32)
    dst = torch.empty_like(src)
    copy_t = statistics.median(_time(lambda: dst.copy_(src), 20, dev))
    copy_bw = 2 * n / copy_t
    out = {"copy_bandwidth_GBps": copy_bw / 1e9, "rows": []}
    for side in sizes:
        T = side * side
        for impl in ("triton", "torch", "sdpa"):
            row = {"impl": impl, "T": T, "C": WIDTH}
            try:
                for mode, backward in (("fwd", False), ("fwd_bwd", True)):
                    step = _run_once(impl, T, WIDTH, dev, backward)
                    torch.cuda.reset_peak_memory_stats()
                    row[f"{mode}_s"] = statistics.median(_time(step, 5 if quick else 20, dev))
                    row[f"{mode}_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
            except torch.cuda.OutOfMemoryError as exc:
                row["skipped"] = f"out of memory: {exc}"[:200]
            if impl == "triton" and "fwd_s" in row:
                # memory floor: forward reads k, v and writes y (+ D for the backward): 4 fp32 tensors;
                # forward+backward adds reading k, v, gy, y, D and writing gk, gv: 11 tensors in all
                elem = T * WIDTH * 4
                row["fwd_bandwidth_fraction"] = 4 * elem / row["fwd_s"] / copy_bw
                row["fwd_bwd_bandwidth_fraction"] = 11 * elem / row["fwd_bwd_s"] / copy_bw
            out["rows"].append(row)
    for impl in ("triton", "torch", "sdpa"):
        out[f"exponent_{impl}_fwd_bwd"] = _fit_exponent(
            [r for r in out["rows"] if r["impl"] == impl and "fwd_bwd_s" in r], "fwd_bwd_s")
    return out


def _fmt(x, unit="") -> str:
    if x is None:
        return "-"
    return f"{x:.4g}{unit}"


def _markdown(res: dict) -> str:
    m = res["machine"]
    lines = ["# Bi-WKV kernel benchmark", "",
             f"{m['date_utc']}; CPU {m.get('cpu', '?')} ({m['cpu_count']} cores, torch threads {m['torch_threads']}, "
             f"load average at start {', '.join(f'{x:.2f}' for x in m['load_average_at_start'])}); "
             f"torch {m['torch']}, triton {m['triton']}, Python {m['python']}.", "",
             "## CPU: the C kernel (impl cpu, the CPU default) and the exact O(T) PyTorch Bi-WKV (impl torch) vs "
             "scaled_dot_product_attention (B=1, C=64, median wall time)", "",
             "| tokens | impl | threads | fwd s | fwd+bwd s | fwd+bwd CPU s (all threads) | peak extra MiB (fwd / fwd+bwd) | note |",
             "|---:|---|---:|---:|---:|---:|---:|---|"]
    cpu = res["cpu"]
    for r in cpu.get("bi_wkv_cpu", []) + cpu["bi_wkv_torch"] + cpu["bi_wkv_torch_1_thread"] + cpu["sdpa"]:
        side = int(round(math.sqrt(r["T"])))
        lines.append(f"| {side}^2 = {r['T']} | {r['impl']} | {r.get('threads', '-')} | {_fmt(r.get('fwd_s'))} | {_fmt(r.get('fwd_bwd_s'))} | "
                     f"{_fmt(r.get('fwd_bwd_cpu_s'))} | {_fmt(r.get('fwd_peak_extra_mib'))} / {_fmt(r.get('fwd_bwd_peak_extra_mib'))} | "
                     f"{r.get('skipped', '')} |")
    st = cpu["single_thread"]
    ck = cpu.get("cpu_kernel") or {}
    if ck:
        lines += ["", f"C kernel: fitted exponent of forward+backward wall time vs T {_fmt(ck.get('exponent_fwd_bwd'))}, "
                  f"ratio 512^2 / 256^2 tokens {_fmt(ck.get('ratio_fwd_bwd_512_over_256'))} (linear = 4); forward+backward "
                  "speed-up over the PyTorch path per T: "
                  + ", ".join(f"{t}: {_fmt(v)}x" for t, v in cpu.get("speedup_cpu_over_torch_fwd_bwd", {}).items()) + "."]
    lines += ["", f"Fitted exponent of wall time vs T (PyTorch Bi-WKV, default threads): forward "
              f"{_fmt(cpu['exponent_fwd'])}, forward+backward {_fmt(cpu['exponent_fwd_bwd'])} "
              f"(CPU time {_fmt(cpu['exponent_fwd_bwd_cpu_time'])}); single thread: forward "
              f"{_fmt(st['exponent_fwd'])}, forward+backward {_fmt(st['exponent_fwd_bwd'])}; "
              f"SDPA forward+backward {_fmt(cpu['exponent_sdpa_fwd_bwd'])}.",
              f"Forward+backward time ratio 512^2 / 256^2 tokens (linear = 4): default threads wall "
              f"{_fmt(cpu.get('ratio_fwd_bwd_512_over_256'))}, CPU time "
              f"{_fmt(cpu.get('ratio_fwd_bwd_cpu_time_512_over_256'))}; single thread wall "
              f"{_fmt(st.get('ratio_fwd_bwd_512_over_256'))} (median), {_fmt(st.get('ratio_fwd_bwd_min_512_over_256'))} "
              f"(fastest run).",
              "On a shared machine multi-threaded wall times suffer from thread barriers waiting on descheduled "
              "threads; the single-thread rows are the load-robust figures.", ""]
    if "cuda" in res:
        cu = res["cuda"]
        lines += [f"## CUDA ({m.get('gpu')}): measured copy bandwidth {cu['copy_bandwidth_GBps']:.0f} GB/s", "",
                  "| tokens | impl | fwd s | fwd+bwd s | peak MiB (fwd / fwd+bwd) | bandwidth fraction (fwd / fwd+bwd) |",
                  "|---:|---|---:|---:|---:|---:|"]
        for r in cu["rows"]:
            side = int(round(math.sqrt(r["T"])))
            lines.append(f"| {side}^2 | {r['impl']} | {_fmt(r.get('fwd_s'))} | {_fmt(r.get('fwd_bwd_s'))} | "
                         f"{_fmt(r.get('fwd_peak_mib'))} / {_fmt(r.get('fwd_bwd_peak_mib'))} | "
                         f"{_fmt(r.get('fwd_bandwidth_fraction'))} / {_fmt(r.get('fwd_bwd_bandwidth_fraction'))} "
                         f"{r.get('skipped', '')}|")
        lines.append("")
    else:
        lines += ["No CUDA device: Triton kernels not timed (they are tested through the interpreter).", ""]
    return "\n".join(lines)


def run_kernel_bench(out_dir: Path, quick: bool = False) -> dict:
    """Run the benchmark, write ``out_dir/kernels.json`` and ``out_dir/kernels.md``, return the results."""
    import torch

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sizes = QUICK_SIZES if quick else SIZES
    res = {"machine": _machine(), "quick": quick, "width": WIDTH, "batch": 1, "cpu": _cpu_bench(sizes, quick)}
    if torch.cuda.is_available():
        res["cuda"] = _cuda_bench(sizes, quick)
    (out_dir / "kernels.json").write_text(json.dumps(res, indent=2))
    (out_dir / "kernels.md").write_text(_markdown(res))
    return res


def main(argv: list[str] | None = None) -> None:
    import argparse

    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        impl, T, C, repeats, threads = argv[1], int(argv[2]), int(argv[3]), int(argv[4]), int(argv[5])
        print(json.dumps(_worker(impl, T, C, repeats, threads)))
        return
    ap = argparse.ArgumentParser(prog="python -m rwkvfusion_kernels.bench", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench"), help="output folder (default: bench)")
    ap.add_argument("--quick", action="store_true", help="small sizes only (smoke run)")
    args = ap.parse_args(argv)
    run_kernel_bench(args.out, quick=args.quick)
    print((args.out / "kernels.md").read_text())


if __name__ == "__main__":
    main()
