"""The shortcut and leakage audit as report blocks, rendered from its plain JSON document (`audit.json`).

`headstart audit -o DIR` writes audit.json beside audit.md/.html, and `compare` embeds every audit.json it finds
under RUNS (for example `headstart audit CACHE -o RUNS/audit`). Both render through `audit_blocks` here, from the
JSON alone: evaluation never imports the audit itself (studies sit above evaluation), so the document's
documented schema (README, audit section) is the whole interface.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from headstart.evaluation.report.document import Block, BulletList, Heading, Paragraph, Table

log = logging.getLogger(__name__)

AUDIT_FILE = "audit.json"
MAX_ROWS_SHOWN = 50  # pairs and moves tabulated in a report; audit.json lists them all


def audit_blocks(doc: dict, *, level: int = 1) -> list[Block]:
    """The audit as blocks: a heading at `level` (2 when embedded in a larger report), a status table, details."""
    checks = doc.get("checks") or {}
    flagged = [name for name, c in checks.items() if c.get("flagged")]
    splits = doc.get("splits") or {}
    blocks: list[Block] = [
        Heading(level, f"Shortcut and leakage audit: {Path(str(doc.get('cache', '?'))).name}"),
        Paragraph(f"Feature set {doc.get('feature_set') or '(none)'}, {doc.get('n_samples', '?')} images ("
                  + ", ".join(f"{s} {n}" for s, n in splits.items()) + f"); {_num(doc.get('seconds'), '.1f')} s. "
                  + (f"Flagged: {', '.join(flagged)}." if flagged else "Nothing flagged.")),
        Table(["check", "status", "finding"],
              [[name, "skipped" if c.get("skipped") else ("FLAGGED" if c.get("flagged") else "ok"),
                str(c.get("message", ""))] for name, c in checks.items()], [False, False, False]),
    ]
    sub = level + 1
    pairs = doc.get("near_duplicates") or []
    if pairs:
        rule = (doc.get("near_duplicates_summary") or {}).get("rule", "")
        blocks += [Heading(sub, "Near-duplicate pairs across splits"),
                   Paragraph(f"Rule: {rule}. Showing {min(len(pairs), MAX_ROWS_SHOWN)} of {len(pairs)}; audit.json "
                             "lists all."),
                   Table(["id a", "split a", "id b", "split b", "cosine", "hash bits", "method"],
                         [[str(p.get("id_a")), str(p.get("split_a")), str(p.get("id_b")), str(p.get("split_b")),
                           _num(p.get("similarity"), ".6f"), _num(p.get("hamming"), "d"), str(p.get("method"))]
                          for p in pairs[:MAX_ROWS_SHOWN]], [False, False, False, False, True, True, False])]
    leaked = (doc.get("patient_leakage") or {}).get("leaked") or []
    if leaked:
        blocks += [Heading(sub, "Patient groups in more than one split"),
                   BulletList([f"{g.get('group')}: " + ", ".join(f"{s} {n}" for s, n in (g.get("splits") or {}).items())
                               for g in leaked])]
    blocks += _per_finding_blocks(doc, sub)
    features = (doc.get("metadata_baseline") or {}).get("features")
    if features:
        blocks += [Heading(sub, "Metadata features"), Paragraph(", ".join(map(str, features)))]
    balance = (doc.get("split_shift") or {}).get("class_balance")
    if balance:
        classes = [k for k in next(iter(balance.values())) if k != "n"]
        blocks += [Heading(sub, "Class balance per split"),
                   Table(["split", "n", *classes],
                         [[s, str(b.get("n")), *(_num(100 * b[c] if b.get(c) is not None else None, ".1f", "%")
                                                 for c in classes)] for s, b in balance.items()],
                         [False, True, *([True] * len(classes))])]
    return blocks + _fix_blocks(doc.get("fix"), sub)


def _per_finding_blocks(doc: dict, level: int) -> list[Block]:
    """A multi-label audit: each finding's metadata baseline and shuffled-label floor (their `per_label`)."""
    meta = (doc.get("metadata_baseline") or {}).get("per_label") or {}
    shuffle = (doc.get("label_shuffle") or {}).get("per_label") or {}
    if not meta and not shuffle:
        return []
    rows = []
    for name in list(dict.fromkeys([*meta, *shuffle])):
        m, f = meta.get(name) or {}, shuffle.get(name) or {}
        ci = m.get("auroc_ci") or [None, None]
        status = "skipped" if m.get("skipped") else ("FLAGGED" if m.get("flagged") else "ok")
        rows.append([name, _num(m.get("auroc"), ".3f"), f"[{_num(ci[0], '.3f')}, {_num(ci[1], '.3f')}]", status,
                     _num(m.get("n_test"), "d"), _num(f.get("auroc_mean"), ".3f"), _num(f.get("real_auroc"), ".3f")])
    return [Heading(level, "Per finding (multi-label)"),
            Paragraph("Each finding audited as its own binary question on the rows where it is scored: the "
                      "metadata-only test AUROC with its 95% interval, and the mean test AUROC of heads trained on "
                      "shuffled labels beside the reference head's."),
            Table(["finding", "metadata AUROC", "95% CI", "metadata", "n test", "shuffled AUROC", "reference AUROC"],
                  rows, [False, True, True, False, True, True, True])]


