"""Reading and writing manifests: atomic Parquet part files, duplicate resolution, resume helpers.

Layout. A manifest is one ``.parquet`` file or a directory of part files. :class:`ManifestWriter` names
its parts ``{part_name}-{seq:05d}.parquet`` (``part_name`` is ``part-r{rank:03d}`` for rank ``rank`` of a
distributed run, see :func:`part_prefix`) and writes each one atomically: a hidden temporary file in the
same directory, fsync, then ``os.replace`` -- a reader or a killed run never sees a partial part.

Order and duplicates ("latest wins"). The parts of a directory are ordered by ``(seq, file name)``
(files whose name has no ``-NNNNN.parquet`` sequence suffix come first, by name), rows by their position
in the file. When a ``sample_id`` occurs more than once, the last occurrence in that order wins. A writer
starts its sequence after the largest ``seq`` already present in the directory (any rank), so rows of a
later run (a resumed run, ``--redo-errors``) always supersede rows of an earlier one. Within one run the
ranks annotate disjoint shards, so their relative order does not matter.

Determinism. For identical rows in identical order the part files are byte-identical: no wall-clock
time is written except the ``created`` column, which the caller sets.
"""
from __future__ import annotations

import glob
import hashlib
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from manifests.rle import encode_masks, encode_png, encode_text
from manifests.schema import (
    COLUMNS,
    INSTANCE_COLUMNS,
    MODALITIES,
    SCHEMA,
    SCHEMA_VERSION,
    STATUSES,
    TASKS,
    VERSION_KEY,
    SchemaError,
)

_SEQ_RE = re.compile(r"-(\d+)\.parquet$")
_COMPRESSION = "zstd"


# ----------------------------------------------------------------------------------------------- rows
def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _rel_path(value: Any, column: str, sample: str) -> str | None:
    if value is None:
        return None
    text = os.fspath(value).replace("\\", "/")
    p = PurePosixPath(text)
    if p.is_absolute() or ".." in p.parts or not text:
        raise ValueError(f"sample {sample!r}: {column} must be a relative path inside the image root, got {text!r}")
    return str(p)


def resolve_inside(root: str | os.PathLike[str], rel: str) -> Path:
    """``root / rel`` for a manifest path ``rel``; ValueError unless ``rel`` names a place inside ``root``.

    Absolute paths, drive letters and ``..`` components are refused, so a manifest cannot make a reader
    open a file outside its image root. (Symbolic links inside the root are the root owner's choice and
    are followed, as for any other file there.)
    """
    text = os.fspath(rel)
    p = PurePosixPath(text.replace("\\", "/"))
    if not text or "\0" in text or p.is_absolute() or ".." in p.parts or re.match(r"^[A-Za-z]:", text):
        raise ValueError(f"{text!r} is not a relative path inside the image root {root}")
    return Path(root) / Path(*p.parts)


