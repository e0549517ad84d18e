"""Fixed start-up of every `headstart` command: process start to the first useful work, medians of repeats.

- `headstart --help` and `headstart CMD --help`: the click layer only; `--help` must not import torch (checked
  with `python -X importtime -m headstart --help`, whose slowest imports are listed);
- `headstart heads` on a small synthetic cache (2,000 x 512, written by the project's cache writer): time from
  process start to the first configuration's training (a probe wraps the heads runner's fit entry points), and
  the whole command;
- `headstart extract` on 16 real JPEGs (--weights random): process start to the first forward pass;
- `headstart finetune` on the same images (1 epoch, 64 px): process start to the first optimiser step;
- `cache info`, `compare` and `backbones`: the whole command;
- the floors: `python -c pass` and `python -c "import torch"`.

Each figure is given as wall time and as the CPU time the process used by then (user + system): on a machine
shared with other work the wall time moves with the load (printed), the CPU time much less, and on an idle
machine the start-up wall time is close to its CPU time (start-up is single-threaded). Target: every command's
fixed start-up under 2 s where torch allows, i.e. not much above the torch import floor plus what the command
must load (heads: sklearn, which brings scipy and pandas). `heads` runs the default sweep of all four heads
with `--n-boot 50` (the start-up does not depend on it).

    .venv/bin/python benchmarks/startup.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from synthetic import write_cache

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("HEADSTART_DATA", REPO.parent / "shared" / "data"))
COMMANDS = ("backbones", "cache", "compare", "demo", "extract", "finetune", "heads")

# Runs `headstart` in a fresh interpreter, first wrapping the functions whose first call marks the end of the
# start-up; each mark goes to stderr with the wall clock, which the parent compares with its own start time.
PROBE = r"""
import os, sys, time
marked = set()
def mark(tag):
    if tag not in marked:
        marked.add(tag)
        sys.stderr.write(f"@@probe {tag} {time.time():.6f} {time.process_time():.6f}\n")
        sys.stderr.flush()
def wrap(module, names):
    for name in names:
        fn = getattr(module, name, None)
        if callable(fn):
            def first(*a, _fn=fn, **k):
                mark("first")
                return _fn(*a, **k)
            setattr(module, name, first)
kind = os.environ["HEADSTART_PROBE"]
if kind == "heads":
    import headstart.heads.fitting as m  # the sweeps' fit entry points, as fit_sweeps calls them
    wrap(m, ["fit_logreg_path", "train_batched_seeds", "knn_sweep"])
elif kind == "extract":
    import headstart.extract.runner as m  # the loop's first batch (after the engine is set up and checked)
    wrap(m, ["compute_features"])
elif kind == "finetune":
    import torch.optim.optimizer as o
    o.register_optimizer_step_pre_hook(lambda *a: mark("first"))
from headstart.cli import main
sys.argv = ["headstart"] + sys.argv[1:]
main()
"""


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
            "OMP_WAIT_POLICY": "PASSIVE"}  # what `headstart`'s main() sets before torch loads


def timed(cmd: list[str], *, probe: str | None = None) -> tuple[float, float, float | None, float | None]:
    """(whole command wall s, its CPU s, wall s from process start to the probe's first mark, CPU s by then)."""
    extra = {"HEADSTART_PROBE": probe} if probe else {}
    start = time.time()
    proc = subprocess.Popen(cmd, env={**env(), **extra}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    total = time.time() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:6])} ... failed:\n{stderr[-2000:]}")
    marks = re.findall(r"^@@probe first (\S+) (\S+)$", stderr, flags=re.M)
    first, first_cpu = (float(marks[0][0]) - start, float(marks[0][1])) if marks else (None, None)
    return total, usage.ru_utime + usage.ru_stime, first, first_cpu


def headstart(*args: str) -> list[str]:
    return [sys.executable, "-m", "headstart", "-q", *args]


def probed(*args: str) -> list[str]:
    return [sys.executable, "-c", PROBE, "-q", *args]


