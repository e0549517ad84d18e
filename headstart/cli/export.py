"""`headstart export`: a run as one verified ONNX or torch.export graph plus its model card."""

from __future__ import annotations

import click

from headstart.cli import Command


@click.command(cls=Command)
@click.argument("run", type=click.Path(path_type=str))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=str),
              help="MODEL.onnx or MODEL.pt2; the model card goes to MODEL.json beside it.")
@click.option("--weights", default=None,
              help="Local weights file, for a head trained on `--weights PATH` features (its sha256 is checked).")
@click.option("--tolerance", type=click.FloatRange(min=0, min_open=True), default=1e-4, show_default=True,
              help="Refuse to write a model whose probabilities differ from PyTorch's by more than this.")
def export(run: str, output: str, weights: str | None, tolerance: float) -> None:
    """Export RUN (RUNS/<run_id>) as ONE graph: normalisation -> backbone -> head -> probabilities.

    The input is a float32 batch of images in [0, 1], resized and cropped to the model's input size (MODEL.json
    says how); the batch size is dynamic. The export is checked against PyTorch before it is written.
    """
    from headstart.api import run_export

    result = run_export(run, output, weights=weights, tolerance=tolerance)
    click.echo(f"exported {result.run_id} with {result.exporter} in {result.seconds:.1f} s: max difference from "
               f"PyTorch {result.max_abs_diff:.2g} (tolerance {result.tolerance:g}) -> {result.model} + {result.card}")