def printable(text: str) -> str:
    """``text`` with characters UTF-8 cannot encode (undecodable bytes of a file name, which Python keeps
    as surrogates) written as backslash escapes, so it can be stored and printed."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _check_utf8(out: Mapping[str, Any], sample: str) -> None:
    for c, v in out.items():
        values = v if isinstance(v, list) else [v]
        for x in values:
            if isinstance(x, str) and printable(x) != x:
                raise ValueError(f"sample {printable(sample)!r}: column {c!r} holds text that is not valid UTF-8 "
                                 f"({printable(x)!r}; e.g. a file name in another encoding)")


def _float_list(value: Any) -> list[float] | None:
    if value is None:
        return None
    return [float(v) for v in np.asarray(value, dtype=np.float32).reshape(-1)]


def normalize_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """Check one row and convert convenience types to the schema's column types.

    Accepted conveniences: ``text_a``/``text_b`` as an ``[L, D]`` array or tensor (encoded to float16 bytes,
    ``text_*_shape`` filled in); ``masks`` as an ``[N, H, W]`` bool array (COCO RLE); ``class_map`` as an
    ``[H, W]`` uint8 array (PNG); ``boxes`` ``[N, 4]`` / ``scores`` ``[N]`` as arrays; paths as ``Path``.
    Missing columns are null; ``schema_version`` defaults to :data:`SCHEMA_VERSION`.
    Raises ValueError naming the sample and the column for unknown columns or inconsistent values.
    """
    sample = str(row.get("sample_id"))
    unknown = sorted(set(row) - set(COLUMNS))
    if unknown:
        raise ValueError(f"sample {sample!r}: unknown manifest columns {unknown}")
    out: dict[str, Any] = {c: row.get(c) for c in COLUMNS}
    if out["schema_version"] is None:
        out["schema_version"] = SCHEMA_VERSION
    if int(out["schema_version"]) != SCHEMA_VERSION:
        raise ValueError(f"sample {sample!r}: schema_version {out['schema_version']} != {SCHEMA_VERSION}")
    for c in ("sample_id", "dataset", "split", "task", "status"):
        if not isinstance(out[c], str) or not out[c]:
            raise ValueError(f"sample {sample!r}: column {c!r} must be a non-empty string, got {out[c]!r}")
    if out["task"] not in TASKS:
        raise ValueError(f"sample {sample!r}: task {out['task']!r} not in {TASKS}")
    if out["status"] not in STATUSES:
        raise ValueError(f"sample {sample!r}: status {out['status']!r} not in {STATUSES}")
    if out["status"] == "error" and not out["error"]:
        raise ValueError(f"sample {sample!r}: an error row needs an 'error' message")
    if out["status"] == "ok" and out["error"] is not None:
        raise ValueError(f"sample {sample!r}: an ok row must not carry an error message")
    for c in ("path_a", "path_b", "path_gt"):
        out[c] = _rel_path(out[c], c, sample)
    for c in ("height", "width"):
        if out[c] is not None:
            out[c] = int(out[c])
            if out[c] <= 0:
                raise ValueError(f"sample {sample!r}: {c} must be positive, got {out[c]}")
    for m in ("a", "b"):
        val = out[f"text_{m}"]
        if val is not None and not isinstance(val, (bytes, bytearray, memoryview)):
            out[f"text_{m}"], out[f"text_{m}_shape"] = encode_text(val)
        elif val is not None and out[f"text_{m}_shape"] is None:
            raise ValueError(f"sample {sample!r}: text_{m} bytes given without text_{m}_shape")
        elif val is not None:
            out[f"text_{m}"] = bytes(val)
            out[f"text_{m}_shape"] = [int(s) for s in out[f"text_{m}_shape"]]
    if isinstance(out["masks"], np.ndarray):
        out["masks"] = encode_masks(out["masks"])
    if isinstance(out["class_map"], np.ndarray):
        out["class_map"] = encode_png(out["class_map"])
    if out["boxes"] is not None:
        boxes = np.asarray(out["boxes"], dtype=np.float32) if len(out["boxes"]) else np.zeros((0, 4), np.float32)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"sample {sample!r}: boxes must be [N, 4] xyxy, got shape {boxes.shape}")
        out["boxes"] = [[float(v) for v in b] for b in boxes]
    out["scores"] = _float_list(out["scores"])
    for c in ("labels", "instance_modality", "class_vocab"):
        if out[c] is not None:
            out[c] = [str(v) for v in out[c]]
    if out["instance_modality"] is not None:
        bad = sorted(set(out["instance_modality"]) - set(MODALITIES))
        if bad:
            raise ValueError(f"sample {sample!r}: instance_modality values {bad} not in {MODALITIES}")
    _check_utf8(out, sample)
    lengths = {c: len(out[c]) for c in INSTANCE_COLUMNS if out[c] is not None}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"sample {sample!r}: instance columns have different lengths {lengths}")
    if out["models"] is not None:
        out["models"] = [{"role": str(m["role"]), "id": str(m["id"]),
                          "revision": None if m.get("revision") is None else str(m["revision"])}
                         for m in out["models"]]
    return out


def rows_to_table(rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    """Rows (dicts, see :func:`normalize_row`) -> an Arrow table with the v1 :data:`SCHEMA`."""
    return pa.Table.from_pylist([normalize_row(r) for r in rows], schema=SCHEMA)


# ------------------------------------------------------------------------------------------- writing
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], None]) -> Path:
    """Write ``path`` atomically: ``write(fh)`` into a hidden temporary file in the same directory, fsync,
    then ``os.replace``; a reader or a killed process never sees a partial file.

    The file gets the permissions of an ordinary new file (``0o666`` minus the umask), not the ``0o600``
    of a temporary file, so shared folders stay shared.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def stale_temporaries(path: str | os.PathLike[str]) -> list[Path]:
    """Temporary files :func:`atomic_write` left beside ``path`` when a process was killed mid-write."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    return sorted(p for p in path.parent.glob(f".{glob.escape(path.name)}.*.tmp") if p.is_file())


def write_table_atomic(table: pa.Table, path: str | os.PathLike[str]) -> Path:
    """Write ``table`` to ``path`` atomically (see :func:`atomic_write`)."""
    if table.schema.metadata is None or table.schema.metadata.get(VERSION_KEY) != str(SCHEMA_VERSION).encode():
        table = table.replace_schema_metadata(SCHEMA.metadata)
    return atomic_write(path, lambda f: pq.write_table(table, f, compression=_COMPRESSION))


def part_prefix(rank: int) -> str:
    """Part-file prefix of distributed rank ``rank``: ``part-r{rank:03d}``."""
    if rank < 0:
        raise ValueError(f"rank must be >= 0, got {rank}")
    return f"part-r{rank:03d}"


def _seq(path: Path) -> int:
    m = _SEQ_RE.search(path.name)
    return int(m.group(1)) if m else -1


def list_parts(directory: str | os.PathLike[str]) -> list[Path]:
    """The visible ``*.parquet`` files of ``directory`` in manifest order ``(seq, name)`` (see module doc)."""
    d = Path(directory)
    parts = [p for p in d.glob("*.parquet") if p.is_file() and not p.name.startswith(".")]
    return sorted(parts, key=lambda p: (_seq(p), p.name))


class ManifestWriter:
    """Buffers rows and writes them as atomic part files ``{out_dir}/{part_name}-{seq:05d}.parquet``.

    A part is written every ``rows_per_part`` rows and on :meth:`close` (also when the ``with`` block
    exits through an exception, so rows finished before a crash are kept). No file is written when no
    row was given. ``seq_start=None`` continues after the largest sequence number already in ``out_dir``
    so new parts supersede old ones (see the module doc).
    """

    def __init__(self, out_dir: str | os.PathLike[str], part_name: str = "part-r000", *,
                 rows_per_part: int = 64, seq_start: int | None = None):
        if rows_per_part < 1:
            raise ValueError(f"rows_per_part must be >= 1, got {rows_per_part}")
        if not part_name or "/" in part_name or part_name.startswith("."):
            raise ValueError(f"invalid part_name {part_name!r}")
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.part_name = part_name
        self.rows_per_part = rows_per_part
        if seq_start is None:
            seq_start = max((_seq(p) for p in list_parts(self.out_dir)), default=-1) + 1
        self.seq = seq_start
        # temporary files of this writer's prefix left by a killed run (only this writer uses the prefix)
        for stale in self.out_dir.glob(f".{part_name}-*.tmp"):
            stale.unlink(missing_ok=True)
        self.paths: list[Path] = []
        self._buffer: list[dict[str, Any]] = []
        self.rows_written = 0

    @classmethod
    def for_rank(cls, out_dir: str | os.PathLike[str], rank: int, **kwargs: Any) -> ManifestWriter:
        """Writer of distributed rank ``rank`` (parts ``part-r{rank:03d}-NNNNN.parquet``)."""
        return cls(out_dir, part_prefix(rank), **kwargs)

    def write(self, row: Mapping[str, Any]) -> None:
        """Add one row (checked now by :func:`normalize_row`); flushes when the buffer is full."""
        self._buffer.append(normalize_row(row))
        if len(self._buffer) >= self.rows_per_part:
            self.flush()

    def write_many(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            self.write(row)

    def write_table(self, table: pa.Table) -> Path | None:
        """Write an already schema-conforming table (e.g. read from another manifest) as one part, unchanged.

        Buffered rows are flushed first, so the order of parts follows the order of calls.
        """
        if not table.schema.remove_metadata().equals(SCHEMA.remove_metadata()):
            raise ValueError("write_table: the table does not have the manifest v1 schema")
        self.flush()
        if table.num_rows == 0:
            return None
        return self._write_part(table)

    def _write_part(self, table: pa.Table) -> Path:
        path = self.out_dir / f"{self.part_name}-{self.seq:05d}.parquet"
        if path.exists():
            raise FileExistsError(f"{path} already exists; refusing to overwrite a manifest part")
        write_table_atomic(table, path)
        self.rows_written += table.num_rows
        self.seq += 1
        self.paths.append(path)
        return path

    def flush(self) -> Path | None:
        """Write the buffered rows as one part file; returns its path (None when the buffer is empty)."""
        if not self._buffer:
            return None
        path = self._write_part(pa.Table.from_pylist(self._buffer, schema=SCHEMA))
        self._buffer = []
        return path

    def close(self) -> list[Path]:
        """Flush what is left; returns every part written by this writer."""
        self.flush()
        return list(self.paths)

    def __enter__(self) -> ManifestWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ------------------------------------------------------------------------------------------- reading
def check_schema(path: str | os.PathLike[str]) -> pa.Schema:
    """The file's Arrow schema; raises :class:`SchemaError` naming ``path`` unless it is manifest v1."""
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as e:
        raise SchemaError(path, f"not a readable Parquet file ({e})") from e
    meta = schema.metadata or {}
    if VERSION_KEY not in meta:
        raise SchemaError(path, f"no manifest schema version in the Parquet metadata (key {VERSION_KEY.decode()})")
    found = meta[VERSION_KEY].decode(errors="replace")
    if found != str(SCHEMA_VERSION):
        raise SchemaError(path, f"manifest schema version {found}, this package reads version {SCHEMA_VERSION}")
    if not schema.remove_metadata().equals(SCHEMA.remove_metadata()):
        raise SchemaError(path, f"columns differ from manifest schema v{SCHEMA_VERSION}: {schema_difference(schema)}")
    return schema


