"""`headstart audit CACHE`: shortcut and leakage checks on a feature cache; one line per check."""

from __future__ import annotations

import json
from pathlib import Path

import click

from headstart.cli import Command


@click.command(cls=Command)
@click.argument("cache_path", metavar="CACHE", type=click.Path(dir_okay=True, path_type=str))
@click.option("-b", "--backbone", "feature_set", default=None, metavar="NAME",
              help="Feature set to audit (default: the first complete one in the cache).")
@click.option("--json", "as_json", is_flag=True,
              help="Print only the JSON document on stdout; the per-check lines go to stderr.")
@click.option("-o", "--output", "output_dir", default=None, type=click.Path(path_type=str), metavar="DIR",
              help="Also write audit.md, audit.html and audit.json into DIR.")
@click.option("--strict", is_flag=True, help="Exit 1 when any check is flagged (for CI); otherwise exit 0 "
                                             "whenever the audit ran.")
@click.option("--shuffle-repeats", default=5, show_default=True, type=click.IntRange(min=1),
              help="Heads trained on shuffled labels for the label-shuffle floor.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seeds resamples, shuffles and simulations.")
@click.option("--fix", is_flag=True, help="Then publish new splits in CACHE in which each near-duplicate group "
                                          "(with its patients) lives in one split; features are kept, nothing is "
                                          "re-extracted. Refused when the test split would change, unless --yes.")
@click.option("--yes", is_flag=True, help="Confirm that --fix may move images into or out of the test split.")
@click.pass_context
def audit(ctx: click.Context, cache_path: str, feature_set: str | None, as_json: bool, output_dir: str | None,
          strict: bool, shuffle_repeats: int, seed: int, fix: bool, yes: bool) -> None:
    """Check CACHE for shortcuts and leakage: metadata-only baseline, near-duplicates across splits, patient
    leakage, label-shuffle floor, split shift and test-set power.

    With --fix, then re-split CACHE so that no near-duplicate group spans two splits (printing each move).
    """
    from headstart.api import run_audit
    from headstart.studies.audit.render import write_audit

    if output_dir is not None and Path(output_dir).exists() and not Path(output_dir).is_dir():
        raise click.UsageError(f"-o {output_dir} is a file; expected a folder to write audit.md/.html/.json into")
    report = run_audit(cache_path, feature_set=feature_set, seed=seed, shuffle_repeats=shuffle_repeats, fix=fix,
                       yes=yes, on_result=lambda check: click.echo(check.line(), err=as_json))
    if report.fix is not None:
        for line in fix_lines(report.fix, cache_path):
            click.echo(line, err=as_json)
    if output_dir is not None:
        written = write_audit(report, output_dir)
        click.echo(f"wrote {', '.join(str(p) for p in written)}", err=True)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    n_flagged = sum(c.flagged for c in report.checks)
    summary = (f"audit of {cache_path} ({report.feature_set or 'no feature set'}): {n_flagged} of "
               f"{len(report.checks)} checks flagged, {sum(bool(c.skipped) for c in report.checks)} skipped, "
               f"{report.seconds:.1f} s")
    click.echo(summary, err=as_json)
    if report.fix is not None and report.fix.refused:
        raise click.ClickException(report.fix.refused)
    if strict and n_flagged:
        click.echo(f"--strict: exiting 1 because {n_flagged} check(s) are flagged", err=True)
        ctx.exit(1)


def fix_lines(fix, cache_path: str) -> list[str]:
    """What --fix did, one line each: every move, then the outcome."""
    if not fix.moves:
        return [f"fix: {fix.note}; {cache_path} is unchanged"]
    verb = "would move" if fix.refused else "moved"
    lines = [f"fix: {verb} {m['id']} {m['from']} -> {m['to']} (group {m['group']})" for m in fix.moves]
    if fix.refused:
        return [*lines, f"fix: refused; {cache_path} is unchanged"]
    counts = ", ".join(f"{s} {n}" for s, n in fix.counts().items())
    lines.append(f"fix: {len(fix.moves)} image(s) moved in {fix.n_groups} near-duplicate group(s); published new "
                 f"splits in {cache_path} ({counts}); features kept, nothing re-extracted")
    return lines
