"""Raw multi-label values: the four codes a cache stores, and the one parser for their many text forms.

The cache keeps what the labeller wrote, not a training target, so that an uncertainty policy
(`label_policy.py`) can be switched per head or fine-tune without re-extracting:

| code | meaning | written as |
|---:|---|---|
|  1 | positive | `1`, `1.0`, `True`, `yes`, `pos` |
|  0 | negative | `0`, `0.0`, `False`, `no`, `neg` |
| -1 | uncertain (CheXpert's `-1.0`) | `-1`, `-1.0`, `uncertain` |
| -2 | blank: not mentioned | empty cell, `nan`, `NA`, `None` |

Stored as int8 in the cache's `/samples/labels` (N, L).
"""

from __future__ import annotations

import numpy as np

from headstart.errors import DataError

POSITIVE, NEGATIVE, UNCERTAIN, BLANK = 1, 0, -1, -2
CODES = (POSITIVE, NEGATIVE, UNCERTAIN, BLANK)
CODE_NAMES = {POSITIVE: "positive", NEGATIVE: "negative", UNCERTAIN: "uncertain", BLANK: "blank"}
LABEL_DTYPE = np.int8

_TEXT = {
    **{t: POSITIVE for t in ("1", "1.0", "1.", "+1", "+1.0", "true", "yes", "y", "pos", "positive")},
    **{t: NEGATIVE for t in ("0", "0.0", "0.", "-0", "-0.0", "false", "no", "n", "neg", "negative")},
    **{t: UNCERTAIN for t in ("-1", "-1.0", "-1.", "uncertain", "u")},
    **{t: BLANK for t in ("", "nan", "na", "n/a", "none", "null", "blank")},
}
EXPECTED_VALUES = "expected 1, 0, -1 (uncertain) or blank (also written 1.0, -1.0, True, False...)"


def parse_code(text: str) -> int | None:
    """The code of one cell's text, or None when it is not a label value."""
    return _TEXT.get(text.strip().lower())


def parse_cell(text: str, *, where: str, column: str) -> int:
    """The code of one cell; a value that is not 1/0/-1/blank is one DataError naming file, row and column."""
    code = parse_code(text)
    if code is None:
        raise DataError(f"{where}, column {column!r}: value {text.strip()!r} is not a label; {EXPECTED_VALUES}")
    return code


def codes_from_array(raw: np.ndarray, *, where: str, names: list[str]) -> np.ndarray:
    """An (N, L) numeric label array (an .npz, an API caller's) -> int8 codes; NaN is blank.

    Any other value than 1/0/-1/NaN (or -2, the blank code itself) is one DataError naming the first bad cell.
    """
    values = np.asarray(raw, dtype=np.float64)
    blank = np.isnan(values)
    ok = blank | np.isin(values, CODES)
    if not ok.all():
        row, col = (int(i) for i in np.argwhere(~ok)[0])
        raise DataError(f"{where}: row {row}, column {names[col]!r} holds {float(values[row, col])!r}; {EXPECTED_VALUES}")
    codes = np.where(blank, BLANK, values).astype(LABEL_DTYPE)
    return codes