def schema_difference(schema: pa.Schema) -> str:
    """What separates ``schema`` from :data:`SCHEMA`: missing, unexpected, retyped or reordered columns.

    Types are compared as Arrow types (a list's child field name, ``item`` or ``element``, is not a
    difference).
    """
    want = {f.name: f for f in SCHEMA}
    got = {f.name: f for f in schema}
    parts = []
    missing = [n for n in want if n not in got]
    extra = [n for n in got if n not in want]
    if missing:
        parts.append(f"missing column(s) {missing}")
    if extra:
        parts.append(f"unexpected column(s) {extra}")
    retyped = [f"{n} is {got[n].type}, expected {want[n].type}" for n in want
               if n in got and not got[n].type.equals(want[n].type)]
    if retyped:
        parts.append("; ".join(retyped))
    nullable = [n for n in want if n in got and got[n].nullable != want[n].nullable]
    if nullable:
        parts.append(f"nullability differs for {nullable}")
    if not parts:
        order = [n for n in schema.names if n in want]
        if order != [n for n in SCHEMA.names if n in got]:
            parts.append("columns are in another order than the schema's")
        else:
            parts.append("field metadata differs")
    return "; ".join(parts)


def manifest_files(path: str | os.PathLike[str]) -> list[Path]:
    """The Parquet files of a manifest (a file or a directory of parts), in manifest order."""
    p = Path(path)
    if p.is_file():
        return [p]
    if p.is_dir():
        parts = list_parts(p)
        if not parts:
            raise FileNotFoundError(f"{p}: no .parquet manifest parts in this directory")
        return parts
    raise FileNotFoundError(f"{p}: no such manifest file or directory")


