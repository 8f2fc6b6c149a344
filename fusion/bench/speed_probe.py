"""One speed/memory measurement of the VIF model, run as a script in a fresh interpreter.

``python fusion/speed_probe.py '<json spec>'`` prints one JSON line. It imports ``fusion`` from
PYTHONPATH, so the same script measures the current tree or an exported older revision (the bench's
"previous" column) on equal terms; it therefore uses only ``build_model`` and ``model(a, b)``.

spec: size, mode ("eager" | "compile" | "compile-full" | "bf16" | "bf16-compile"), kind ("forward" | "train"),
repeats, batch (train), threads, tile (forward: tile side for ``fuse_tiled``, current tree only).
Forward: batch 1, fp32 (or bf16 autocast), ``torch.inference_mode``, text and mask absent.
Train: ``batch`` x 1 x size x size, mean-output loss, backward and an AdamW step.
"""
from __future__ import annotations

import json
import resource
import statistics
import sys
import time


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(spec: dict) -> dict:
    import torch

    torch.set_num_threads(int(spec.get("threads", 2)))
    from fusion import build_model

    size, mode, kind = int(spec["size"]), spec.get("mode", "eager"), spec.get("kind", "forward")
    torch.manual_seed(0)
    model = build_model("vif")
    g = torch.Generator().manual_seed(0)
    batch = int(spec.get("batch", 1)) if kind == "train" else 1
    a = torch.rand(batch, 1, size, size, generator=g)
    b = torch.rand(batch, 1, size, size, generator=g)
    fn = model
    if "compile" in mode:           # the trees' --compile: elementwise regions ("-full": the whole model)
        try:
            from fusion.model.pointwise import compile_model
        except ImportError:         # a tree before regional compilation: the whole model
            fn = torch.compile(model, dynamic=bool(spec.get("dynamic", False)))
        else:
            compile_model(model, "full" if mode.endswith("-full") else "regional")
    amp = (torch.autocast("cpu", dtype=torch.bfloat16) if mode.startswith("bf16")
           else torch.autocast("cpu", enabled=False))
    rss0 = _rss_mib()
    if kind == "forward":
        model.eval()
        tile = spec.get("tile")

        def step() -> None:
            with torch.inference_mode(), amp:
                if tile:
                    from fusion.train.inference import fuse_tiled

                    fuse_tiled(fn, a, b, tile=int(tile))
                else:
                    fn(a, b)
    else:
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            with amp:
                loss = fn(a, b).float().mean()
            loss.backward()
            opt.step()
    t0 = time.perf_counter()
    step()                                                    # warm-up (and compilation)
    warm = time.perf_counter() - t0
    walls, cpus = [], []
    for _ in range(int(spec.get("repeats", 3))):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    med = statistics.median(walls) if walls else warm
    return {"size": size, "mode": mode, "kind": kind, "batch": batch, "warmup_s": warm, "times_s": walls,
            "cpu_times_s": cpus, "median_s": med, "median_cpu_s": statistics.median(cpus) if cpus else None,
            "images_per_s": batch / med, "peak_rss_mib": _rss_mib(), "rss_before_mib": rss0,
            "threads": torch.get_num_threads()}


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
