"""The head registry: a head kind's name -> the `HeadKind` that knows everything about it.

Built-in kinds are named here by module path and imported on first use, so listing them loads neither torch nor
scikit-learn. Adding a head is one module holding a `HeadKind` subclass plus one line in `_BUILTIN` (or, from
outside the package, one `register(...)` call). Nothing else in headstart dispatches on a head's name.
"""

from __future__ import annotations

import importlib

from headstart.errors import ConfigError
from headstart.heads import HEADS
from headstart.heads.protocol import HeadKind

# name -> "module:class"; the order is the CLI's and a heads run's default order (heads.HEADS names the same)
_BUILTIN = {
    "logreg": "headstart.heads.logreg:LogRegKind",
    "linear": "headstart.heads.torch_heads:LinearKind",
    "mlp": "headstart.heads.torch_heads:MLPKind",
    "knn": "headstart.heads.knn:KNNKind",
}
_KINDS: dict[str, HeadKind] = {}  # the kinds imported so far, and those `register` added


def register(kind: HeadKind | type[HeadKind]) -> HeadKind:
    """Add a head kind (an instance or a class); its `name` becomes a valid head everywhere. Returns it."""
    kind = kind() if isinstance(kind, type) else kind
    if not isinstance(kind, HeadKind) or not getattr(kind, "name", ""):
        raise ConfigError(f"{kind!r} is not a head kind; expected a named HeadKind subclass")
    if kind.name in _BUILTIN:
        raise ConfigError(f"head {kind.name!r} is built in; give the new kind another name")
    _KINDS[kind.name] = kind
    return kind


def unregister(name: str) -> None:
    """Drop a kind `register` added (tests use it to leave the registry as they found it)."""
    if name not in _BUILTIN:
        _KINDS.pop(name, None)


def names() -> tuple[str, ...]:
    """Every head name: the built-in ones, then the registered ones."""
    return (*HEADS, *(n for n in _KINDS if n not in _BUILTIN))


def get_head(name: str) -> HeadKind:
    """The kind called `name`; ConfigError naming the known heads for any other name."""
    kind = _KINDS.get(name)
    if kind is None:
        path = _BUILTIN.get(name)
        if path is None:
            raise ConfigError(f"unknown head {name!r}; expected one of {', '.join(names())}")
        module, _, attr = path.partition(":")
        kind = _KINDS[name] = getattr(importlib.import_module(module), attr)()
    return kind


def kind_of(estimator: object) -> HeadKind:
    """The kind whose estimator class is exactly `type(estimator)` (MLPHead subclasses LinearHead, so an exact
    match, not isinstance, tells them apart)."""
    for name in names():
        kind = get_head(name)
        if type(estimator) is kind.estimator:
            return kind
    raise TypeError(f"{type(estimator).__name__} is not a headstart head; expected the estimator of one of "
                    f"{', '.join(names())}")
