"""The report as a list of plain blocks, written once and rendered twice (Markdown and self-contained HTML).

Keeping the content here means report.md and report.html can never disagree: the renderers only decide syntax.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Heading:
    level: int  # 1 = title, 2 = data set section, 3 = subsection
    text: str


@dataclass
class Paragraph:
    text: str  # plain text; renderers escape it


@dataclass
class BulletList:
    items: list[str]


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]  # already formatted cells
    numeric: list[bool]  # right-align these columns


@dataclass
class Image:
    path: str  # relative to the report folder, e.g. "plots/roc_3f2a9c1d.png"
    alt: str
    png: bytes  # embedded as a data URI by the HTML renderer


Block = Heading | Paragraph | BulletList | Table | Image
