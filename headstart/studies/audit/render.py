"""The audit as report blocks (the `compare` report can embed them), written as audit.md, audit.html, audit.json."""

from __future__ import annotations

import json
import os
from pathlib import Path

from headstart.evaluation.report.document import Block, BulletList, Heading, Paragraph, Table
from headstart.evaluation.report.render import render_html, render_markdown
from headstart.studies.audit.runner import AuditReport

MAX_PAIRS_SHOWN = 50  # pairs tabulated in the md/html section; audit.json lists them all
FILES = ("audit.md", "audit.html", "audit.json")


def audit_blocks(report: AuditReport, *, level: int = 1) -> list[Block]:
    """The audit as blocks: a heading at `level` (2 when embedded in a larger report), a status table, details."""
    flagged = [c.name for c in report.checks if c.flagged]
    blocks: list[Block] = [
        Heading(level, f"Shortcut and leakage audit: {Path(report.cache).name}"),
        Paragraph(f"Feature set {report.feature_set or '(none)'}, {report.n_samples} images ("
                  + ", ".join(f"{s} {n}" for s, n in report.splits.items()) + f"); {report.seconds:.1f} s. "
                  + (f"Flagged: {', '.join(flagged)}." if flagged else "Nothing flagged.")),
        Table(["check", "status", "finding"],
              [[c.name, "skipped" if c.skipped else ("FLAGGED" if c.flagged else "ok"), c.message]
               for c in report.checks], [False, False, False]),
    ]
    sub = level + 1
    dup = report.check("near_duplicates")
    pairs = dup.data.get("pairs") or []
    if pairs:
        blocks += [Heading(sub, "Near-duplicate pairs across splits"),
                   Paragraph(f"Rule: {dup.data.get('rule', '')}. Showing {min(len(pairs), MAX_PAIRS_SHOWN)} of "
                             f"{len(pairs)}; audit.json lists all."),
                   Table(["id a", "split a", "id b", "split b", "cosine", "hash bits", "method"],
                         [[p["id_a"], p["split_a"], p["id_b"], p["split_b"], f"{p['similarity']:.6f}",
                           "-" if p["hamming"] is None else str(p["hamming"]), p["method"]]
                          for p in pairs[:MAX_PAIRS_SHOWN]], [False, False, False, False, True, True, False])]
    leak = report.check("patient_leakage")
    if leak.data.get("leaked"):
        blocks += [Heading(sub, "Patient groups in more than one split"),
                   BulletList([f"{g['group']}: " + ", ".join(f"{s} {n}" for s, n in g["splits"].items())
                               for g in leak.data["leaked"]])]
    baseline = report.check("metadata_baseline")
    if baseline.data.get("features"):
        blocks += [Heading(sub, "Metadata features"), Paragraph(", ".join(baseline.data["features"]))]
    balance = report.check("split_shift").data.get("class_balance")
    if balance:
        classes = [k for k in next(iter(balance.values())) if k != "n"]
        blocks += [Heading(sub, "Class balance per split"),
                   Table(["split", "n", *classes],
                         [[s, str(b["n"]), *(f"{100 * b[c]:.1f}%" for c in classes)] for s, b in balance.items()],
                         [False, True, *([True] * len(classes))])]
    return blocks


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
