"""``manifests validate``: schema and content checks of a manifest, hashes against a local copy of the images."""
from __future__ import annotations

import math
import os
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from manifests.decode import decode_class_map, decode_instance_masks, decode_text
from manifests.io import manifest_files, read_file, resolve_inside, sha256_file
from manifests.schema import (
    INSTANCE_COLUMNS,
    MASK_SOURCES,
    MODALITIES,
    SCHEMA_VERSION,
    STATUSES,
    TASKS,
    SchemaError,
)

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_SOURCES = ("a", "b", "gt")


@dataclass(frozen=True)
class Problem:
    """One problem found by :func:`validate_manifest`, located by manifest file, sample and column."""

    file: str
    sample_id: str | None
    column: str | None
    message: str

    def __str__(self) -> str:
        where = [self.file]
        if self.sample_id is not None:
            where.append(f"sample {self.sample_id!r}")
        if self.column is not None:
            where.append(self.column)
        return ": ".join([*where, self.message])


def _is_rel(path: str) -> bool:
    p = PurePosixPath(path)
    return bool(path) and not p.is_absolute() and ".." not in p.parts and "\\" not in path


def check_row(row: Mapping[str, Any]) -> list[tuple[str | None, str]]:
    """Content checks of one row -> ``[(column, message), ...]`` (empty when the row is consistent)."""
    out: list[tuple[str | None, str]] = []
    add = lambda col, msg: out.append((col, msg))  # noqa: E731
    if row.get("schema_version") != SCHEMA_VERSION:
        add("schema_version", f"is {row.get('schema_version')}, expected {SCHEMA_VERSION}")
    for c in ("sample_id", "dataset", "split"):
        if not row.get(c):
            add(c, "is empty")
    if row.get("task") not in TASKS:
        add("task", f"{row.get('task')!r} is not one of {TASKS}")
    status = row.get("status")
    if status not in STATUSES:
        add("status", f"{status!r} is not one of {STATUSES}")
    if status == "error" and not row.get("error"):
        add("error", "an error row has no error message")
    if status == "ok" and row.get("error") is not None:
        add("error", "an ok row carries an error message")
    ok = status == "ok"

    for s in _SOURCES:
        path, digest = row.get(f"path_{s}"), row.get(f"sha256_{s}")
        if path is not None and not _is_rel(path):
            add(f"path_{s}", f"{path!r} is not a relative path inside the image root")
        if digest is not None and not _HEX64.match(digest):
            add(f"sha256_{s}", f"{digest!r} is not a lowercase hex sha256")
        if ok and path is not None and digest is None:
            add(f"sha256_{s}", f"missing for {path!r}")
        if digest is not None and path is None:
            add(f"path_{s}", "missing while its sha256 is set")
    if ok:
        for s in ("a", "b"):
            if row.get(f"path_{s}") is None:
                add(f"path_{s}", "missing in an ok row")
    h, w = row.get("height"), row.get("width")
    if (h is None) != (w is None) or (h is not None and (h <= 0 or w <= 0)):
        add("height/width", f"invalid image size {h}x{w}")
    if ok and h is None:
        add("height/width", "missing in an ok row")

    # text features
    for m in ("a", "b"):
        if row.get(f"text_{m}") is None:
            if row.get(f"text_{m}_shape") is not None:
                add(f"text_{m}_shape", f"set while text_{m} is null")
            continue
        try:
            feats = decode_text(row, m)
        except ValueError as e:
            add(f"text_{m}", str(e))
            continue
        if feats.shape[0] < 1 or feats.shape[1] < 1:
            add(f"text_{m}_shape", f"empty shape {list(feats.shape)}")
        elif not np.isfinite(feats).all():
            add(f"text_{m}", "contains NaN or inf")
        if not row.get("text_encoder"):
            add("text_encoder", f"missing while text_{m} is set")
    dims = {row[f"text_{m}_shape"][1] for m in ("a", "b")
            if row.get(f"text_{m}") is not None and row.get(f"text_{m}_shape") and len(row[f"text_{m}_shape"]) == 2}
    if len(dims) > 1:
        add("text_b_shape", f"feature widths of a and b differ: {sorted(dims)}")

    # instances
    lengths = {c: len(row[c]) for c in INSTANCE_COLUMNS if row.get(c) is not None}
    if len(set(lengths.values())) > 1:
        add("instances", f"instance columns have different lengths {lengths}")
    for k, box in enumerate(row.get("boxes") or []):
        if len(box) != 4 or not all(math.isfinite(v) for v in box):
            add("boxes", f"instance {k}: {box} is not 4 finite numbers")
        elif box[0] > box[2] or box[1] > box[3]:
            add("boxes", f"instance {k}: {box} is not x1 <= x2, y1 <= y2")
        elif h is not None and (min(box) < -1 or box[2] > w + 1 or box[3] > h + 1):
            add("boxes", f"instance {k}: {box} lies outside the {w}x{h} image")
    for k, s in enumerate(row.get("scores") or []):
        if not (math.isfinite(s) and 0.0 <= s <= 1.0):
            add("scores", f"instance {k}: score {s} is not in [0, 1]")
    for k, lab in enumerate(row.get("labels") or []):
        if not lab:
            add("labels", f"instance {k}: empty label")
    bad_mod = sorted(set(row.get("instance_modality") or []) - set(MODALITIES))
    if bad_mod:
        add("instance_modality", f"values {bad_mod} are not in {MODALITIES}")
    if row.get("masks") is not None:
        try:
            decode_instance_masks(row)
        except (ValueError, TypeError) as e:
            add("masks", f"cannot be decoded: {e}")
    if row.get("mask_source") is not None and row["mask_source"] not in MASK_SOURCES:
        add("mask_source", f"{row['mask_source']!r} is not one of {MASK_SOURCES}")

    # class map
    vocab = row.get("class_vocab")
    if row.get("class_map") is not None:
        try:
            cmap = decode_class_map(row)
        except (ValueError, OSError) as e:
            add("class_map", f"cannot be decoded: {e}")
        else:
            if vocab is None:
                add("class_vocab", "missing while class_map is set")
            elif cmap.size and int(cmap.max()) > len(vocab):
                add("class_map", f"value {int(cmap.max())} exceeds the {len(vocab)} classes of class_vocab")
    if vocab is not None:
        if len(set(vocab)) != len(vocab):
            add("class_vocab", "has repeated names")
        unknown = sorted(set(row.get("labels") or []) - set(vocab))
        if unknown:
            add("labels", f"{unknown} are not in class_vocab")

    # provenance
    for k, m in enumerate(row.get("models") or []):
        if not m.get("id") or not m.get("role"):
            add("models", f"entry {k} has no role or id: {m}")
    created = row.get("created")
    if created is not None:
        try:
            datetime.fromisoformat(created.replace("Z", "+00:00"))
        except ValueError:
            add("created", f"{created!r} is not an ISO-8601 time")
    return out


