"""Command-line interface: the only package that knows click.

Commands live one per module and are imported lazily, so `headstart --help` does not pay for importing torch.
Library errors are mapped to click exceptions here, at the boundary, and nowhere else.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

import click

from headstart import __version__
from headstart.errors import ConfigError, HeadstartError

# command name -> "module:attribute"; each module defines one click command or group.
COMMANDS: dict[str, str] = {
    "backbones": "headstart.cli.backbones:backbones",
    "extract": "headstart.cli.extract:extract",
    "cache": "headstart.cli.cache:cache",
    "heads": "headstart.cli.heads:heads",
    "finetune": "headstart.cli.finetune:finetune",
    "compare": "headstart.cli.compare:compare",
    "demo": "headstart.cli.demo:demo",
    "audit": "headstart.cli.audit:audit",
    "curve": "headstart.cli.curve:curve",
    "screen": "headstart.cli.screen:screen",
    "predict": "headstart.cli.predict:predict",
    "export": "headstart.cli.export:export",
}


class LazyGroup(click.Group):
    """A click group that imports a command's module only when that command runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        return getattr(importlib.import_module(module_name), attr)


class HeadstartCommandMixin:
    """Turns library errors into one-line click errors with the contract's exit codes."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)  # type: ignore[misc]
        except ConfigError as exc:
            raise click.UsageError(str(exc), ctx=ctx) from None
        except HeadstartError as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            raise click.ClickException("interrupted; rerun the same command to resume") from None


class Command(HeadstartCommandMixin, click.Command):
    """Base class for every headstart command (pass `cls=Command`)."""


class Group(HeadstartCommandMixin, click.Group):
    """Base class for command groups such as `headstart cache`."""

    command_class = Command


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s" if not verbose else "%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("headstart")
    # Replace only our own handler, so repeated in-process invocations (tests, notebooks) do not stack them.
    root.handlers[:] = [h for h in root.handlers if not getattr(h, "_headstart", False)]
    handler._headstart = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="headstart")
@click.option("-v", "--verbose", count=True, help="More log output (debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
def cli(verbose: int, quiet: bool) -> None:
    """headstart: extract frozen-backbone features once, iterate heads in seconds."""
    _setup_logging(verbose, quiet)


def main() -> None:
    # Before torch loads (commands import it lazily): idle OpenMP threads sleep instead of spinning. On a CPU
    # shared with other work (decode workers, other jobs), spinning threads hold cores that a descheduled
    # sibling needs, and every barrier then waits a time slice: a resnet18 training step at 64 px ran at
    # 9 images/s spinning and 35 passive on a 2-core machine. Users who set the variable keep their choice.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    cli(prog_name="headstart")
