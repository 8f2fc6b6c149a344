"""``python -m fusion.train train|evaluate|fuse``: the same commands as ``python -m fusion``, on their own."""
import typer

from fusion.train.cli import register

app = typer.Typer(name="fusion.train", no_args_is_help=True, pretty_exceptions_show_locals=False)
register(app)

if __name__ == "__main__":
    app()