def _image_size(path: Path) -> tuple[int, int] | None:
    """(height, width) of an image file PIL can read; None for other files (h5, mat, ...)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.height, im.width
    except (UnidentifiedImageError, OSError):
        return None


def check_images(row: Mapping[str, Any], root: Path, cache: dict[Path, str]) -> list[tuple[str, str]]:
    """Existence, sha256 and size of the row's source files under ``root`` -> ``[(column, message), ...]``."""
    out = []
    for s in _SOURCES:
        rel, digest = row.get(f"path_{s}"), row.get(f"sha256_{s}")
        if rel is None or not _is_rel(rel):
            continue
        try:
            path = resolve_inside(root, rel)
        except ValueError as e:
            out.append((f"path_{s}", str(e)))
            continue
        if not path.is_file():
            if row.get("status") == "ok" or digest is not None:  # an error row may record a missing file
                out.append((f"path_{s}", f"image file {path} does not exist"))
            continue
        if digest is not None:
            if path not in cache:
                try:
                    cache[path] = sha256_file(path)
                except OSError as e:
                    out.append((f"path_{s}", f"image file {path} cannot be read: {e}"))
                    continue
            if cache[path] != digest:
                out.append((f"sha256_{s}", f"image file {path} has sha256 {cache[path]}, the manifest records "
                                           f"{digest} (the file changed)"))
        if row.get("status") == "ok" and s != "gt" and row.get("height") is not None:
            size = _image_size(path)
            if size is not None and size != (row["height"], row["width"]):
                out.append(("height/width", f"image file {path} is {size[1]}x{size[0]}, the manifest records "
                                            f"{row['width']}x{row['height']}"))
    return out


def validate_manifest(path: str | os.PathLike[str], images: str | os.PathLike[str] | None = None) -> list[Problem]:
    """Every problem of a manifest (file or directory of parts); an empty list means it is valid.

    Checks: schema and version of each file, each row's content (:func:`check_row`), repeated
    ``sample_id`` inside one file, an ``ok`` row of one part replaced by a row of a later part (a
    retried error row is not a problem), and with ``images`` (the local image root) each source file's
    existence, sha256 and size.
    """
    try:
        files = manifest_files(path)
    except FileNotFoundError as e:
        return [Problem(str(path), None, None, str(e))]
    problems: list[Problem] = []
    root = Path(images) if images is not None else None
    if root is not None and not root.is_dir():
        problems.append(Problem(str(root), None, None, "image root is not a directory"))
        root = None
    cache: dict[Path, str] = {}
    ok_rows: dict[str, str] = {}  # sample_id -> file holding its latest ok row so far
    for f in files:
        try:
            table = read_file(f)
        except SchemaError as e:
            problems.append(Problem(str(f), None, None, str(e).removeprefix(f"{f}: ")))
            continue
        rows = table.to_pylist()
        for sid, n in sorted(Counter(r["sample_id"] for r in rows).items()):
            if n > 1:
                problems.append(Problem(str(f), sid, "sample_id", f"appears {n} times in this file"))
        superseded = set()
        for row in rows:
            sid = row.get("sample_id")
            if sid in ok_rows and ok_rows[sid] != str(f) and sid not in superseded:
                superseded.add(sid)
                problems.append(Problem(str(f), sid, "sample_id", f"also in {ok_rows[sid]}, whose ok row this "
                                                                  "file's row silently replaces (duplicate id "
                                                                  "across part files)"))
        for row in rows:
            if row.get("status") == "ok":
                ok_rows[row.get("sample_id")] = str(f)
        for row in rows:
            found = check_row(row)
            if root is not None:
                found += check_images(row, root, cache)
            problems += [Problem(str(f), row.get("sample_id"), col, msg) for col, msg in found]
    return problems
