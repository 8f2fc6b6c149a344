"""``python -m fusion``: training, evaluation, fusion, metrics, demo data and benchmarks.

Each subcommand lives in the module that owns its capability and exposes ``register(app)``;
this file is only the registry.
"""
from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="fusion",
    help="RWKVFusion: train, evaluate and run language- and mask-guided image fusion.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

# module -> owner of one or more subcommands (each module defines ``register(app)``)
COMMAND_MODULES: tuple[str, ...] = (
    "fusion.demo",
    "fusion.metrics.cli",
    "fusion.train.cli",
    "fusion.bench",
    "fusion.pretrained.demo",
)


def _register_all() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(app)


_register_all()


def main() -> None:
    app()
