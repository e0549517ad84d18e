"""`headstart heads`: stage two, sweep heads on cached features, select on val, test once."""

from __future__ import annotations

import click

from headstart.cli import Command
from headstart.cli.options import device_option, feature_sets_option, label_policy_options
from headstart.data.balance import CLASS_WEIGHTS
from headstart.evaluation import SELECT_METRICS
from headstart.heads import HEADS, SWEEP_NAMES
from headstart.precision import HEAD_PRECISIONS


@click.command(cls=Command)
@click.argument("cache_path", metavar="CACHE", type=click.Path(path_type=str))
@click.option("-o", "--output", "runs_dir", required=True, type=click.Path(file_okay=False, path_type=str),
              help="RUNS folder; each selected head writes RUNS/<run_id>/record.json.")
@feature_sets_option
@click.option("--head", "heads", multiple=True, type=click.Choice(HEADS),
              help="Head to sweep (repeat for several; default: all four).")
@click.option("--sweep", type=click.Choice(SWEEP_NAMES), default="default", show_default=True,
              help="Named hyperparameter grid (see the README).")
@click.option("--seeds", type=click.IntRange(min=1), default=1, show_default=True,
              help="Seeds 0..N-1; the summary shows mean ± std over them.")
@click.option("--select-metric", type=click.Choice(list(SELECT_METRICS)), default="auroc", show_default=True,
              help="Val metric that picks each head's configuration.")
@click.option("--threshold-rule", default="youden", show_default=True,
              help="How the binary decision threshold is chosen on val and frozen for test: youden, f1, "
                   "sensitivity:X, specificity:X or fixed:T.")
@click.option("--class-weight", type=click.Choice(CLASS_WEIGHTS), default="balanced", show_default=True,
              help="balanced: weight the loss (kNN: the votes) by inverse class frequency.")
@device_option
@click.option("--precision", type=click.Choice(HEAD_PRECISIONS), default="auto", show_default=True,
              help="The torch heads' training steps. auto: bf16 autocast where the hardware has native bf16 (a GPU "
                   "with bf16, a CPU with AVX512-BF16 or AMX), else fp32. Val loss, early stopping and every "
                   "prediction run in fp32; each record says which was used.")
@click.option("--n-boot", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Bootstrap resamples behind each 95% interval.")
@click.option("--views", type=click.Choice(["off", "on"]), default="off", show_default=True,
              help="on: train on the views cached by `extract --views K` (linear/MLP: one view per row per epoch, "
                   "the plain one included; logreg/kNN: each image's view mean).")
@click.option("--tta", type=click.Choice(["off", "on"]), default="off", show_default=True,
              help="on: val and test probabilities are the mean over the plain and the M test-time views cached by "
                   "`extract --tta M`; the threshold is chosen on val the same way.")
@label_policy_options
def heads(cache_path: str, runs_dir: str, feature_sets: tuple[str, ...], heads: tuple[str, ...], sweep: str,
          seeds: int, select_metric: str, threshold_rule: str, class_weight: str, device: str, precision: str,
          n_boot: int, views: str, tta: str, uncertain: tuple[str, ...], blank: str) -> None:
    """Train and select heads on the cached features in CACHE; write one run record per head and seed.

    Every configuration of the grid is fitted on train and scored on val; the best by --select-metric is
    kept, its threshold is chosen on val and frozen, and test is evaluated once with bootstrap intervals.
    """
    from headstart.api import run_heads
    from headstart.heads.runner import HeadsConfig
    from headstart.heads.summary import summary_table

    config = HeadsConfig(
        feature_sets=list(feature_sets) or None, heads=list(heads) or list(HEADS), sweep=sweep, seeds=seeds,
        select_metric=select_metric, threshold_rule=threshold_rule, class_weight=class_weight, device=device,
        precision=precision, n_boot=n_boot, views=views, tta=tta, uncertain=list(uncertain) or "ignore",
        blank=blank,
    )
    records = run_heads(cache_path, runs_dir, config=config)
    click.echo(summary_table(records))
    click.echo(f"{len(records)} run record(s) in {runs_dir}/ (RUNS/<run_id>/record.json); "
               f"compare them with `headstart compare {runs_dir}`")