def _fix_blocks(fix: dict | None, level: int) -> list[Block]:
    """What `audit --fix` moved (or would have moved, when it was refused)."""
    if not fix or not fix.get("moves"):
        return [] if not fix else [Heading(level, "Split fix (--fix)"), Paragraph(str(fix.get("note", "")))]
    moves = fix["moves"]
    outcome = (f"Refused: {fix['refused']}" if fix.get("refused") else
               f"Published: {len(moves)} image(s) moved in {fix.get('n_groups')} group(s); new splits "
               + ", ".join(f"{s} {n}" for s, n in (fix.get("splits") or {}).items()) + ".")
    return [Heading(level, "Split fix (--fix)"), Paragraph(outcome),
            Table(["id", "group", "from", "to"],
                  [[str(m.get("id")), str(m.get("group")), str(m.get("from")), str(m.get("to"))]
                   for m in moves[:MAX_ROWS_SHOWN]], [False, True, False, False])]


def find_audits(runs_dir: str | Path) -> list[tuple[Path, dict]]:
    """Every readable audit.json under `runs_dir` (any depth), by path; unreadable ones are skipped with a warning."""
    found = []
    for path in sorted(Path(runs_dir).rglob(AUDIT_FILE)):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(doc, dict) or not isinstance(doc.get("checks"), dict):
                raise ValueError("not a headstart audit document (no checks)")
        except (OSError, ValueError) as error:
            log.warning("skipping unreadable audit %s: %s", path, error)
            continue
        found.append((path, doc))
    return found


def audit_section(runs_dir: str | Path, summary: dict) -> list[Block]:
    """The compare report's audit section: each audit.json under RUNS as blocks (none found: no section), also
    listed in summary.json as `audits` ({path, flagged, checks})."""
    blocks: list[Block] = []
    summary["audits"] = []
    for path, doc in find_audits(runs_dir):
        try:
            section = audit_blocks(doc, level=2)
        except (AttributeError, KeyError, TypeError, ValueError) as error:  # a hand-edited or foreign document
            log.warning("skipping malformed audit %s: %s", path, error)
            continue
        blocks += [*section, Paragraph(f"From {path}.")]
        summary["audits"].append({"path": str(path), "flagged": doc.get("flagged"), "checks": doc["checks"]})
    return blocks


def _num(value, spec: str, suffix: str = "") -> str:
    """A number formatted by `spec`, or '-' when absent (JSON null: NaN, unknown)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "-"
    return format(value, spec) + suffix