def read_file(path: str | os.PathLike[str]) -> pa.Table:
    """One manifest file, schema-checked (duplicates not resolved)."""
    check_schema(path)
    try:
        table = pq.read_table(path, schema=SCHEMA)
    except (OSError, pa.ArrowException) as e:
        raise SchemaError(path, f"not a readable Parquet file ({e})") from e
    return table.replace_schema_metadata(SCHEMA.metadata)


def dedupe_latest(table: pa.Table) -> pa.Table:
    """Keep only the last row of every ``sample_id`` (the remaining rows keep their order)."""
    ids = table.column("sample_id").to_pylist()
    last = {sid: i for i, sid in enumerate(ids)}
    if len(last) == len(ids):
        return table
    keep = sorted(last.values())
    return table.take(pa.array(keep, type=pa.int64()))


def read_manifest(path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *,
                  dedupe: bool = True) -> pa.Table:
    """Read a manifest: a ``.parquet`` file, a directory of parts, or a list of those (later ones win).

    Every file is schema-checked (:class:`SchemaError` names the file). With ``dedupe`` the latest row
    of each ``sample_id`` is kept (module doc: parts ordered by ``(seq, name)``, then row order).
    """
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    files = [f for p in paths for f in manifest_files(p)]
    if not files:
        raise FileNotFoundError("read_manifest: no manifest paths given")
    table = pa.concat_tables([read_file(f) for f in files])
    return dedupe_latest(table) if dedupe else table


