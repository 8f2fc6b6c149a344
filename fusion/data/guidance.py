"""Join a dataset with a Parquet annotation manifest: text tokens and masks per sample.

A dataset sample is matched by its key ``"<split>/<id>"`` (``"all/<id>"`` for layouts without splits), which
is the ``sample_id`` that ``annotate`` writes for the same root; loose file pairs (``fuse --manifest``) are
matched by ``path_a`` relative to the manifest's dataset root. The sources' sha256 recorded in the row are
checked against the local files when the dataset is built:
``hash_mismatch="error"`` (default) raises naming the file; ``"skip"`` drops that sample's guidance
(it then trains unguided) and counts it in ``hash_mismatches``. Rows with ``status != "ok"`` and
samples without a row run without guidance; ``unannotated_ids`` lists them.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from fusion.config import TaskConfig, get_config
from rwkvfusion_io.images import checked_class_map


class ManifestMismatchError(ValueError):
    """A local source file differs from the one the manifest was made from (message names the file)."""




class Guidance:
    """Manifest rows matched to a dataset's samples; decodes text [L, D] and masks on demand."""

    def __init__(self, manifest: str | Path, task: str, root: str | Path, *, cfg: TaskConfig | None = None,
                 hash_mismatch: str = "error") -> None:
        import manifests

        if hash_mismatch not in ("error", "skip"):
            raise ValueError(f"hash_mismatch must be 'error' or 'skip', got {hash_mismatch!r}")
        if cfg is None:  # no config given: the task's registry config (Table 1)
            cfg = get_config(task)
        self.task, self.cfg, self.root = task, cfg, Path(root)
        self.hash_mismatch = hash_mismatch
        self.path = Path(manifest)
        table = manifests.read_manifest(self.path)
        rows = manifests.rows_by_id(table)
        self.by_id: dict[str, dict] = {k: r for k, r in rows.items() if r.get("task") in (None, task)}
        self.by_path = {str(r["path_a"]).replace("\\", "/"): r for r in self.by_id.values() if r.get("path_a")}
        self.matched: dict[str, dict] = {}
        self.unannotated_ids: list[str] = []
        self.error_rows: list[str] = []
        self.hash_mismatches: list[str] = []

    def _row_by_path(self, path: Path | None) -> dict | None:
        if path is None:
            return None
        try:
            return self.by_path.get(Path(path).resolve().relative_to(self.root.resolve()).as_posix())
        except ValueError:  # outside the dataset root
            return None

    def attach(self, sample_id: str, key: str | None, local: Mapping[str, Path | None]) -> bool:
        """Match one sample by its ``key`` (``"<split>/<id>"``, the manifest's ``sample_id`` as ``annotate``
        writes it), or with ``key=None`` by ``local["a"]`` relative to ``root``; ``local`` maps roles a/b/gt
        to files whose sha256 is checked. True if guided."""
        import manifests

        row = self.by_id.get(key) if key is not None else self._row_by_path(local.get("a"))
        if row is None:
            self.unannotated_ids.append(sample_id)
            return False
        if row.get("status", "ok") != "ok":
            self.error_rows.append(sample_id)
            self.unannotated_ids.append(sample_id)
            return False
        for role in ("a", "b", "gt"):
            want, path = row.get(f"sha256_{role}"), local.get(role)
            if not want or path is None:
                continue
            got = manifests.sha256_file(path)
            if got != want:
                msg = (f"{path}: sha256 {got[:12]}... differs from manifest {self.path} "
                       f"(sample {sample_id!r}, sha256_{role} {want[:12]}...)")
                if self.hash_mismatch == "error":
                    raise ManifestMismatchError(msg + "; pass --hash-mismatch skip (hash_mismatch='skip') to use "
                                                       "that sample without guidance")
                self.hash_mismatches.append(sample_id)
                self.unannotated_ids.append(sample_id)
                return False
        self.matched[sample_id] = row
        return True

    # ---------------------------------------------------------------- decoding
    def text(self, sample_id: str) -> np.ndarray | None:
        """[L, D] float32: VIF/MIF (text_dim = 2 x encoder width) concatenate a and b along channels,
        each zero-padded to the longer L; other tasks use one caption: ``cfg.data.text_source``
        ("a" or "b"), the other one when it is absent. The width is ``cfg.guidance.text_dim``."""
        import manifests

        row = self.matched.get(sample_id)
        if row is None:
            return None
        ta, tb = manifests.decode_text(row, "a"), manifests.decode_text(row, "b")
        if ta is None and tb is None:
            return None
        d_model = self.cfg.guidance.text_dim
        d_enc = (ta if ta is not None else tb).shape[1]
        if d_model == 2 * d_enc:
            L = max(t.shape[0] for t in (ta, tb) if t is not None)
            parts = []
            for t in (ta, tb):
                z = np.zeros((L, d_enc), np.float32)
                if t is not None:
                    z[: t.shape[0]] = t
                parts.append(z)
            return np.concatenate(parts, axis=1)
        first = self.cfg.data.text_source
        t = (tb if tb is not None else ta) if first == "b" else (ta if ta is not None else tb)
        if t.shape[1] != d_model:
            raise ValueError(f"{self.path}: sample {sample_id!r} text width {t.shape[1]} does not match the "
                             f"task's text_dim {d_model}")
        return t.astype(np.float32)

    def mask(self, sample_id: str) -> np.ndarray | None:
        """VIF: [1, H, W] float binary; MIF: [2, H, W] float (instances of a | both, b | both);
        MEF/MFF: [H, W] int64 class map, ids checked against the config's vocabulary. None when absent."""
        import manifests

        row = self.matched.get(sample_id)
        if row is None:
            return None
        cmap = manifests.decode_class_map(row)
        if self.task == "mif":
            inst = manifests.decode_instance_masks(row)
            modal = row.get("instance_modality") or []
            if inst.shape[0] and len(modal) == inst.shape[0]:
                chans = [np.any(inst[[m in (r, "both") for m in modal]], axis=0) if any(m in (r, "both") for m in modal)
                         else np.zeros(inst.shape[1:], bool) for r in ("a", "b")]
                return np.stack(chans).astype(np.float32)
            if cmap is None:
                return None
            return np.repeat((cmap > 0)[None], 2, axis=0).astype(np.float32)
        if cmap is None:
            inst = manifests.decode_instance_masks(row)
            if not inst.shape[0]:
                return None
            cmap = np.any(inst, axis=0).astype(np.uint8)
        if self.task == "vif":
            return (cmap > 0)[None].astype(np.float32)
        return checked_class_map(cmap, self.cfg.guidance.mask_classes, self.path, sample_id)

    def summary(self) -> dict[str, int]:
        return {"annotated": len(self.matched), "unannotated": len(self.unannotated_ids),
                "error_rows": len(self.error_rows), "hash_mismatches": len(self.hash_mismatches)}
