"""`load_runs(RUNS)`: every run record under a folder as a list of `RunRecord`s, and as a table.

`Runs.rows()` flattens each record into one plain dict (identity, selected config, metrics with their intervals,
timing); `Runs.to_frame()` makes a pandas DataFrame of them when pandas is installed.
"""

from __future__ import annotations

import os

from headstart.errors import HeadstartError
from headstart.evaluation.records import RunRecord, read_records

IDENTITY = ("run_id", "strategy", "backbone", "head", "seed", "threshold")
CONFIG_COLUMNS = ("feature_set", "freeze", "select_metric", "selection")  # config keys worth a column when present


class Runs(list):
    """A list of `RunRecord`s (sorted by run id) that can also flatten itself into a table."""

    def rows(self) -> list[dict]:
        return [record_row(record) for record in self]

    def to_frame(self):
        """A pandas DataFrame with one row per run (see `record_row` for the columns)."""
        try:
            import pandas as pd
        except ImportError:
            raise HeadstartError("pandas is not installed; to_frame needs it: pip install pandas "
                                 "(or use Runs.rows(), which returns plain dicts)") from None
        return pd.DataFrame(self.rows())


def load_runs(runs_dir: str | os.PathLike) -> Runs:
    """Every readable `runs_dir/*/record.json` (unreadable ones are skipped with a warning).

    Raises DataError when the folder is missing or holds no record.
    """
    return Runs(read_records(runs_dir))


def record_row(record: RunRecord) -> dict:
    """One flat dict: identity, a few config keys, `<split>_<metric>` with `<split>_<metric>_low/_high` for its
    95% interval (scalar metrics only), then the timing figures."""
    row = {key: getattr(record, key) for key in IDENTITY}
    row.update({key: record.config[key] for key in CONFIG_COLUMNS if key in record.config})
    for split in ("val", "test"):
        for name, value in record.metrics.get(split, {}).items():
            if name.endswith("_ci") and isinstance(value, list) and len(value) == 2:
                row[f"{split}_{name[:-3]}_low"], row[f"{split}_{name[:-3]}_high"] = value
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                row[f"{split}_{name}"] = value
    row.update({key: value for key, value in record.timing.items() if isinstance(value, (int, float, str))
                or value is None})
    return row
