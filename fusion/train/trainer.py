"""Optimisation loop: AdamW + cosine annealing (Table 1), EMA, bf16 autocast, DDP, exact resume."""
from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from fusion.config import OptimConfig
from fusion.train.checkpoint import (
    CHECKPOINT_FORMAT,
    capture_rng,
    clean_stale_temporaries,
    load_checkpoint,
    restore_rng,
    save_atomic,
)
from fusion.train.ema import ModelEMA
from fusion.train.runlog import MetricLog
from fusion.train.sampling import (
    ResumableSampler,
    SeededSamples,
    SkipUnreadable,
    UnreadableSample,
    WeightedResumableSampler,
)
from rwkvfusion_io.distributed import DistEnv, all_true, mean_over_ranks

logger = logging.getLogger(__name__)

# batch keys that are model/loss inputs (moved to the device and checked for non-finite values)
TENSOR_KEYS = ("a", "b", "gt", "text", "text_mask", "mask", "has_mask")


@dataclass
class TrainSettings:
    """Budget and bookkeeping of one run; the optimiser numbers are ``optim`` (the task config's section,
    Table 1: batch, lr, betas, weight decay, min lr, gradient clipping). ``steps`` (if set) overrides ``epochs``."""

    optim: OptimConfig
    steps: int | None = None
    epochs: int | None = None
    ema_decay: float = 0.999
    checkpoint_every: int = 500
    log_every: int = 10
    seed: int = 0
    num_workers: int = 0
    amp: bool = True  # bf16 autocast, CUDA only
    progress: bool = True
    # unreadable samples (corrupt file, NaN values, ...) are skipped and recorded up to this fraction
    max_unreadable_fraction: float = 0.1
    extra: dict[str, Any] = field(default_factory=dict)  # free-form provenance (data paths, demo, ...)

    def __post_init__(self) -> None:
        if not isinstance(self.optim, OptimConfig):
            raise TypeError(f"TrainSettings.optim: expected an OptimConfig, got {type(self.optim).__name__}")
        if self.steps is None and self.epochs is None:
            raise ValueError("TrainSettings needs steps or epochs")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if not 0.0 <= self.max_unreadable_fraction <= 1.0:
            raise ValueError(f"max_unreadable_fraction must be in [0, 1], got {self.max_unreadable_fraction}")


