"""The README and the docs speak of the user's world: no project history, no paths outside the repository."""

import re

import pytest

from tests.docs.markdown import ROOT, markdown_files

FORBIDDEN = re.compile(r"\bthis session\b|\bsessions?'s?\b|\bissue \d+|\bthis round\b|round's changes|\.\./shared|"
                       r"/work/|DESIGN\.md", re.IGNORECASE)


@pytest.mark.parametrize("page", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_project_history_or_outside_paths(page):
    found = [(n, m.group(0)) for n, line in enumerate(page.read_text().splitlines(), 1)
             for m in [FORBIDDEN.search(line)] if m]
    assert found == []
