"""`headstart curve`: label efficiency on a cache, a learning curve per feature set and head."""

from __future__ import annotations

import click

from headstart.cli import Command
from headstart.cli.options import device_option, feature_sets_option, label_policy_options
from headstart.data.balance import CLASS_WEIGHTS
from headstart.evaluation import SELECT_METRICS
from headstart.heads import HEADS, SWEEP_NAMES
from headstart.evaluation import FIT_METRICS


@click.command(cls=Command)
@click.argument("cache_path", metavar="CACHE", type=click.Path(path_type=str))
@click.option("-o", "--output", "runs_dir", required=True, type=click.Path(file_okay=False, path_type=str),
              help="RUNS folder; each curve goes to RUNS/curve_<set>_<head>/curve.json.")
@feature_sets_option
@click.option("--head", "heads", multiple=True, type=click.Choice(HEADS), help="Head (repeat; default: logreg).")
@click.option("--sizes", multiple=True,
              help="Training-set sizes, comma-separated or repeated: k=N per class, N images, or P% of train "
                   "(default: k=1,2,4,... then 1%,2%,5%,10%,25%,50%). The whole train split is always the last.")
@click.option("--repeats", type=click.IntRange(min=1), default=5, show_default=True,
              help="Seeded draws of whole patients per size (the whole train split is one draw).")
@click.option("--sweep", type=click.Choice(SWEEP_NAMES), default="quick", show_default=True,
              help="Grid each draw sweeps.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Repeat r draws with seed + r, as `finetune --train-size SIZE --seed seed+r` does.")
@click.option("--val-from-train", is_flag=True,
              help="Select config and threshold by cross-validation inside each draw, not on the full val split.")
@click.option("--metric", type=click.Choice(FIT_METRICS), default="auroc", show_default=True,
              help="Test metric the power law a - b*n^(-c) is fitted to.")
@click.option("--target", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None,
              help="Also report the labels the fit needs to reach this metric value, e.g. 0.95.")
@click.option("--select-metric", type=click.Choice(list(SELECT_METRICS)), default="auroc", show_default=True,
              help="Val metric that picks each draw's configuration.")
@click.option("--threshold-rule", default="youden", show_default=True,
              help="How the binary threshold is chosen on val: youden, f1, sensitivity:X, specificity:X or fixed:T.")
@click.option("--class-weight", type=click.Choice(CLASS_WEIGHTS), default="balanced", show_default=True)
@device_option
@click.option("--n-boot", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Bootstrap resamples behind each point's 95% intervals.")
@click.option("--views", type=click.Choice(["off", "on"]), default="off", show_default=True,
              help="on: each curve also trained on the cached views (extract --views K), on the same draws, in "
                   "RUNS/curve_<set>_<head>-views/.")
@label_policy_options
def curve(cache_path: str, runs_dir: str, feature_sets: tuple[str, ...], heads: tuple[str, ...],
          sizes: tuple[str, ...], repeats: int, sweep: str, seed: int, val_from_train: bool, metric: str,
          target: float | None, select_metric: str, threshold_rule: str, class_weight: str, device: str,
          n_boot: int, views: str, uncertain: tuple[str, ...], blank: str) -> None:
    """Learning curve: test metric against labelled training images, for each feature set and head in CACHE.

    Each size is drawn --repeats times (whole patients, stratified by class); each draw sweeps the head,
    selects on val, chooses the threshold on val and scores test once, as `headstart heads` does. A power
    law a - b*n^(-c) fitted to the means gives the plateau and the labels that reach 95% and 99% of it.
    On a multi-label cache the draws are stratified per finding and the metric is the macro AUROC.
    """
    from headstart.api import run_curve
    from headstart.evaluation.curve_doc import curve_table

    listed = [s.strip() for text in sizes for s in text.split(",") if s.strip()]
    results = run_curve(cache_path, runs_dir, feature_sets=list(feature_sets) or None,
                        heads=list(heads) or ["logreg"], sizes=listed or None, repeats=repeats, sweep=sweep,
                        seed=seed, val_from_train=val_from_train, metric=metric, target=target,
                        select_metric=select_metric, threshold_rule=threshold_rule, class_weight=class_weight,
                        device=device, n_boot=n_boot, views=views, uncertain=list(uncertain) or "ignore", blank=blank)
    for result in results:
        click.echo(curve_table(result.document))
        click.echo(f"-> {result.path}\n")
    click.echo(f"{len(results)} curve(s) in {runs_dir}/; plot them with `headstart compare {runs_dir}`")