class Trainer:
    """Trains ``model`` with ``loss_fn`` on ``dataset``; rank 0 writes checkpoints and logs to ``out_dir``.

    Batches are dicts from ``collate``: "id" (list of str), "a" [B, Ca, H, W], "b" [B, Cb, H, W] and
    optionally "gt", "text" [B, L, D], "text_mask" [B, L], "mask".  ``loss_fn(out, a, b, mask=, gt=, has_mask=, ids=)``
    returns ``(total, parts)``.  A step whose inputs, loss or gradients are non-finite is skipped on
    every rank and counted in ``skipped`` (the schedule still advances: one step = one batch).
    A sample that cannot be loaded is left out of its batch, logged by name with the reason and kept in
    ``unreadable`` (saved in the checkpoint, so a resumed run does not read it again); more than
    ``settings.max_unreadable_fraction`` of the dataset (and more than one sample) unreadable stops
    training with a ValueError.
    """

    def __init__(self, model: nn.Module, loss_fn: Callable[..., tuple[torch.Tensor, dict[str, float]]],
                 dataset: Dataset, settings: TrainSettings, out_dir: str | Path, env: DistEnv, *,
                 collate_fn: Callable[[list[Any]], dict[str, Any]] | None = None,
                 config: dict[str, Any] | None = None, task: str | None = None) -> None:
        self.env, self.settings = env, settings
        self.out_dir = Path(out_dir)
        self.checkpoint_path = self.out_dir / "checkpoint.pt"
        if env.is_main:
            clean_stale_temporaries(self.checkpoint_path)
        self.task, self.config = task, dict(config or {})
        self.model = model.to(env.device)
        self.loss_fn = loss_fn.to(env.device) if isinstance(loss_fn, nn.Module) else loss_fn
        self.ddp = (DistributedDataParallel(self.model, device_ids=[env.device.index] if env.device.type == "cuda"
                                            else None, find_unused_parameters=True)
                    if env.distributed else None)
        self.ema = ModelEMA(self.model, settings.ema_decay)
        optim = settings.optim
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=optim.lr, betas=tuple(optim.betas),
                                           weight_decay=optim.weight_decay)

        n = len(dataset)  # type: ignore[arg-type]
        if n == 0:
            raise ValueError("the training dataset is empty")
        weights = getattr(dataset, "sample_weights", None)  # multi-dataset mixing (fusion.data.multi)
        if weights is not None and len(set(weights)) > 1:
            self.sampler: ResumableSampler = WeightedResumableSampler(
                dataset, list(weights), num_replicas=env.world_size, rank=env.rank, seed=settings.seed)
        else:
            self.sampler = ResumableSampler(dataset, num_replicas=env.world_size, rank=env.rank, shuffle=True,
                                            seed=settings.seed)
        per_rank = len(self.sampler)
        self.batch_size = optim.batch_size
        if per_rank < self.batch_size:
            warnings.warn(f"batch size {self.batch_size} exceeds the {per_rank} samples per rank; "
                          f"using {per_rank}", stacklevel=2)
            self.batch_size = per_rank
        self.samples = SeededSamples(dataset, settings.seed, skip_errors=True)
        self.n_samples = n
        self.loader = DataLoader(self.samples, batch_size=self.batch_size,
                                 sampler=self.sampler, collate_fn=SkipUnreadable(collate_fn), drop_last=True,
                                 num_workers=settings.num_workers, pin_memory=env.device.type == "cuda",
                                 persistent_workers=False,
                                 # own generator: making an iterator must not consume the global RNG (exact resume)
                                 generator=torch.Generator().manual_seed(settings.seed))
        self.batches_per_epoch = per_rank // self.batch_size
        self.total_steps = settings.steps if settings.steps is not None else settings.epochs * self.batches_per_epoch
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=self.total_steps,
                                                                    eta_min=optim.min_lr)
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.skipped = 0
        self.nonfinite_inputs: list[str] = []
        self.unreadable: dict[str, str] = {}  # sample name -> reason

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        rng = capture_rng()
        rngs = [rng]
        if self.env.distributed:
            rngs = [None] * self.env.world_size
            dist.all_gather_object(rngs, rng)
        return {
            "format": CHECKPOINT_FORMAT, "task": self.task, "config": self.config,
            "settings": asdict(self.settings), "model": self.model.state_dict(), "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
            "skipped": self.skipped, "world_size": self.env.world_size, "batch_size": self.batch_size,
            "total_steps": self.total_steps, "rng": rngs,
            "unreadable": [[u.index, u.name, u.reason] for u in self.samples.known_bad.values()],
        }

    def save(self) -> None:
        """Checkpoint (collective under DDP: every rank calls it; rank 0 writes)."""
        state = self.state_dict()
        if self.env.is_main:
            save_atomic(state, self.checkpoint_path)

    def resume(self, path: str | Path | None = None) -> bool:
        """Restore everything from ``path`` (default ``out_dir/checkpoint.pt``); False when it is absent."""
        path = Path(path) if path is not None else self.checkpoint_path
        if not path.is_file():
            return False
        ckpt = load_checkpoint(path, map_location="cpu")  # RNG states must stay CPU tensors
        if ckpt.get("task") not in (None, self.task):
            raise ValueError(f"checkpoint {path} is for task {ckpt.get('task')!r}, not {self.task!r}")
        if ckpt["world_size"] != self.env.world_size or ckpt["batch_size"] != self.batch_size:
            warnings.warn(f"resuming {path} (world size {ckpt['world_size']}, batch {ckpt['batch_size']}) with "
                          f"world size {self.env.world_size}, batch {self.batch_size}: the data order will differ "
                          "from an uninterrupted run", stacklevel=2)
        self.model.load_state_dict(ckpt["model"])
        self.ema.load_state_dict(ckpt["ema"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt["total_steps"] != self.total_steps:
            # a longer/shorter budget on resume: keep the cosine on the new horizon
            self.scheduler.T_max = self.total_steps
        self.step, self.epoch = int(ckpt["step"]), int(ckpt["epoch"])
        self.batch_in_epoch, self.skipped = int(ckpt["batch_in_epoch"]), int(ckpt["skipped"])
        for index, name, reason in ckpt.get("unreadable", []):
            self._record_unreadable([UnreadableSample(int(index), str(name), str(reason))], quiet=True)
        rngs = ckpt["rng"]
        restore_rng(rngs[self.env.rank] if len(rngs) == self.env.world_size else rngs[0])
        return True

    # ------------------------------------------------------------------ step
    def _autocast(self):
        if self.settings.amp and self.env.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        if self.settings.optim.cpu_bf16 and self.env.device.type == "cpu":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return torch.autocast(self.env.device.type, enabled=False)

    def _to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {k: (v.to(self.env.device, non_blocking=True) if k in TENSOR_KEYS and torch.is_tensor(v) else v)
                for k, v in batch.items()}

    @staticmethod
    def nonfinite_samples(batch: dict[str, Any]) -> list[str]:
        """Ids of the samples of ``batch`` holding NaN/Inf in any floating input."""
        ids = list(batch.get("id") or range(len(batch["a"])))
        bad = torch.zeros(len(ids), dtype=torch.bool)
        for k in TENSOR_KEYS:
            v = batch.get(k)
            if torch.is_tensor(v) and v.is_floating_point():
                bad |= ~torch.isfinite(v.reshape(len(ids), -1)).all(dim=1).cpu()
        return [str(ids[i]) for i in torch.nonzero(bad).flatten().tolist()]

    def _record_unreadable(self, items: list[UnreadableSample], *, quiet: bool = False) -> None:
        for u in items:
            if u.name not in self.unreadable:
                self.unreadable[u.name] = u.reason
                if not quiet:
                    logger.warning("rank %d: skipping unreadable training sample %s: %s", self.env.rank, u.name,
                                   u.reason)
            self.samples.known_bad[u.index] = u
        frac = self.settings.max_unreadable_fraction
        limit = max(1.0, frac * self.n_samples) if frac > 0 else 0.0  # one bad sample of a small set is fine
        if len(self.unreadable) > limit:
            first, why = next(iter(self.unreadable.items()))
            raise ValueError(f"{len(self.unreadable)} of {self.n_samples} training samples are unreadable (more "
                             f"than {self.settings.max_unreadable_fraction:.0%}); first {first}: {why}")

    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        """One optimisation step on ``batch``; returns the loss parts ("loss", "grad_norm", "skipped")."""
        self.model.train()
        net = self.ddp if self.ddp is not None else self.model
        self._record_unreadable(list(batch.pop("unreadable", None) or []))
        if "a" not in batch:  # every sample of this batch was unreadable
            bad = ["(no readable sample in this batch)"]
        else:
            batch = self._to_device(batch)
            bad = self.nonfinite_samples(batch)
        if bad and "a" in batch:
            self.nonfinite_inputs.extend(bad)
            logger.warning("rank %d step %d: non-finite values (NaN/Inf) in samples %s; step skipped",
                           self.env.rank, self.step + 1, bad)
        result: dict[str, float] = {"loss": float("nan"), "grad_norm": float("nan"), "skipped": 1.0}
        if all_true(not bad, self.env):
            with self._autocast():
                out = net(batch["a"], batch["b"], text=batch.get("text"), text_mask=batch.get("text_mask"),
                          mask=batch.get("mask"))
            loss, parts = self.loss_fn(out.float(), batch["a"], batch["b"], mask=batch.get("mask"),
                                       gt=batch.get("gt"), has_mask=batch.get("has_mask"), ids=batch.get("id"))
            loss_ok = all_true(bool(torch.isfinite(loss.detach()).item()), self.env)
            # backward on every rank even when some loss is non-finite: DDP needs matching collectives
            loss.backward()
            params = [p for p in self.model.parameters() if p.grad is not None]
            clip = self.settings.optim.grad_clip
            gnorm = torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else float("inf"))
            if loss_ok and bool(torch.isfinite(gnorm).item()):
                self.optimizer.step()
                self.ema.update(self.model)
                result = {**{k: float(v) for k, v in parts.items()}, "loss": float(loss.detach()),
                          "grad_norm": float(gnorm), "skipped": 0.0}
            else:
                logger.warning("rank %d step %d: non-finite loss or gradient (samples %s); step skipped",
                               self.env.rank, self.step + 1, batch.get("id"))
        self.optimizer.zero_grad(set_to_none=True)
        if result["skipped"]:
            self.skipped += 1
        with warnings.catch_warnings():
            # a skipped first step calls scheduler.step() before any optimizer.step(): intended here
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
            self.scheduler.step()
        self.step += 1
        return result

    # ------------------------------------------------------------------ loop
    def fit(self, *, stop_after: int | None = None,
            on_checkpoint: Callable[[Trainer], None] | None = None) -> dict[str, Any]:
        """Train until ``total_steps`` (or ``stop_after`` more steps, to simulate preemption)."""
        s, env = self.settings, self.env
        log = MetricLog(self.out_dir, resume_step=self.step if self.step else None) if env.is_main else None
        bar = None
        if env.is_main and s.progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=self.total_steps, initial=self.step, desc=f"train {self.task or ''}".strip(),
                       dynamic_ncols=True, mininterval=1.0)
        end = self.total_steps if stop_after is None else min(self.total_steps, self.step + stop_after)
        acc: dict[str, float] = {}
        n_acc, t0, t_run, last_loss = 0, time.perf_counter(), time.perf_counter(), float("nan")
        start_step = self.step
        while self.step < end:
            if self.batch_in_epoch >= self.batches_per_epoch:
                self.epoch, self.batch_in_epoch = self.epoch + 1, 0
            self.sampler.set_position(self.epoch, self.batch_in_epoch * self.batch_size)
            for batch in self.loader:
                r = self.train_step(batch)
                self.batch_in_epoch += 1
                if not r["skipped"]:
                    n_acc += 1
                    for k, v in r.items():
                        if k != "skipped":
                            acc[k] = acc.get(k, 0.0) + v
                    last_loss = r["loss"]
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{last_loss:.4f}", lr=f"{self.scheduler.get_last_lr()[0]:.2e}",
                                    skipped=self.skipped)
                if self.step % s.log_every == 0 or self.step == end:
                    means = mean_over_ranks({k: v / max(n_acc, 1) for k, v in acc.items()}, env)
                    dt = time.perf_counter() - t0
                    if log is not None:
                        log.log({"step": self.step, "epoch": self.epoch,
                                 "lr": self.scheduler.get_last_lr()[0], "skipped_total": self.skipped,
                                 "sec_per_step": dt / max(n_acc, 1), **means})
                    acc, n_acc, t0 = {}, 0, time.perf_counter()
                if self.step % s.checkpoint_every == 0 or self.step == end:
                    self.save()
                    if on_checkpoint is not None:
                        on_checkpoint(self)
                if self.step >= end:
                    break
            else:
                self.epoch, self.batch_in_epoch = self.epoch + 1, 0
        if bar is not None:
            bar.close()
        if log is not None:
            log.close()
        return {"steps": self.step, "steps_this_run": self.step - start_step, "skipped": self.skipped,
                "nonfinite_samples": list(self.nonfinite_inputs), "last_loss": last_loss,
                "unreadable_samples": dict(self.unreadable),
                "seconds": time.perf_counter() - t_run, "total_steps": self.total_steps,
                "finished": self.step >= self.total_steps}


def lr_at(step: int, total: int, lr: float, lr_min: float) -> float:
    """Closed form of the cosine schedule (for tests and reports)."""
    return lr_min + 0.5 * (lr - lr_min) * (1 + math.cos(math.pi * step / total))
