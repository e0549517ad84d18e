"""`headstart demo [-o DIR]`: extract, heads, finetune and compare on generated phantoms, on a CPU in minutes."""

from __future__ import annotations

from pathlib import Path

import click

from headstart.cli import Command


@click.command(cls=Command)
@click.option("-o", "--output", "output", type=click.Path(path_type=Path), default=Path("demo-out"),
              show_default=True, help="Folder for the phantoms, the cache, the run records and the report.")
@click.option("--weights", type=click.Choice(["imagenet", "random"]), default="imagenet", show_default=True,
              help="imagenet falls back to random weights, with a warning, when they are not in the torch hub cache.")
@click.option("--quick", is_flag=True, help="Fewer, smaller images, the quick sweep and two epochs (under a minute).")
def demo(output: Path, weights: str, quick: bool) -> None:
    """Run the whole pipeline on a built-in synthetic chest X-ray set and write the comparison report."""
    from headstart.api import run_demo

    result = run_demo(output, weights=weights, quick=quick)
    steps = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in result.seconds.items())
    click.echo(f"demo finished in {sum(result.seconds.values()):.1f} s ({steps})")
    if result.weights_note:
        click.echo(f"WARNING: random weights were used ({result.weights_note}); the numbers are not meaningful "
                   "for pretrained features", err=True)
    click.echo(f"report: {result.report_html}")
