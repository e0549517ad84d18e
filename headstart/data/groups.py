"""Patient ids from file names, so that carved splits can keep a patient's images together.

Several images of one patient in both train and test inflate every metric. The Kaggle chest X-ray set names
its files after patients; other sets can pass `--group-pattern` or a manifest `group` column.
"""

from __future__ import annotations

import re

from headstart.errors import ConfigError

# Kaggle chest X-ray names: person123_bacteria_45 / person7_virus_2, IM-0117-0001 (and IM-0629-0001-0002),
# NORMAL2-IM-1427-0001.
KAGGLE_PATTERNS = (
    re.compile(r"^(person\d+)_(?:bacteria|virus)_\d+"),
    re.compile(r"^((?:NORMAL2-)?IM-\d+)-\d+"),
)


def compile_group_pattern(pattern: str | None) -> re.Pattern[str] | None:
    """Compile a user's `--group-pattern`; a bad regex is a usage error."""
    if pattern is None or pattern == "":
        return None
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ConfigError(
            f"--group-pattern {pattern!r} is not a valid regular expression ({exc}); "
            r"expected e.g. '^(patient\d+)_' whose first group is the patient id"
        ) from None


def group_from_name(stem: str, *, pattern: re.Pattern[str] | None = None) -> str:
    """The patient id in a file stem, or "" when unknown (the image then forms its own group).

    With `pattern`, its first capture group (or the whole match) is the id and the Kaggle rules are not
    tried: a user who gives a pattern means it.
    """
    patterns = (pattern,) if pattern is not None else KAGGLE_PATTERNS
    for pat in patterns:
        match = pat.search(stem)
        if match:
            return match.group(1) if pat.groups else match.group(0)
    return ""