def rows_by_id(table: pa.Table) -> dict[str, dict[str, Any]]:
    """``{sample_id: row dict}`` (the last row wins for a repeated id)."""
    return {row["sample_id"]: row for row in table.to_pylist()}


def status_by_id(path: str | os.PathLike[str]) -> dict[str, str]:
    """``{sample_id: status}`` of the latest rows in a manifest; empty when ``path`` holds no manifest yet."""
    p = Path(path)
    if not p.exists() or (p.is_dir() and not list_parts(p)):
        return {}
    tables = []
    for f in manifest_files(p):
        check_schema(f)
        tables.append(pq.read_table(f, columns=["sample_id", "status"]))
    table = pa.concat_tables(tables)
    return dict(zip(table.column("sample_id").to_pylist(), table.column("status").to_pylist()))


def done_ids(out_dir: str | os.PathLike[str], statuses: Sequence[str] = ("ok",)) -> set[str]:
    """Ids whose latest row has a status in ``statuses`` (resume: skip these). Empty for a new directory."""
    bad = set(statuses) - set(STATUSES)
    if bad:
        raise ValueError(f"unknown statuses {sorted(bad)}; expected a subset of {STATUSES}")
    return {sid for sid, st in status_by_id(out_dir).items() if st in statuses}


MERGE_PREFER = ("first", "last")


def _same_row(x: Mapping[str, Any], y: Mapping[str, Any]) -> bool:
    return all(x[c] == y[c] for c in x if c != "created")


def merge_manifests(inputs: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str], *,
                    rows_per_part: int = 1024, prefer: str | None = None) -> list[Path]:
    """Merge manifests (files or directories), each read with its own latest-row-wins resolution.

    A ``sample_id`` found in several inputs: identical rows (apart from ``created``) are one row; when
    either row is an error row the later input's row is kept (a later run supersedes an earlier one);
    two different ``ok`` rows are a conflict, which raises a ValueError naming the samples and inputs
    unless ``prefer`` says which side wins (``"first"`` or ``"last"`` input).

    The merged rows are sorted by ``sample_id`` (a canonical, deterministic order). ``out`` ending in
    ``.parquet`` is written as one file; otherwise ``out`` is a directory that receives new parts
    ``part-merged-NNNNN.parquet`` (numbered after any parts already there, so they supersede them).
    Returns the written files.
    """
    if not inputs:
        raise ValueError("merge_manifests: no inputs")
    if prefer is not None and prefer not in MERGE_PREFER:
        raise ValueError(f"prefer must be one of {MERGE_PREFER} or None, got {prefer!r}")
    chosen: dict[str, tuple[int, int]] = {}   # sample_id -> (input number, row number)
    tables = [read_manifest(p) for p in inputs]
    rows = [t.to_pylist() for t in tables]
    conflicts: list[tuple[str, int, int]] = []
    for k, trows in enumerate(rows):
        for i, row in enumerate(trows):
            sid = row["sample_id"]
            if sid not in chosen:
                chosen[sid] = (k, i)
                continue
            pk, pi = chosen[sid]
            old = rows[pk][pi]
            if _same_row(old, row) or "error" in (old["status"], row["status"]):
                chosen[sid] = (k, i)
            elif old["status"] == row["status"] == "ok":
                conflicts.append((sid, pk, k))
                if prefer == "last":
                    chosen[sid] = (k, i)
            else:
                chosen[sid] = (k, i)
    if conflicts and prefer is None:
        shown = ", ".join(f"{sid!r} ({inputs[a]} vs {inputs[b]})" for sid, a, b in conflicts[:5])
        more = f" and {len(conflicts) - 5} more" if len(conflicts) > 5 else ""
        raise ValueError(f"{len(conflicts)} sample(s) have different ok rows in several inputs: {shown}{more}; "
                         "choose the winner with --prefer first or --prefer last")
    picks = [tables[k].slice(i, 1) for k, i in chosen.values()]
    table = pa.concat_tables(picks).sort_by("sample_id") if picks else tables[0].slice(0, 0)
    out = Path(out)
    if out.suffix == ".parquet":
        return [write_table_atomic(table, out)]
    writer = ManifestWriter(out, "part-merged", rows_per_part=rows_per_part)
    for start in range(0, table.num_rows, rows_per_part):
        writer.write_table(table.slice(start, rows_per_part))
    return writer.close()
