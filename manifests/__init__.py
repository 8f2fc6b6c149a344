"""Parquet annotation manifests (schema v1): schema, atomic writing, reading, decoding, checks."""
from __future__ import annotations

from manifests.decode import decode_boxes, decode_class_map, decode_instance_masks, decode_text
from manifests.io import (
    ManifestWriter,
    atomic_write,
    check_schema,
    done_ids,
    list_parts,
    manifest_files,
    merge_manifests,
    normalize_row,
    part_prefix,
    read_manifest,
    rows_by_id,
    rows_to_table,
    sha256_file,
    status_by_id,
    write_table_atomic,
)
from manifests.rle import decode_masks, decode_png, decode_text_bytes, encode_masks, encode_png, encode_text
from manifests.schema import COLUMNS, MODALITIES, SCHEMA, SCHEMA_VERSION, STATUSES, TASKS, SchemaError
from manifests.show import render_sample
from manifests.stats import manifest_stats
from manifests.validate import Problem, validate_manifest

__all__ = [
    "COLUMNS", "MODALITIES", "SCHEMA", "SCHEMA_VERSION", "STATUSES", "TASKS", "SchemaError",
    "ManifestWriter", "atomic_write", "check_schema", "done_ids", "list_parts", "manifest_files", "merge_manifests",
    "normalize_row", "part_prefix", "read_manifest", "rows_by_id", "rows_to_table", "sha256_file",
    "status_by_id", "write_table_atomic",
    "decode_boxes", "decode_class_map", "decode_instance_masks", "decode_text",
    "Problem", "manifest_stats", "render_sample", "validate_manifest",
    "decode_masks", "decode_png", "decode_text_bytes", "encode_masks", "encode_png", "encode_text",
]
