"""`headstart cache info|verify`: inspect and check a feature cache file."""

from __future__ import annotations

import json

import click

from headstart.cli import Group

_SET_COLUMNS = [("name", "set"), ("backbone", "backbone"), ("layer", "layer"), ("pool", "pool"), ("engine", "engine"),
                ("weights", "weights"), ("dim", "dim"), ("dtype", "dtype"), ("complete", "complete"), ("ips", "img/s"),
                ("skipped", "skipped")]


@click.group(cls=Group)
def cache() -> None:
    """Inspect or check a feature cache made by `headstart extract`."""


@cache.command()
@click.argument("cache_path", metavar="CACHE", type=click.Path(dir_okay=True, path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def info(cache_path: str, as_json: bool) -> None:
    """Samples, classes, split counts and feature sets of CACHE."""
    from headstart.api import open_cache
    from headstart.evaluation.table import fmt_value, format_table

    with open_cache(cache_path) as opened:
        summary = opened.info()
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(f"{summary['path']}  (format {summary['format_version']}, {_mib(summary['size_bytes'])})")
    names = "findings" if summary["task"] == "multilabel" else "classes"
    click.echo(f"samples: {summary['n_samples']}   task: {summary['task']}   {names}: {', '.join(summary['classes'])}")
    for split, count in summary["splits"].items():
        by_class = summary["splits_by_class"].get(split, {})
        detail = ", ".join(f"{c} {n}" for c, n in by_class.items())
        detail = f"positives: {detail}" if summary["task"] == "multilabel" else detail
        click.echo(f"  {split:<5} {count:>7}  ({detail})")
    rows = [{"name": s["name"], "backbone": str(s["backbone"]), "layer": s["layer"] or "-", "pool": s["pool"] or "-",
             "engine": s["engine"] or "-", "weights": str(s["weights"]), "dim": s["dim"],
             "dtype": s["dtype"], "complete": "yes" if s["complete"] else "NO",
             "ips": fmt_value(s.get("images_per_second"), digits=1), "skipped": s.get("n_skipped", 0)}
            for s in summary["feature_sets"]]
    if not rows:
        click.echo("feature sets: none")
    else:
        for line in format_table(rows, _SET_COLUMNS).splitlines():
            click.echo(f"  {line}")
    for v in summary.get("view_sets", []):  # extract --views/--tta
        what = f"{v['views']} views ({v['augment']})" if v["kind"] == "views" else f"{v['views']} test-time views"
        click.echo(f"  views of {v['of']}: {what}, seed {v['seed']}, {v['rows']} images, {v['dtype']}"
                   + ("" if v["complete"] else " (incomplete)"))
    staged = summary.get("staged")
    if staged:
        done = staged["rows_staged"]
        click.echo(f"in progress: {', '.join(staged['sets']) or '?'} in {staged['folder']}"
                   + (f" ({done} of {summary['n_samples']} images staged)" if done is not None else ""))


@cache.command()
@click.argument("cache_path", metavar="CACHE", type=click.Path(dir_okay=True, path_type=str))
def verify(cache_path: str) -> None:
    """Check shapes, labels, splits, checksums, NaN/Inf and fingerprints of CACHE; exit 1 on any problem."""
    from headstart.api import open_cache, verify_cache

    problems = verify_cache(cache_path)
    if problems:
        for problem in problems:
            click.echo(f"problem: {problem}", err=True)
        raise click.ClickException(f"{cache_path}: {len(problems)} problem(s) found")
    with open_cache(cache_path) as opened:
        sets = ", ".join(f"{n} ({s.dim}-d {s.dtype})" for n, s in opened.feature_sets.items()) or "no feature sets"
        click.echo(f"OK {cache_path}: {opened.n_samples} samples, {len(opened.classes)} classes, {sets}")


def _mib(size: int | None) -> str:
    return f"{size / 2**20:.1f} MiB" if size is not None else "size unknown"
