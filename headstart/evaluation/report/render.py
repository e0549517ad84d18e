"""Markdown and self-contained HTML renderings of the report blocks.

The HTML page has inline CSS and every image as a `data:image/png;base64,` URI: one file that opens offline,
can be mailed or attached to a lab notebook, and never fetches anything. Each table sits in its own box that
scrolls when the table is wider or longer than the page allows, so the page itself never scrolls sideways.
"""

from __future__ import annotations

import base64
import html

from headstart.evaluation.report.document import Block, BulletList, Heading, Image, Paragraph, Table

CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #1b1b1b; line-height: 1.45; }
h1 { border-bottom: 2px solid #ccc; padding-bottom: .2em; }
h2 { border-bottom: 1px solid #ddd; margin-top: 2em; }
.table-box { max-width: 100%; max-height: 32em; overflow: auto; margin: 1em 0; border: 1px solid #e4e4e4; }
table { border-collapse: collapse; font-size: 0.86em; }
th, td { border: 1px solid #ccc; padding: .3em .6em; vertical-align: top; }
th { background: #f2f2f2; text-align: left; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr:nth-child(even) td { background: #fafafa; }
img { max-width: 100%; height: auto; display: block; margin: .8em 0; border: 1px solid #eee; }
ul { padding-left: 1.4em; }
p, li { overflow-wrap: anywhere; }  /* a long path or hash wraps instead of widening the page */
"""


def render_markdown(blocks: list[Block]) -> str:
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Paragraph):
            parts.append(block.text)
        elif isinstance(block, BulletList):
            parts.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, Table):
            rule = ["---:" if numeric else "---" for numeric in block.numeric]
            lines = [block.headers, rule] + block.rows
            parts.append("\n".join("| " + " | ".join(_md_cell(cell) for cell in line) + " |" for line in lines))
        elif isinstance(block, Image):
            alt = _md_cell(block.alt).replace("[", "(").replace("]", ")")
            parts.append(f"![{alt}]({block.path})")
    return "\n\n".join(parts) + "\n"


def render_html(blocks: list[Block], *, title: str) -> str:
    body = []
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{html.escape(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            body.append(f"<p>{html.escape(block.text)}</p>")
        elif isinstance(block, BulletList):
            body.append("<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in block.items) + "</ul>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{html.escape(h)}</th>" for h in block.headers)
            rows = "".join(
                "<tr>" + "".join(
                    f'<td class="num">{html.escape(cell)}</td>' if numeric else f"<td>{html.escape(cell)}</td>"
                    for cell, numeric in zip(row, block.numeric)
                ) + "</tr>"
                for row in block.rows
            )
            # the box, not the page, scrolls a wide or long table; its header row stays in view
            body.append(f'<div class="table-box"><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody>'
                        f'</table></div>')
        elif isinstance(block, Image):
            data = base64.b64encode(block.png).decode("ascii")
            body.append(f'<img src="data:image/png;base64,{data}" alt="{html.escape(block.alt, quote=True)}">')
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<link rel=\"icon\" href=\"data:,\">\n"  # no favicon request, so nothing is ever fetched
        f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def _md_cell(text: str) -> str:
    """Table cells cannot hold raw pipes or newlines."""
    return str(text).replace("|", "\\|").replace("\n", " ")
