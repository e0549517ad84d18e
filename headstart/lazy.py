"""PEP 562 lazy exports: a package names its public objects, and each module is imported on first use.

This keeps `import headstart` and `headstart --help` free of torch, numpy and h5py while `headstart.run_heads`,
`headstart.heads.LogRegHead` and the like still work as plain attributes (and in tab completion).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping


def lazy_exports(package: str, exports: Mapping[str, str],
                 namespace: dict) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The module-level `__getattr__` and `__dir__` of `package`; `exports` maps a public name to its module.

    A name mapped to `package.name` itself is a subpackage and resolves to that module.
    """

    def __getattr__(name: str) -> object:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        imported = importlib.import_module(module)
        value = imported if module == f"{package}.{name}" else getattr(imported, name)
        namespace[name] = value  # later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
