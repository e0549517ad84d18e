"""Label codes and the uncertainty / blank policies, as tables."""

from __future__ import annotations

import numpy as np
import pytest

from headstart.data.label_policy import (LabelPolicy, evaluation_targets, masked_counts, parse_policy,
                                         training_targets)
from headstart.data.labelcodes import parse_code
from headstart.errors import ConfigError

P, N, U, B = 1, 0, -1, -2
NAMES = ["A", "B", "C"]
RAW = np.array([[P, N, U], [U, B, P], [B, U, N]], dtype=np.int8)


@pytest.mark.parametrize("text, code", [
    ("1", P), ("1.0", P), (" True ", P), ("yes", P), ("0", N), ("0.0", N), ("false", N), ("-1", U), ("-1.0", U),
    ("", B), ("  ", B), ("nan", B), ("NaN", B), ("NA", B), ("2", None), ("0.5", None), ("positive-ish", None),
])
def test_parse_code(text, code):
    assert parse_code(text) == code


# (uncertain spec, blank) -> expected (targets, mask) of RAW
CASES = [
    ("ignore", "negative", [[1, 0, 0], [0, 0, 1], [0, 0, 0]], [[1, 1, 0], [0, 1, 1], [1, 0, 1]]),
    ("zeros", "negative", [[1, 0, 0], [0, 0, 1], [0, 0, 0]], [[1, 1, 1], [1, 1, 1], [1, 1, 1]]),
    ("ones", "negative", [[1, 0, 1], [1, 0, 1], [0, 1, 0]], [[1, 1, 1], [1, 1, 1], [1, 1, 1]]),
    ("ignore", "unknown", [[1, 0, 0], [0, 0, 1], [0, 0, 0]], [[1, 1, 0], [0, 0, 1], [0, 0, 1]]),
    ("ones:A,C", "unknown", [[1, 0, 1], [1, 0, 1], [0, 0, 0]], [[1, 1, 1], [1, 0, 1], [0, 0, 1]]),
    (["zeros", "ones:b"], "negative", [[1, 0, 0], [0, 0, 1], [0, 1, 0]], [[1, 1, 1], [1, 1, 1], [1, 1, 1]]),
]


@pytest.mark.parametrize("uncertain, blank, targets, mask", CASES)
def test_training_targets_table(uncertain, blank, targets, mask):
    policy = parse_policy(uncertain, blank, NAMES)
    got_t, got_m = training_targets(RAW, policy, NAMES)
    assert got_t.dtype == np.float32 and got_m.dtype == bool
    assert got_t.tolist() == targets and got_m.astype(int).tolist() == mask


@pytest.mark.parametrize("blank, mask", [("negative", [[1, 1, 0], [0, 1, 1], [1, 0, 1]]),
                                         ("unknown", [[1, 1, 0], [0, 0, 1], [0, 0, 1]])])
def test_evaluation_never_scores_uncertain_and_applies_blank_rule(blank, mask):
    truth, got = evaluation_targets(RAW, blank, NAMES)
    assert got.astype(int).tolist() == mask
    assert truth.tolist() == [[1, 0, 0], [0, 0, 1], [0, 0, 0]]
    assert masked_counts(got, NAMES) == dict(zip(NAMES, (3 - np.array(mask).sum(axis=0)).tolist()))


def test_no_finding_positive_clears_blanks_under_unknown():
    names = ["No Finding", "Edema", "Mass"]
    raw = np.array([[P, B, U], [B, B, P]], dtype=np.int8)
    _, mask = training_targets(raw, parse_policy("ignore", "unknown", names), names)
    assert mask.astype(int).tolist() == [[1, 1, 0], [0, 0, 1]]  # the blank Edema of a normal image is a negative


@pytest.mark.parametrize("uncertain, blank, message", [
    ("maybe", "negative", "'maybe' is not a policy"),
    ("ones:Z", "negative", "'Z' is not a finding of this cache; expected some of A, B, C"),
    ("ones:", "negative", "names no finding"),
    ("ignore", "nan", "--blank 'nan' is invalid"),
])
def test_policy_errors_are_one_line(uncertain, blank, message):
    with pytest.raises(ConfigError) as err:
        parse_policy(uncertain, blank, NAMES)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_describe_names_the_exceptions():
    policy = parse_policy(["ignore", "ones:B"], "negative", NAMES)
    assert policy == LabelPolicy(uncertain=("ignore", "ones", "ignore"), blank="negative")
    assert policy.describe(NAMES) == {"uncertain": "ignore", "blank": "negative", "uncertain_per_label": {"B": "ones"}}
