"""Training log: one CSV row per logged step, mirrored to TensorBoard when it is installed."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any


class MetricLog:
    """Appends rows to ``metrics.csv`` (columns fixed by the first row); on resume drops rows past ``resume_step``."""

    def __init__(self, out_dir: str | Path, *, resume_step: int | None = None, tensorboard: bool = True) -> None:
        self.path = Path(out_dir) / "metrics.csv"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fields: list[str] | None = None
        if resume_step is not None and self.path.is_file():
            with self.path.open(newline="") as fh:
                reader = csv.DictReader(fh)
                self.fields = list(reader.fieldnames or []) or None
                rows = [r for r in reader if r.get("step") and int(float(r["step"])) <= resume_step]
            self._rewrite(rows)
        elif self.path.exists():
            self.path.unlink()
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is an optional extra
                SummaryWriter = None
            if SummaryWriter is not None:
                self.tb = SummaryWriter(log_dir=str(self.path.parent / "tb"), purge_step=resume_step)

    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        if self.fields is None:
            return
        with self.path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=self.fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

    def log(self, row: dict[str, Any]) -> None:
        if self.fields is None:
            self.fields = list(row)
            self._rewrite([])
        with self.path.open("a", newline="") as fh:
            csv.DictWriter(fh, fieldnames=self.fields, extrasaction="ignore").writerow(row)
        if self.tb is not None:
            step = int(row["step"])
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.tb.add_scalar(f"train/{k}", v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
