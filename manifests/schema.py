"""Manifest schema v1: one row per sample pair (SPEC section 5, issue 4).

Every column carries a ``doc`` entry in its Arrow field metadata, and every Parquet file written by
:class:`manifests.io.ManifestWriter` stores :data:`SCHEMA_VERSION` in its key-value metadata under
:data:`VERSION_KEY`, so a manifest is self-describing (``pyarrow.parquet.read_schema(path)`` shows it all).

Conventions
- Paths are relative to the dataset's image root, with forward slashes; ``sha256_*`` is the hex digest
  of the file's bytes.
- ``height``/``width``: the size of the (registered) sources in pixels; masks and the class map have it.
- Text embeddings: the encoder's ``last_hidden_state`` for the *real* tokens only (no padding), cast to
  float16 and stored as little-endian raw bytes (``text_a``) with its shape ``[L, D]``
  (``text_a_shape``); the loader pads a batch to its longest ``L``.
- Instance columns (``boxes``, ``labels``, ``scores``, ``instance_modality``, ``masks``) are aligned lists,
  one entry per final (merged) instance. Boxes are ``[x1, y1, x2, y2]`` in pixels (float32, inclusive
  top-left, exclusive bottom-right). Masks are COCO RLE (``pycocotools`` compressed ``counts`` string,
  ``size = [height, width]``).
- ``class_map``: PNG (8-bit grey) bytes of an ``[H, W]`` uint8 map; 0 = background, value ``k >= 1`` is
  ``class_vocab[k - 1]``.
- ``status`` is ``"ok"`` or ``"error"``; an error row has ``error`` set and may leave any annotation
  column null. Null in an annotation column of an ok row means "not produced for this task" (e.g. no
  masks for pansharpening).
"""
from __future__ import annotations

import pyarrow as pa

from rwkvfusion_io.tasks import TASKS  # noqa: F401  (the values of the ``task`` column)

SCHEMA_VERSION: int = 1
"""Version of the manifest schema written by this package."""

VERSION_KEY: bytes = b"rwkvfusion.manifest.schema_version"
"""Parquet key-value metadata key that holds the schema version (ASCII integer)."""

STATUSES: tuple[str, ...] = ("ok", "error")
MODALITIES: tuple[str, ...] = ("a", "b", "both")
MASK_SOURCES: tuple[str, ...] = ("generated", "dataset", "none")

RLE_TYPE = pa.struct([
    pa.field("size", pa.list_(pa.int32()), nullable=False, metadata={"doc": "[height, width]"}),
    pa.field("counts", pa.string(), nullable=False, metadata={"doc": "COCO compressed RLE counts"}),
])
MODEL_TYPE = pa.struct([
    pa.field("role", pa.string(), nullable=False,
             metadata={"doc": "what the model did: caption, text_encoder, detector, grounding, segmenter"}),
    pa.field("id", pa.string(), nullable=False, metadata={"doc": "hub id or local directory name"}),
    pa.field("revision", pa.string(), nullable=True, metadata={"doc": "hub commit / revision, if known"}),
])


def _f(name: str, typ: pa.DataType, doc: str, nullable: bool = True) -> pa.Field:
    return pa.field(name, typ, nullable=nullable, metadata={"doc": doc})


_FIELDS: list[pa.Field] = [
    _f("schema_version", pa.int32(), "manifest schema version of this row (1)", nullable=False),
    _f("sample_id", pa.string(), "unique id of the sample pair within the manifest", nullable=False),
    _f("dataset", pa.string(), "dataset name, e.g. msrs, tno, llvip", nullable=False),
    _f("split", pa.string(), "split name, e.g. train, test", nullable=False),
    _f("task", pa.string(), "fusion task: vif, mif, mef, mff, pan, hmif", nullable=False),
    _f("path_a", pa.string(), "relative path of source a (ir / MRI / under-exposed / far-focus / lms)"),
    _f("path_b", pa.string(), "relative path of source b (visible / SPECT-PET-CT / over-exposed / near-focus / pan)"),
    _f("path_gt", pa.string(), "relative path of the ground truth, when the dataset has one"),
    _f("sha256_a", pa.string(), "hex sha256 of the bytes of path_a"),
    _f("sha256_b", pa.string(), "hex sha256 of the bytes of path_b"),
    _f("sha256_gt", pa.string(), "hex sha256 of the bytes of path_gt"),
    _f("height", pa.int32(), "height of the sources in pixels"),
    _f("width", pa.int32(), "width of the sources in pixels"),
    _f("caption_a", pa.string(), "detailed caption of source a"),
    _f("caption_b", pa.string(), "detailed caption of source b"),
    _f("text_encoder", pa.string(), "id of the text encoder that produced text_a/text_b"),
    _f("text_a", pa.binary(), "float16 little-endian bytes of caption_a's token features, real tokens only"),
    _f("text_a_shape", pa.list_(pa.int32()), "[L, D] of text_a"),
    _f("text_b", pa.binary(), "float16 little-endian bytes of caption_b's token features, real tokens only"),
    _f("text_b_shape", pa.list_(pa.int32()), "[L, D] of text_b"),
    _f("boxes", pa.list_(pa.list_(pa.float32())), "per instance [x1, y1, x2, y2] in pixels"),
    _f("labels", pa.list_(pa.string()), "per instance class name"),
    _f("scores", pa.list_(pa.float32()), "per instance detector confidence in [0, 1]"),
    _f("instance_modality", pa.list_(pa.string()), "per instance source: a, b or both (merged, Algorithms 1-2)"),
    _f("masks", pa.list_(RLE_TYPE), "per instance binary mask as COCO RLE"),
    _f("mask_source", pa.string(), "where the masks come from: generated, dataset (e.g. MSRS labels) or none"),
    _f("class_map", pa.binary(), "PNG bytes of the [H, W] uint8 merged class map (0 = background)"),
    _f("class_vocab", pa.list_(pa.string()), "class names; class_map value k >= 1 is class_vocab[k - 1]"),
    _f("status", pa.string(), "ok or error", nullable=False),
    _f("error", pa.string(), "error message naming the file and the problem (status error)"),
    _f("models", pa.list_(MODEL_TYPE), "provenance: models used, with ids and revisions"),
    _f("config_hash", pa.string(), "provenance: sha256 of the canonical annotate configuration"),
    _f("package_version", pa.string(), "provenance: rwkvfusion version that wrote the row"),
    _f("created", pa.string(), "provenance: ISO-8601 UTC time the row was produced (set by the runner)"),
]

SCHEMA: pa.Schema = pa.schema(_FIELDS, metadata={
    VERSION_KEY: str(SCHEMA_VERSION).encode(),
    b"rwkvfusion.manifest.doc": b"RWKVFusion annotation manifest: one row per sample pair; see manifests/schema.py",
})
"""The Arrow schema of manifest v1 (with field docs and the version in its metadata)."""

COLUMNS: tuple[str, ...] = tuple(SCHEMA.names)
REQUIRED: tuple[str, ...] = tuple(f.name for f in _FIELDS if not f.nullable)
INSTANCE_COLUMNS: tuple[str, ...] = ("boxes", "labels", "scores", "instance_modality", "masks")


def field_doc(name: str) -> str:
    """The documentation string of column ``name``."""
    return SCHEMA.field(name).metadata[b"doc"].decode()


class SchemaError(ValueError):
    """A file is not a manifest of the supported schema version (the message names the file)."""

    def __init__(self, path: object, message: str):
        self.path = str(path)
        super().__init__(f"{path}: {message}")
