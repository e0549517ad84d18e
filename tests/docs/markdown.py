"""Reading the README and the docs pages as the tests need them: fenced blocks, runnable marks, tables."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNNABLE = "<!-- runnable -->"
FENCE = re.compile(r"^(`{3,}|~{3,})\s*([\w+-]*)")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    runnable: bool


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks(path: Path) -> list[Block]:
    """Every fenced block of a page; `runnable` when the closest non-blank line above it is the mark."""
    lines = path.read_text().splitlines()
    found, i = [], 0
    while i < len(lines):
        match = FENCE.match(lines[i].strip())
        if not match:
            i += 1
            continue
        fence, start = match.group(1), i
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip().startswith(fence)), len(lines))
        above = next((lines[j].strip() for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        found.append(Block(path, start + 1, match.group(2).lower(), "\n".join(lines[start + 1:end]) + "\n",
                           above == RUNNABLE))
        i = end + 1
    return found


def prose(path: Path) -> str:
    """The page without its fenced blocks (tables and names in code blocks are not the page's tables)."""
    lines, out, fence = path.read_text().splitlines(), [], None
    for line in lines:
        match = FENCE.match(line.strip())
        if fence is None and match:
            fence = match.group(1)
            out.append("")
        elif fence is not None and line.strip().startswith(fence):
            fence = None
            out.append("")
        else:
            out.append("" if fence else line)
    return "\n".join(out)


def table_cells(line: str) -> list[str]:
    """A table row's cells, split as GitHub splits them: every unescaped `|`, inside `code` too (`\\|` is a pipe)."""
    body = line.strip()
    body = body[1:] if body.startswith("|") else body
    body = body[:-1] if body.endswith("|") and not body.endswith("\\|") else body
    return [cell.replace("\\|", "|").strip() for cell in re.split(r"(?<!\\)\|", body)]


def tables(path: Path) -> list[tuple[int, list[str]]]:
    """Each table as (first line number, its lines): consecutive lines that start with `|`."""
    found, current, start = [], [], 0
    for number, line in enumerate(prose(path).splitlines(), 1):
        if line.lstrip().startswith("|"):
            if not current:
                start = number
            current.append(line)
        elif current:
            found.append((start, current))
            current = []
    if current:
        found.append((start, current))
    return found
