"""The in-process CLI call the command tests share: one place that says a traceback is a failure."""

from __future__ import annotations

from click.testing import CliRunner

from headstart.cli import cli


def invoke(*args: object):
    """Run `headstart ARGS` in-process; a traceback in the output fails the calling test."""
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result