def import_profile(*args: str) -> tuple[bool, list[tuple[float, str]]]:
    """(does `headstart ARGS` import torch?, the six packages whose modules took longest to import, in ms of
    their own import time summed over the package, from `python -X importtime`)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "headstart", *args], env=env(),
                          capture_output=True, text=True, check=True)
    by_package: dict[str, float] = {}
    for line in proc.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)", line)
        if match:
            package = match.group(2).split(".")[0]
            by_package[package] = by_package.get(package, 0.0) + int(match.group(1)) / 1000
    top = sorted(((ms, name) for name, ms in by_package.items()), reverse=True)[:6]
    return "torch" in by_package, top


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    jpegs = sorted((DATA / "kaggle_cxr_224" / "train").rglob("*.jpeg"))
    if not jpegs:
        sys.exit(f"{DATA}/kaggle_cxr_224 is absent; this benchmark needs the real JPEGs in ../shared/data")
    print(f"load average {os.getloadavg()[0]:.1f} at start, {os.cpu_count()} cores; medians of {args.repeats}")
    torch_imported, top = import_profile("--help")
    print(f"`headstart --help` imports torch: {'YES' if torch_imported else 'no'}; slowest packages: "
          + ", ".join(f"{name} {ms:.0f} ms" for ms, name in top))
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        cache = write_cache(tmp / "small.h5", rows=2000, dim=512)
        data = tmp / "images"
        for i, src in enumerate(jpegs[:8] + jpegs[-8:]):  # 8 per class (the folders are sorted by class)
            (data / src.parent.name).mkdir(parents=True, exist_ok=True)
            os.symlink(src, data / src.parent.name / f"{i:02d}.jpeg")
        image_opts = ["--weights", "random", "--image-size", "64", "--val-fraction", "0.25", "--test-fraction", "0.25"]
        runs = [
            ("python -c pass", [sys.executable, "-c", "pass"], None),
            ("python -c 'import torch'", [sys.executable, "-c", "import torch"], None),
            ("headstart --help", headstart("--help"), None),
            *[(f"headstart {c} --help", headstart(c, "--help"), None) for c in COMMANDS],
            ("headstart cache info", headstart("cache", "info", str(cache)), None),
            ("headstart heads (to first config)", probed("heads", str(cache), "-o", str(tmp / "runs"),
                                                         "--n-boot", "50"), "heads"),
            ("headstart compare", headstart("compare", str(tmp / "runs"), "-o", str(tmp / "report")), None),
            ("headstart extract (to first forward)",
             probed("extract", str(data), "-o", str(tmp / "x.h5"), "--overwrite", *image_opts), "extract"),
            ("headstart finetune (to first step)",
             probed("finetune", str(data), "-o", str(tmp / "ft"), "-b", "resnet18", "--epochs", "1",
                    *image_opts), "finetune"),
            ("headstart backbones", headstart("backbones"), None),
        ]
        _, top = import_profile("heads", str(cache), "-o", str(tmp / "runs"), "--head", "linear", "--sweep", "quick",
                                "--n-boot", "10")
        print("`headstart heads` slowest packages: " + ", ".join(f"{name} {ms:.0f} ms" for ms, name in top))
        results: dict[str, list[tuple]] = {}
        for _ in range(args.repeats):  # interleaved, so a burst of load hits every command alike
            for label, cmd, probe in runs:
                if label == "headstart compare" and not (tmp / "runs").exists():
                    continue
                results.setdefault(label, []).append(timed(cmd, probe=probe))
    print(f"{'command':38s} {'start-up wall':>13s} {'(CPU)':>7s} {'whole wall':>11s} {'(CPU)':>7s}")
    for label, _, probe in runs:
        rows = results.get(label, [])
        med = [statistics.median(v) if (v := [r[i] for r in rows if r[i] is not None]) else None for i in range(4)]
        first = f"{med[2]:12.2f}s {med[3]:6.2f}s" if med[2] is not None else ("      (none)        " if probe else
                                                                            "           -       -")
        print(f"{label:38s} {first} {med[0]:10.2f}s {med[1]:6.2f}s")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    from result import run  # benchmarks/result.py: --json PATH writes the output with command, date, machine, load

    run(main)
