"""``python -m annotate``: offline semantic annotation into Parquet manifests."""
from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="annotate",
    help="Caption, encode, detect, segment and merge masks for a fusion dataset; write Parquet manifests.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

COMMAND_MODULES: tuple[str, ...] = ("annotate.runner", "annotate.smoke")


def _register_all() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(app)


_register_all()


def main() -> None:
    app()
