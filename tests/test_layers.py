"""The import graph keeps its layers: data flows one way, so no arrow may run back up.

The graph is read from the source with `ast` (nothing is imported), counting every `import` in a module: at the
top, inside functions (lazy imports are still dependencies) and under `if TYPE_CHECKING:`. Importing a submodule
is not counted as importing its parent package's `__init__` (Python runs it, but it is not a dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "headstart"
STAGE_ONE = ("headstart.data", "headstart.backbones", "headstart.extract", "headstart.cache")
EVALUATION = "headstart.evaluation"


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str], root: Path = PACKAGE) -> set[str]:
    """The headstart modules `path` imports, each resolved to a module file (not an attribute of one)."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: strip level-1 trailing parts of the package
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            submodules = {f"{base}.{alias.name}" for alias in node.names} & modules
            targets.update(submodules)
            if len(submodules) < len(node.names):  # some names are attributes of `base` itself
                targets.add(base)
    found = set()
    for target in targets:
        while target and target not in modules:  # `headstart.x.func` -> `headstart.x`
            target = target.rpartition(".")[0]
        if target.startswith("headstart") and target != name:
            found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imported_modules(p, modules) for p in paths}


def reachable(graph: dict[str, set[str]], start: str) -> dict[str, str]:
    """Every module `start` imports directly or through others -> the module that imports it on the way."""
    via: dict[str, str] = {}
    todo = [start]
    while todo:
        current = todo.pop()
        for target in graph.get(current, ()):
            if target not in via and target != start:
                via[target] = current
                todo.append(target)
    return via


def chain(via: dict[str, str], start: str, end: str) -> str:
    steps = [end]
    while steps[-1] != start:
        steps.append(via[steps[-1]])
    return " -> ".join(reversed(steps))


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    found = import_graph()
    assert len(found) > 50 and "headstart.extract.runner" in found  # the walk saw the package
    return found


def test_the_graph_reader_sees_each_kind_of_import(tmp_path):
    """The reader itself: absolute, from-imports of modules and of names, relative and lazy imports."""
    modules = {"headstart", "headstart.a", "headstart.b", "headstart.c", "headstart.d", "headstart.e"}
    source = tmp_path / "headstart" / "a.py"
    source.parent.mkdir()
    source.write_text("import headstart.b\nfrom headstart import c\nfrom .d import thing\n"
                      "def f():\n    from headstart.e import g\nimport os\n")
    found = imported_modules(source, modules, root=tmp_path / "headstart")
    assert found == {"headstart.b", "headstart.c", "headstart.d", "headstart.e"}


def test_stage_one_never_reaches_evaluation(graph):
    """data/, backbones/, extract/ and cache/ must not import `headstart.evaluation`, directly or through others."""
    problems = []
    for module in sorted(graph):
        if module.startswith(STAGE_ONE):
            via = reachable(graph, module)
            reached = sorted(m for m in via if m == EVALUATION or m.startswith(EVALUATION + "."))
            if reached:
                problems.append(chain(via, module, reached[0]))
    assert not problems, "stage one imports evaluation:\n" + "\n".join(problems)


def test_no_import_cycles(graph):
    """No two modules import each other, not even through a longer loop."""
    cycles = []
    for module in sorted(graph):
        for target in sorted(graph[module]):
            back = reachable(graph, target)
            if module in back:
                cycles.append(f"{module} -> {chain(back, target, module)}")
                break
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_evaluation_never_reaches_studies(graph):
    """studies/ sit above evaluation: the report embeds an audit from its JSON document, never by importing it."""
    problems = []
    for module in sorted(graph):
        if module.startswith(EVALUATION):
            via = reachable(graph, module)
            reached = sorted(m for m in via if m.startswith("headstart.studies"))
            if reached:
                problems.append(chain(via, module, reached[0]))
    assert not problems, "evaluation imports studies:\n" + "\n".join(problems)


def test_apply_sits_above_the_stages(graph):
    """apply/ (predict, export) imports heads, finetune, extract and evaluation; none of them reaches back into it.

    Only the public API, the CLI and apply itself may import `headstart.apply`.
    """
    above = ("headstart.apply", "headstart.api", "headstart.cli")
    problems = []
    for module in sorted(graph):
        if module.startswith(above):
            continue
        via = reachable(graph, module)
        reached = sorted(m for m in via if m == "headstart.apply" or m.startswith("headstart.apply."))
        if reached:
            problems.append(chain(via, module, reached[0]))
    assert not problems, "a stage imports apply:\n" + "\n".join(problems)
