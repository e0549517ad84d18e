"""report.html rendered by real headless Chromium: tables and decodable embedded images, no console messages.

A copy of the page gets a probe script that, once the page has loaded, writes into document.title how many
images decoded to a non-zero natural size and whether the page is wider than the window (tables scroll in their
own boxes, never the page), and logs one console line. Seeing that line in Chromium's log proves console capture
works, so "no other console line" is a real check, not a vacuous one. The study holds records, a learning curve
and fine-tunes on training draws, so every section of the report is rendered.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from headstart.cli import cli
from tests.report.conftest import write_curve, write_study, write_subsampled_finetunes

PROBE = "headstart-probe-loaded"
PROBE_SCRIPT = (
    "<script>window.addEventListener('load', () => {"
    " const images = Array.from(document.images);"
    " const good = images.filter(i => i.complete && i.naturalWidth > 0 && i.naturalHeight > 0);"
    " const root = document.documentElement;"
    " document.title = 'images ' + images.length + ' decoded ' + good.length"
    "   + ' overflow ' + (root.scrollWidth > root.clientWidth ? 1 : 0);"
    f" console.log('{PROBE}'); }});</script>"
)


def _chromium() -> str | None:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


@pytest.mark.skipif(_chromium() is None, reason="Chromium is not installed (CI installs Debian's chromium)")
def test_report_html_renders_in_headless_chromium(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    write_study(runs)
    write_curve(runs)
    write_subsampled_finetunes(runs)
    result = CliRunner().invoke(cli, ["compare", str(runs)])
    assert result.exit_code == 0, result.output
    page = (runs / "report" / "report.html").read_text(encoding="utf-8")

    sources = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(sources) >= 4
    for data in sources:
        assert base64.b64decode(data, validate=True)[:8] == b"\x89PNG\r\n\x1a\n"

    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("</body>", PROBE_SCRIPT + "</body>"), encoding="utf-8")
    command = [
        _chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0", "--window-size=1024,768",
        "--dump-dom", probed.as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout

    assert f"<title>images {len(sources)} decoded {len(sources)} overflow 0</title>" in dom
    assert dom.count('<div class="table-box"><table>') == dom.count("<table>") == 4  # + the curve's table
    assert "<th>test AUROC</th>" in dom and "<th>DeLong p</th>" in dom
    assert re.findall(r"<h2>([^<]+)</h2>", dom)[0] == "Verdict" and "<h3>Learning curves" in dom
    assert re.findall(r"<h2>([^<]+)</h2>", dom)[-1] == "Definitions"
    assert len(sources) >= 7  # learning curve, cost-accuracy, ROC, confusion, timing, a history grid per backbone
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    assert any(PROBE in line for line in console), "Chromium did not report the probe's console line"
    assert [line for line in console if PROBE not in line] == []
