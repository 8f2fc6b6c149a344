"""``manifests stats``: counts by status/task/dataset, instances per class, caption and token lengths."""
from __future__ import annotations

from collections import Counter
from typing import Any

import pyarrow as pa


def _summary(values: list[int]) -> dict[str, float]:
    if not values:
        return {"count": 0, "mean": 0.0, "min": 0, "max": 0}
    return {"count": len(values), "mean": round(sum(values) / len(values), 3), "min": min(values), "max": max(values)}


def manifest_stats(table: pa.Table) -> dict[str, Any]:
    """Summary of a (deduplicated) manifest table.

    Keys: ``rows``; ``by_status``, ``by_task``, ``by_dataset``, ``by_split`` (row counts); over ok rows:
    ``instances`` (total), ``instances_per_class``, ``instances_per_modality``, ``caption_words`` and
    ``text_tokens`` per modality (count/mean/min/max), ``errors`` (error messages by count, top 10).
    """
    rows = table.to_pylist()
    ok = [r for r in rows if r["status"] == "ok"]
    per_class: Counter[str] = Counter()
    per_modality: Counter[str] = Counter()
    for r in ok:
        per_class.update(r["labels"] or [])
        per_modality.update(r["instance_modality"] or [])
    words = {m: [len(r[f"caption_{m}"].split()) for r in ok if r[f"caption_{m}"] is not None] for m in ("a", "b")}
    tokens = {m: [r[f"text_{m}_shape"][0] for r in ok if r[f"text_{m}_shape"]] for m in ("a", "b")}
    return {
        "rows": len(rows),
        "by_status": dict(sorted(Counter(r["status"] for r in rows).items())),
        "by_task": dict(sorted(Counter(r["task"] for r in rows).items())),
        "by_dataset": dict(sorted(Counter(r["dataset"] for r in rows).items())),
        "by_split": dict(sorted(Counter(r["split"] for r in rows).items())),
        "instances": sum(per_class.values()),
        "instances_per_class": dict(sorted(per_class.items(), key=lambda kv: (-kv[1], kv[0]))),
        "instances_per_modality": dict(sorted(per_modality.items())),
        "caption_words": {m: _summary(v) for m, v in words.items()},
        "text_tokens": {m: _summary(v) for m, v in tokens.items()},
        "errors": dict(Counter(r["error"] for r in rows if r["status"] == "error").most_common(10)),
    }


def format_stats(stats: dict[str, Any]) -> str:
    """Plain-text rendering of :func:`manifest_stats` (one ``key: value`` line per entry)."""
    lines = [f"rows: {stats['rows']}"]
    for key in ("by_status", "by_task", "by_dataset", "by_split"):
        lines.append(f"{key}: " + (", ".join(f"{k}={v}" for k, v in stats[key].items()) or "-"))
    lines.append(f"instances: {stats['instances']}")
    for key in ("instances_per_class", "instances_per_modality"):
        lines.append(f"{key}: " + (", ".join(f"{k}={v}" for k, v in stats[key].items()) or "-"))
    for key in ("caption_words", "text_tokens"):
        for m, s in stats[key].items():
            lines.append(f"{key} {m}: n={s['count']} mean={s['mean']} min={s['min']} max={s['max']}")
    for msg, n in stats["errors"].items():
        lines.append(f"error x{n}: {msg}")
    return "\n".join(lines)
