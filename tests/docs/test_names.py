"""Every `headstart.X` name and every `from headstart... import N` in the README and the docs imports."""

import importlib
import re

import pytest

from tests.docs.markdown import ROOT, markdown_files

DOTTED = re.compile(r"(?<![\w/.-])headstart(?:\.[A-Za-z_]\w*)+(?![\w*])")
FROM_IMPORT = re.compile(r"from (headstart(?:\.\w+)*) import ([\w, ()]+)")


def resolve(dotted: str) -> object:
    """The object a dotted name names: the longest importable module, then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            value = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            value = getattr(value, attribute)
        return value
    raise ModuleNotFoundError(dotted)


def documented_names() -> set[str]:
    names = set()
    for page in markdown_files():
        text = page.read_text()
        names |= {match.rstrip(".") for match in DOTTED.findall(text)}
        for module, imported in FROM_IMPORT.findall(text):
            names |= {f"{module}.{name.strip()}" for name in imported.strip("()").split(",") if name.strip()}
    return names


NAMES = sorted(documented_names())


def test_the_docs_name_the_public_api():
    assert {"headstart.run_audit", "headstart.ExtractConfig", "headstart.AuditReport"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_documented_name_imports(name):
    try:
        assert resolve(name) is not None
    except (ImportError, AttributeError) as error:
        pytest.fail(f"{name} is in the docs but does not import: {error}")
