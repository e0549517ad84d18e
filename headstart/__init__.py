"""headstart: cached-feature transfer learning for medical images.

Extract frozen-backbone embeddings once into an HDF5 cache, then train and compare heads in seconds.

The Python API (each name is imported on first use, so `import headstart` stays light):
- `run_extract`, `run_heads`, `run_finetune`, `run_compare`, `run_demo`, `run_curve`, `run_screen`, `run_audit`,
  `run_predict`, `run_export`: the commands, as keyword-argument functions; the configs they take and the results
  they return (`ExtractConfig`, `ExtractResult`, `Runs`, `AuditReport`, ...) import from here too;
- `open_cache(path)`: a cache as `.classes`, `.splits`, `.feature_sets` and `.arrays(name, split) -> (X, y, ids)`;
- `load_runs(runs_dir)`: the run records as a list of dataclasses, with `.to_frame()`;
- `headstart.cache.write_features(...)`: a cache from features computed elsewhere;
- `headstart.heads.LogRegHead` and the other heads, `headstart.heads.load_head(run_dir)`;
  `headstart.evaluation.choose_threshold` and `evaluate`.
Errors are the `HeadstartError` family; logging is silent until configured (`logging.basicConfig()`).
"""

import logging

from headstart.lazy import lazy_exports

__version__ = "0.1.0"

# Version of the on-disk cache layout. Readers refuse files with a newer major format.
CACHE_FORMAT_VERSION = 1

# A library stays quiet unless the application configures logging (the CLI does; a notebook may).
logging.getLogger(__name__).addHandler(logging.NullHandler())

_API = "headstart.api"
_EXPORTS = {
    **dict.fromkeys(("run_extract", "run_heads", "run_finetune", "run_compare", "run_demo", "run_curve",
                     "run_screen", "run_audit", "run_predict", "run_export", "open_cache", "load_runs"), _API),
    # The types the `run_*` functions take and return, so `from headstart import ExtractConfig` works.
    "ExtractConfig": "headstart.extract.config", "ExtractResult": "headstart.extract.runner",
    "HeadsConfig": "headstart.heads.runner", "FinetuneConfig": "headstart.finetune.config",
    "SplitConfig": "headstart.data.types", "Runs": "headstart.evaluation.runs",
    "RunRecord": "headstart.evaluation.records", "AuditReport": "headstart.studies.audit",
    "ReportResult": "headstart.evaluation.report.build", "DemoResult": "headstart.demo",
    "CurveResult": "headstart.studies.curve", "ScreenResult": "headstart.studies.screen",
    "PredictResult": "headstart.apply.predict", "ExportResult": "headstart.apply.export",
    **dict.fromkeys(("HeadstartError", "DataError", "CacheError", "CacheMismatchError", "ConfigError",
                     "WeightsError", "TrainingError", "CheckpointError", "ExportError"), "headstart.errors"),
    **{name: f"headstart.{name}" for name in ("apply", "backbones", "cache", "data", "evaluation", "extract",
                                              "finetune", "heads")},
}
__all__ = [name for name in _EXPORTS if not _EXPORTS[name].endswith(f".{name}")]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
