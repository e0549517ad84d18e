"""How DATA is read: the reader options shared by every command that lists images (extract, finetune, screen).

Plain data with one check, so the readers never see a click namespace. The defaults read every known layout as
it is; the column options let a foreign CSV (MIMIC's, a hospital's) be read without rewriting it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from headstart.errors import ConfigError

PROJECTIONS = ("all", "frontal", "lateral")
SOURCE_OPTIONS = ("labels", "label_column", "label_sep", "path_column", "group_column", "split_column",
                  "projection", "allow_missing")


@dataclass
class SourceOptions:
    labels: list[str] = field(default_factory=list)  # CSV columns, one finding each (multi-label)
    label_column: str | None = None  # the one label column (default `label`); with label_sep: findings in one cell
    label_sep: str | None = None  # separator inside label_column, e.g. "|" (NIH's `Finding Labels`)
    path_column: str | None = None  # default `path`
    group_column: str | None = None  # patient id column; default `group`
    split_column: str | None = None  # default `split`
    projection: str = "all"  # CheXpert: frontal | lateral | all, from its `Frontal/Lateral` column
    allow_missing: bool = False  # rows whose image is absent: one warning with the count instead of an error

    @property
    def custom_columns(self) -> bool:
        """Whether a CSV must be read with the generic column reader rather than detected by its layout."""
        return bool(self.labels or self.label_column or self.label_sep or self.path_column or self.group_column
                    or self.split_column)

    def validate(self) -> None:
        if self.projection not in PROJECTIONS:
            raise ConfigError(f"--projection {self.projection!r} is invalid; expected one of {', '.join(PROJECTIONS)}")
        if self.labels and (self.label_column or self.label_sep):
            raise ConfigError("--labels names one column per finding and --label-column/--label-sep one column of "
                              "joined findings; give one form, not both")
        if self.label_sep == "":
            raise ConfigError("--label-sep is empty; expected a separator such as '|'")
        if len(set(self.labels)) != len(self.labels):
            raise ConfigError(f"--labels repeats a name in {','.join(self.labels)}; give each column once")
        if len(self.labels) == 1:
            raise ConfigError(f"--labels {self.labels[0]} names one column; a single label column is "
                              f"--label-column {self.labels[0]} (binary or multi-class)")
