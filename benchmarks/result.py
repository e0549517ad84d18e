"""`--json PATH` for every benchmark: what it printed, with the command, the dates, the machine and its load.

A benchmark script ends with `run(main)` instead of `main()`. `run` takes `--json PATH` off the command line (the
script's own parser never sees it), copies everything the script prints to stdout, and writes one JSON document
when it ends. `benchmarks/render_docs.py` turns the documents kept under `docs/benchmarks/data/` into the
benchmark pages, so a figure is never shown without the command that measured it.
"""

from __future__ import annotations

import io
import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path


class _Tee(io.TextIOBase):
    def __init__(self, stream):
        self.stream, self.lines = stream, io.StringIO()

    def write(self, text: str) -> int:
        self.lines.write(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


def machine() -> str:
    """CPU model, cores, the vector extensions the engines care about, GPU, torch: what a figure depends on."""
    model, flags = platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    extensions = [name for flag, name in (("avx2", "AVX2"), ("avx512_bf16", "AVX512-BF16"), ("amx_bf16", "AMX"))
                  if flag in flags]
    parts = [f"{os.cpu_count()}-core {model}" + (f" ({', '.join(extensions)})" if extensions else "")]
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
        parts += [gpu, f"torch {torch.__version__}"]
    except ImportError:
        pass
    return ", ".join(parts)


def _utc() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def take_json_option(argv: list[str]) -> tuple[str | None, list[str]]:
    """(PATH or None, argv without `--json PATH` / `--json=PATH`)."""
    rest, path, args = [], None, iter(argv)
    for arg in args:
        if arg == "--json":
            path = next(args, None)
            if path is None:
                raise SystemExit("--json needs a PATH")
        elif arg.startswith("--json="):
            path = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    return path, rest


def run(main: Callable[[], object]) -> object:
    """Run a benchmark's `main()`; with `--json PATH`, also write what it printed and where and when it ran."""
    path, sys.argv[1:] = take_json_option(sys.argv[1:])
    if path is None:
        return main()
    started, load_start, tee = _utc(), os.getloadavg(), _Tee(sys.stdout)
    command = " ".join(["python", shlex.quote(os.path.relpath(sys.argv[0])), *map(shlex.quote, sys.argv[1:])])
    sys.stdout = tee
    try:
        return main()
    finally:
        sys.stdout = tee.stream
        document = {"command": command, "date": f"{started} to {_utc()}", "machine": machine(),
                    "load": f"{load_start[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end",
                    "output": tee.lines.getvalue()}
        Path(path).write_text(json.dumps(document, indent=1) + "\n")
