"""``python -m manifests``: validate, merge, inspect and draw Parquet annotation manifests."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="manifests",
    help="Check, merge, summarise and draw RWKVFusion annotation manifests (Parquet, schema v1).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

PathArg = Annotated[Path, typer.Argument(help="a manifest .parquet file or a directory of part files")]


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@app.command()
def validate(
    path: PathArg,
    images: Annotated[Path | None, typer.Option(help="local image root: check existence, sha256 and size")] = None,
    max_problems: Annotated[int, typer.Option(help="print at most this many problems (0 = all)")] = 0,
) -> None:
    """Check schema, row contents and (with --images) the image hashes; exit 1 when anything is wrong."""
    from manifests.validate import validate_manifest

    problems = validate_manifest(path, images)
    shown = problems if max_problems <= 0 else problems[:max_problems]
    for p in shown:
        typer.echo(str(p))
    if len(shown) < len(problems):
        typer.echo(f"... and {len(problems) - len(shown)} more")
    if problems:
        typer.echo(f"{len(problems)} problem(s) in {path}", err=True)
        raise typer.Exit(1)
    typer.echo(f"{path}: valid manifest (schema v1)" + (f", images under {images} match" if images else ""))


@app.command()
def merge(
    inputs: Annotated[list[Path], typer.Argument(help="manifests to merge; for a repeated sample_id the later wins")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output .parquet file, or a directory for part files")],
    rows_per_part: Annotated[int, typer.Option(help="rows per part file when --out is a directory")] = 1024,
    prefer: Annotated[str | None, typer.Option(
        help="which input wins when a sample has different ok rows in several inputs: first or last "
             "(default: refuse such conflicts)")] = None,
) -> None:
    """Merge manifests into one (rows sorted by sample_id); conflicting ok rows need --prefer."""
    from manifests.io import merge_manifests
    from manifests.schema import SchemaError

    if prefer is not None and prefer not in ("first", "last"):
        _fail(f"--prefer {prefer!r}: expected first or last")
    try:
        written = merge_manifests(inputs, out, rows_per_part=rows_per_part, prefer=prefer)
    except (SchemaError, FileNotFoundError, ValueError) as e:
        _fail(str(e))
    for f in written:
        typer.echo(str(f))


@app.command()
def stats(
    path: PathArg,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of text")] = False,
) -> None:
    """Counts by status, task, dataset and split; instances per class; caption and token lengths."""
    from manifests.io import read_manifest
    from manifests.schema import SchemaError
    from manifests.stats import format_stats, manifest_stats

    try:
        table = read_manifest(path)
    except (SchemaError, FileNotFoundError) as e:
        _fail(str(e))
    result = manifest_stats(table)
    typer.echo(json.dumps(result, indent=2) if as_json else format_stats(result))


@app.command()
def show(
    sample_id: Annotated[str, typer.Argument(help="the sample to draw")],
    path: PathArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="output PNG")],
    images: Annotated[Path | None, typer.Option(help="local image root (sources drawn grey without it)")] = None,
) -> None:
    """Draw a sample's masks and boxes over both sources, with the captions and the class map, into a PNG."""
    from manifests.io import read_manifest, rows_by_id
    from manifests.schema import SchemaError
    from manifests.show import render_sample

    try:
        rows = rows_by_id(read_manifest(path))
    except (SchemaError, FileNotFoundError) as e:
        _fail(str(e))
    if sample_id not in rows:
        _fail(f"sample {sample_id!r} is not in {path} ({len(rows)} samples)")
    typer.echo(str(render_sample(rows[sample_id], out, images=images)))


@app.command()
def schema() -> None:
    """Print the manifest schema v1: column, Arrow type and meaning."""
    from manifests.schema import SCHEMA, SCHEMA_VERSION, field_doc

    typer.echo(f"manifest schema version {SCHEMA_VERSION}")
    for f in SCHEMA:
        typer.echo(f"{f.name:18s} {str(f.type):40s} {'' if f.nullable else '(required) '}{field_doc(f.name)}")


def main() -> None:
    app()
