"""The audit written as audit.md, audit.html and audit.json; the blocks come from the JSON document through
`headstart.evaluation.report.audit`, the same rendering `compare` embeds."""

from __future__ import annotations

import json
import os
from pathlib import Path

from headstart.evaluation.report.audit import audit_blocks as blocks_from_json
from headstart.evaluation.report.document import Block
from headstart.evaluation.report.render import render_html, render_markdown
from headstart.studies.audit.runner import AuditReport

FILES = ("audit.md", "audit.html", "audit.json")


def audit_blocks(report: AuditReport, *, level: int = 1) -> list[Block]:
    """The audit as blocks: a heading at `level` (2 when embedded in a larger report), a status table, details.
    Rendered from the JSON document, exactly as `compare` renders an audit.json it finds."""
    return blocks_from_json(report.to_json(), level=level)


def write_audit(report: AuditReport, output_dir: str | Path) -> list[Path]:
    """Write audit.md, audit.html and audit.json into `output_dir` (each to a temporary name, then renamed)."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    blocks = audit_blocks(report)
    texts = {"audit.md": render_markdown(blocks), "audit.html": render_html(blocks, title="headstart audit"),
             "audit.json": json.dumps(report.to_json(), indent=2) + "\n"}
    written = []
    for name in FILES:
        path = out / name
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(texts[name], encoding="utf-8")
        os.replace(tmp, path)
        written.append(path)
    return written
