"""Every block marked `<!-- runnable -->` in the docs runs, as written, page by page in a fresh folder.

`headstart ...` lines run through the click group in this process (one torch import for all of them); other shell
lines run in bash; Python blocks run in a fresh namespace. The pages make their own data (generated phantoms) and
use random weights, so nothing is downloaded.
"""

import shlex
import subprocess

import pytest
from click.testing import CliRunner

from headstart.cli import cli
from tests.docs.markdown import ROOT, blocks

SHELL = {"bash", "sh", "shell", "console"}
PAGES = [page for page in sorted((ROOT / "docs").rglob("*.md")) if any(b.runnable for b in blocks(page))]


def run_block(block) -> None:
    where = f"{block.path.relative_to(ROOT)}:{block.line}"
    if block.language == "python":
        exec(compile(block.code, where, "exec"), {"__name__": "__docs__"})  # noqa: S102 - the docs' own code
        return
    assert block.language in SHELL, f"{where}: a runnable block must be bash or python, not {block.language!r}"
    for line in block.code.splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        if words[0] == "headstart":
            result = CliRunner().invoke(cli, words[1:], catch_exceptions=False)
            assert result.exit_code == 0, f"{where}: `{line.strip()}` exited {result.exit_code}:\n{result.output}"
        else:
            done = subprocess.run(["bash", "-c", line], capture_output=True, text=True)
            assert done.returncode == 0, f"{where}: `{line.strip()}` failed:\n{done.stderr}"


def test_the_guide_has_runnable_blocks():
    names = {page.relative_to(ROOT).as_posix() for page in PAGES}
    assert {"docs/getting-started.md", "docs/guide/predict-export.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_runnable_blocks_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HEADSTART_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # the ONNX graph cache stays in tmp_path
    for block in blocks(page):
        if block.runnable:
            run_block(block)
