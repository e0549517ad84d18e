"""Raw multi-label codes -> training targets and masks: the uncertainty and blank policies, as pure functions.

The cache stores raw codes (`labelcodes.py`: 1, 0, -1 uncertain, -2 blank), so a policy is chosen when a head or
a fine-tune trains and switching it never re-extracts.

- `--uncertain` (Irvin et al. 2019, CheXpert): `ignore` (U-Ignore: masked out of the loss, the default, as
  torchxrayvision does), `zeros` (U-Zeros: negative), `ones` (U-Ones: positive). `ones:Atelectasis,Edema`
  applies a policy to the named findings only, the others keep the default; several specs apply in order.
- `--blank` for findings a report does not mention: `negative` (the CheXpert paper's reading, and the
  jfhealthcare reimplementation's blank = 0; the default) or `unknown` (torchxrayvision's: masked, except that
  "No Finding" = 1 makes every other finding of that image negative).
- Evaluation never scores an uncertain label, whatever the training policy (the truth is unknown), and applies
  the blank rule: under the default a blank is a scored negative.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from headstart.data.labelcodes import BLANK, NEGATIVE, POSITIVE, UNCERTAIN
from headstart.errors import ConfigError

UNCERTAIN_POLICIES = ("ignore", "zeros", "ones")
BLANK_RULES = ("negative", "unknown")
NO_FINDING = "no finding"


@dataclass(frozen=True)
class LabelPolicy:
    """One uncertainty policy per finding (in the cache's column order) and the blank rule."""

    uncertain: tuple[str, ...]  # "ignore" | "zeros" | "ones", one per finding
    blank: str = "negative"  # "negative" | "unknown"

    def describe(self, names: Sequence[str]) -> dict:
        """JSON-able, for the record and `compare`: the default and the findings that differ from it."""
        default = max(set(self.uncertain), key=self.uncertain.count)
        return {"uncertain": default, "blank": self.blank,
                "uncertain_per_label": {n: p for n, p in zip(names, self.uncertain) if p != default}}


def parse_policy(uncertain: str | Sequence[str], blank: str, names: Sequence[str]) -> LabelPolicy:
    """`--uncertain` spec(s) and `--blank` -> a LabelPolicy over `names`; one ConfigError line on a bad value.

    A spec is a policy (`zeros`: every finding) or `POLICY:A,B` (the named findings); specs apply in order,
    starting from `ignore`. Names match exactly, else case-insensitively.
    """
    specs = [uncertain] if isinstance(uncertain, str) else list(uncertain)
    if blank not in BLANK_RULES:
        raise ConfigError(f"--blank {blank!r} is invalid; expected {' or '.join(BLANK_RULES)}")
    per_label = ["ignore"] * len(names)
    for spec in specs:
        policy, sep, listed = spec.partition(":")
        policy = policy.strip().lower()
        if policy not in UNCERTAIN_POLICIES:
            raise ConfigError(f"--uncertain {spec!r}: {policy!r} is not a policy; expected one of "
                              f"{', '.join(UNCERTAIN_POLICIES)}, optionally as POLICY:FINDING,FINDING")
        if not sep:
            per_label = [policy] * len(names)
            continue
        targets = [t.strip() for t in listed.split(",") if t.strip()]
        if not targets:
            raise ConfigError(f"--uncertain {spec!r} names no finding; expected e.g. ones:Atelectasis,Edema")
        for target in targets:
            per_label[_find(target, names, spec)] = policy
    return LabelPolicy(uncertain=tuple(per_label), blank=blank)


def _find(target: str, names: Sequence[str], spec: str) -> int:
    if target in names:
        return list(names).index(target)
    lowered = [n.lower() for n in names]
    if target.lower() in lowered:
        return lowered.index(target.lower())
    raise ConfigError(f"--uncertain {spec!r}: {target!r} is not a finding of this cache; expected some of "
                      f"{', '.join(names)}")


def training_targets(raw: np.ndarray, policy: LabelPolicy, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(targets float32 (N, L) in {0, 1}, mask bool (N, L)): what a masked loss trains on.

    Masked cells have target 0 and must not enter the loss, a metric or a threshold.
    """
    raw = _check(raw, names, policy)
    targets = (raw == POSITIVE).astype(np.float32)
    mask = (raw == POSITIVE) | (raw == NEGATIVE)
    for j, rule in enumerate(policy.uncertain):
        uncertain = raw[:, j] == UNCERTAIN
        if rule != "ignore":
            mask[uncertain, j] = True
            targets[uncertain, j] = 1.0 if rule == "ones" else 0.0
    _apply_blank(raw, targets, mask, policy.blank, names)
    return targets, mask


def evaluation_targets(raw: np.ndarray, blank: str, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(truth int8 (N, L) in {0, 1}, mask bool (N, L)) for metrics: uncertain never scored, blanks by the rule."""
    raw = _check(raw, names, None)
    if blank not in BLANK_RULES:
        raise ConfigError(f"--blank {blank!r} is invalid; expected {' or '.join(BLANK_RULES)}")
    truth = (raw == POSITIVE).astype(np.float32)
    mask = (raw == POSITIVE) | (raw == NEGATIVE)
    _apply_blank(raw, truth, mask, blank, names)
    return truth.astype(np.int8), mask


def masked_counts(mask: np.ndarray, names: Sequence[str]) -> dict[str, int]:
    """How many labels of each finding a mask leaves out, for the record."""
    return {name: int(n) for name, n in zip(names, (~np.asarray(mask, dtype=bool)).sum(axis=0))}


def _apply_blank(raw: np.ndarray, targets: np.ndarray, mask: np.ndarray, blank: str, names: Sequence[str]) -> None:
    is_blank = raw == BLANK
    if blank == "negative":
        mask[is_blank] = True  # targets are already 0 there
        return
    # unknown: masked, except torchxrayvision's rule that "No Finding" = 1 makes the other findings negative.
    lowered = [n.lower() for n in names]
    if NO_FINDING in lowered:
        j = lowered.index(NO_FINDING)
        normal = raw[:, j] == POSITIVE
        cleared = is_blank & normal[:, None]
        cleared[:, j] = False
        mask[cleared] = True


def _check(raw: np.ndarray, names: Sequence[str], policy: LabelPolicy | None) -> np.ndarray:
    raw = np.asarray(raw)
    if raw.ndim != 2 or raw.shape[1] != len(names):
        raise ValueError(f"raw labels {raw.shape} do not have one column per finding ({len(names)})")
    if policy is not None and len(policy.uncertain) != len(names):
        raise ValueError(f"policy covers {len(policy.uncertain)} findings, labels have {len(names)}")
    return raw


def policy_variant(policy: dict | None) -> str | None:
    """The run-id part that keeps runs under another label policy apart from the default one (U-Ignore, blank
    negative, which adds nothing), e.g. `u-ones`, `u-ignore-ones-Edema` (make_run_id turns + into -), `blank-unknown`."""
    if not policy:
        return None
    parts = []
    per_label = policy.get("uncertain_per_label") or {}
    if policy.get("uncertain") != "ignore" or per_label:
        parts.append("u-" + "+".join([policy["uncertain"]] + [f"{rule}-{name}" for name, rule in
                                                               sorted(per_label.items())]))
    if policy.get("blank") != "negative":
        parts.append(f"blank-{policy['blank']}")
    return "-".join(parts) or None
