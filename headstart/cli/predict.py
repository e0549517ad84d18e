"""`headstart predict`: apply a run folder (cached head or fine-tune) or an exported model to new images."""

from __future__ import annotations

import click

from headstart.cli import Command
from headstart.cli.options import device_option, engine_option, precision_option


@click.command(cls=Command)
@click.argument("run", metavar="RUN|MODEL", type=click.Path(path_type=str))
@click.argument("data", required=False, type=click.Path(path_type=str))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=str),
              help="Table to write: id, proba_<class>..., prediction, label (when DATA has labels).")
@click.option("--cache", "cache", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="Apply a cached head to the features in this cache instead of DATA images.")
@click.option("--split", type=click.Choice(["train", "val", "test"]), default=None,
              help="With --cache: only this split's rows (default: every row).")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv", show_default=True,
              help="csv, or JSON lines with the same keys (null for missing values).")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@device_option
@precision_option
@engine_option
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="Decode processes (default: sized to the machine).")
@click.option("--on-bad-image", type=click.Choice(["fail", "skip"]), default="fail", show_default=True,
              help="fail: stop and name the file; skip: a row with empty probabilities and a reason column.")
@click.option("--weights", default=None,
              help="Local weights file, for a head trained on `--weights PATH` features (its sha256 is checked).")
@click.option("--n-boot", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Bootstrap resamples behind each 95% interval, when DATA has labels.")
def predict(run: str, data: str | None, output: str, cache: str | None, split: str | None, fmt: str,
            batch_size: int, device: str, precision: str, engine: str, workers: int | None, on_bad_image: str,
            weights: str | None, n_boot: int) -> None:
    """Apply RUN (RUNS/<run_id> of `heads` or `finetune`, or a MODEL.onnx/.pt2 from `export`) to DATA.

    DATA is anything `extract` reads, or a plain folder of images. A cached head's backbone is rebuilt from the
    head's feature set (any provider, the set's --layer/--pool tap; weights sha256 checked) and its features are
    computed by `extract`'s own code, on --engine (auto: onnxruntime on CPU, checked against torch first).
    With labels in DATA, the metrics are printed with 95% intervals and written next to OUTPUT.
    """
    from headstart.api import run_predict
    from headstart.distributed import is_main
    from headstart.evaluation.table import fmt_ci

    result = run_predict(run, data, output, cache=cache, split=split, format=fmt, batch_size=batch_size,
                         device=device, precision=precision, engine=engine, workers=workers, on_bad_image=on_bad_image,
                         weights=weights, n_boot=n_boot)
    if not is_main():
        return
    on = f" on {result.engine}" if result.engine else ""
    click.echo(f"{result.n_rows} prediction(s) by {result.run_id}{on} in {result.seconds:.1f} s "
               f"({result.images_per_second:.1f} images/s) -> {result.output}")
    if result.skipped:
        shown = ", ".join(result.skipped[:5]) + (" ..." if len(result.skipped) > 5 else "")
        click.echo(f"skipped {len(result.skipped)} unreadable image(s), listed with a reason: {shown}", err=True)
    if result.metrics:
        m = result.metrics
        names = [k for k in ("auroc", "accuracy", "balanced_accuracy", "sensitivity", "specificity", "f1") if k in m]
        click.echo("  ".join(f"{k} {fmt_ci(m[k], m.get(f'{k}_ci'))}" for k in names))
        click.echo(f"metrics with 95% intervals -> {result.metrics_path}")
