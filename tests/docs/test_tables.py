"""Every Markdown table in the README and the docs renders: a header, a separator, rows as wide as the header."""

import re

import pytest

from tests.docs.markdown import ROOT, markdown_files, table_cells, tables

SEPARATOR = re.compile(r"^:?-{3,}:?$")
PAGES = markdown_files()


def table_problems(lines: list[str]) -> list[str]:
    """What is wrong with one table (its lines, each starting with `|`); empty when it renders."""
    if len(lines) < 2:
        return ["a header with no separator line"]
    header, separator = table_cells(lines[0]), table_cells(lines[1])
    problems = []
    if not all(SEPARATOR.match(cell.replace(" ", "")) for cell in separator):
        problems.append(f"second line is not a separator: {lines[1]!r}")
    if len(separator) != len(header):
        problems.append(f"separator has {len(separator)} cells, header {len(header)}")
    problems += [f"row {n} has {len(table_cells(row))} cells, header {len(header)}: {row[:60]!r}"
                 for n, row in enumerate(lines[2:], 3) if len(table_cells(row)) != len(header)]
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_table_has_a_header_a_separator_and_even_rows(page):
    found = {start: table_problems(lines) for start, lines in tables(page)}
    assert {start: problems for start, problems in found.items() if problems} == {}


def test_the_checker_catches_what_broke_the_old_readme():
    good = ["| a | b |", "|---|---:|", "| `x\\|y` | 2 |"]
    assert table_problems(good) == []
    assert table_problems(["| a | b |", "- a bullet |", "| 1 | 2 |"])  # text between header and rows
    assert table_problems(["| a | b |", "|---|---|", "| 1 | 2 | 3 |"])  # a row too wide
    assert table_problems(["| a | b |", "|---|---|", "| `x|y` | 2 |"])  # an unescaped pipe in code splits
    assert table_problems(["| a | b |"])  # no separator
