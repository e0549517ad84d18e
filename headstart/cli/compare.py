"""`headstart compare RUNS [-o REPORT_DIR]`: one report over every run record and learning curve under RUNS."""

from __future__ import annotations

from pathlib import Path

import click

from headstart.cli import Command
from headstart.evaluation import SELECT_METRICS


@click.command(cls=Command)
@click.argument("runs", type=click.Path(path_type=Path))
@click.option("-o", "--output", "output", type=click.Path(path_type=Path), default=None,
              help="Report folder (default: RUNS/report).")
@click.option("--select-metric", type=click.Choice(list(SELECT_METRICS)), default="auroc", show_default=True,
              help="Validation metric that picks each backbone's best cached head for the paired tests.")
def compare(runs: Path, output: Path | None, select_metric: str) -> None:
    """The verdict, tables, break-even, paired tests, learning curves and plots: report.md, report.html and
    summary.json. RUNS may hold run records, curves (`headstart curve`), or both."""
    from headstart.api import run_compare  # lazy: matplotlib loads only when the command runs

    result = run_compare(runs, output, select_metric=select_metric)
    curves = f", {result.n_curves} learning curve(s)" if result.n_curves else ""
    click.echo(f"{result.n_records} runs{curves}, {result.n_datasets} data set(s)")
    click.echo(f"report: {result.report_html}")
    click.echo(f"        {result.report_md}")
    click.echo(f"        {result.summary_json}")
