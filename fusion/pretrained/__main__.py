"""``python -m fusion.pretrained list | export | evaluate`` (bundled models)."""
from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
DEFAULT_DATA = Path("../shared/data")


@app.command("list")
def list_cmd() -> None:
    """Bundled tasks and where their weights came from."""
    from fusion.pretrained import bundled_info, bundled_tasks

    for t in bundled_tasks():
        tr = bundled_info(t)["training"]
        typer.echo(f"{t}: step {tr['step']} of run {tr['run']} ({tr['weights']}), recipe "
                   f"{(tr.get('recipe') or {}).get('name')}")


def _evaluate(task: str, weights_dir: Path | None, data: Path, out: Path, max_pairs: int | None) -> dict:
    from fusion.pretrained import load_pretrained
    from fusion.pretrained.testsets import evaluate_pan_testsets, evaluate_testsets
    from fusion.train.inference import model_fuse_y

    if not data.is_dir():
        raise typer.BadParameter(f"--data {data}: the shared test data folder is absent")
    model = load_pretrained(task, weights_dir=weights_dir)
    if model.cfg.task == "pan":
        res = evaluate_pan_testsets(model, data)
    else:
        res = evaluate_testsets(model.cfg.task, data, out, model_fuse_y=model_fuse_y(model), max_pairs=max_pairs)
    out.mkdir(parents=True, exist_ok=True)
    (out / "test.json").write_text(json.dumps(res, indent=2))
    for name, s in res["sets"].items():
        typer.echo(f"{name}: {s.get('verdict', '')}")
    return res


@app.command("export")
def export_cmd(run: Path = typer.Option(..., "--run", help="training run folder (checkpoint.pt, val.json)"),
               out_dir: Path | None = typer.Option(None, "--out-dir", help="default: the package's weights/"),
               weights: str = typer.Option("best", "--weights", help="best (validated) | final | step:<n> (a validated step)"),
               evaluate: bool = typer.Option(True, "--evaluate/--no-evaluate",
                                             help="score the exported fp16 model on the shared test sets"),
               data: Path = typer.Option(DEFAULT_DATA, "--data", help="shared test data root"),
               eval_out: Path | None = typer.Option(None, "--eval-out", help="default runs/testsets/<task>"),
               note: list[str] = typer.Option([], "--note", help="line added to the model card")) -> None:
    """Write <task>.safetensors (fp16) + .json + .md from a run; then test-set scores into the card."""
    from fusion.pretrained import WEIGHTS_DIR, export_run, model_card

    w, j, md = export_run(run, out_dir, weights=weights, notes=list(note))
    typer.echo(f"wrote {w} ({w.stat().st_size / 1e6:.2f} MB), {j}, {md}")
    if evaluate:
        info = json.loads(j.read_text())
        task = info["task"]
        res = _evaluate(task, out_dir or WEIGHTS_DIR, data, eval_out or Path("runs/testsets") / task, None)
        info["test"] = res
        j.write_text(json.dumps(info, indent=2, default=str) + "\n")
        md.write_text(model_card(info))
        typer.echo(f"test-set scores added to {j} and {md}")


@app.command("evaluate")
def evaluate_cmd(task: str = typer.Option(..., "--task"),
                 data: Path = typer.Option(DEFAULT_DATA, "--data", help="shared test data root"),
                 out: Path | None = typer.Option(None, "--out", help="default runs/testsets/<task>"),
                 max_pairs: int | None = typer.Option(None, "--max-pairs", help="per test set (quick look)")) -> None:
    """Score the bundled model TASK (vif, mif, ..., pan4, pan8) and every classical baseline on the shared test sets."""
    _evaluate(task, None, data, out or Path("runs/testsets") / task, max_pairs)


if __name__ == "__main__":
    app()
