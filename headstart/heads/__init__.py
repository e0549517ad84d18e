"""Stage two: heads on cached features, as scikit-learn-shaped estimators, and the sweep that selects them.

`from headstart.heads import LogRegHead, LinearHead, MLPHead, KNNHead` works; each is imported on first use,
so `headstart heads --help` need not load torch. `load_head(run_dir)` reads a saved head back (heads.persist).
Each head kind is a `HeadKind` (heads.protocol) named in `heads.registry`; `register(MyKind)` adds one.
"""

from headstart.lazy import lazy_exports

# The built-in head kinds (heads.registry maps each to its HeadKind) and the named sweep grids, free of imports
# so `headstart heads --help` need not load torch.
HEADS = ("logreg", "linear", "mlp", "knn")
SWEEP_NAMES = ("quick", "default")  # heads.sweep.SWEEPS holds one grid per name, built from this tuple

_EXPORTS = {
    "LogRegHead": "headstart.heads.logreg",
    "LinearHead": "headstart.heads.torch_heads",
    "MLPHead": "headstart.heads.torch_heads",
    "KNNHead": "headstart.heads.knn",
    "HeadKind": "headstart.heads.protocol",
    "register": "headstart.heads.registry",
    "get_head": "headstart.heads.registry",
    "load_head": "headstart.heads.persist",
    "save_head": "headstart.heads.persist",
}
__all__ = ["HEADS", *_EXPORTS]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
