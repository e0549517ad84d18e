"""Test-set power: how precisely the current test split measures a model, and what difference it can resolve.

Interval half-widths come from the same stratified bootstrap every run record uses. The smallest detectable
AUROC difference is simulated from the reference head's observed test scores:
1. the scores become normal scores (their ranks through the probit), model A;
2. a second model B = rho * A + sqrt(1 - rho^2) * noise + s * label, with `s` tuned (on a large replicate) so that
   B's expected AUROC differs from A's by `delta`; rho (default 0.8) is the assumed correlation of two models'
   scores. B is worse than A when A sits nearer 1 than 0.5 (there is more room below), better otherwise;
3. each simulated test set is a stratified resample of the test split, scored by the paired DeLong test;
4. power(delta) = share of simulated test sets with p < 0.05 and the difference in the simulated direction; the
   smallest delta with power >= 0.8 is found by bisection (power grows with delta).
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from scipy.stats import rankdata

from headstart.evaluation.bootstrap import bootstrap_ci, stratified_indices
from headstart.evaluation.metrics import batch_auroc_auprc
from headstart.evaluation.paired import delong_test
from headstart.studies.audit.config import AuditConfig
from headstart.studies.audit.inputs import AuditInputs
from headstart.studies.audit.reference import Reference
from headstart.studies.audit.result import CheckResult, skipped

NAME = "test_power"
TARGET_POWER = 0.8
ALPHA = 0.05
BISECTION_STEPS = 8  # resolution (1 - AUROC) / 256: finer than the simulation noise
CALIBRATION_ROWS = 50_000  # replicate size on which B's shift is tuned to hit its target AUROC (+-0.002)
SHIFT_GRID = 64  # shifts scored in one batch; linear interpolation between them
MAX_USEFUL_MDD = 0.05  # flag a test split that cannot resolve differences this large


def test_power(inputs: AuditInputs, reference: Reference | str, config: AuditConfig) -> CheckResult:
    """Half-widths of the test AUROC and accuracy intervals, and the smallest AUROC difference a paired DeLong
    test detects with 80% power."""
    empty = {"auroc_half_width": None, "accuracy_half_width": None, "min_detectable_auroc_diff": None}
    if isinstance(reference, str):
        return skipped(NAME, reference, **empty)
    if len(inputs.classes) != 2:
        return skipped(NAME, f"the paired DeLong test needs a binary task; this cache has {len(inputs.classes)} "
                             "classes", **empty)
    y = inputs.labels[reference.test]
    proba = reference.test_proba
    ci = bootstrap_ci(y, proba, threshold=reference.threshold, metrics=("auroc", "accuracy"), n_boot=config.n_boot,
                      seed=config.seed)
    half = {k: (v[1] - v[0]) / 2.0 for k, v in ci.items()}
    mdd = min_detectable_difference(y, proba[:, 1], rho=config.power_rho, sims=config.power_sims, seed=config.seed)
    n_pos = int(y.sum())
    size = f"test set of {len(y)} ({len(y) - n_pos} {inputs.classes[0]} / {n_pos} {inputs.classes[1]})"
    if mdd is None:
        detect = (f"no AUROC difference reaches 80% power at this size (reference AUROC {reference.test_auroc:.3f}); "
                  "this test set cannot rank models")
    else:
        detect = f"a paired DeLong test detects an AUROC difference of {mdd:.3f} with 80% power"
    message = (f"{size}: AUROC +-{half['auroc']:.3f}, accuracy +-{half['accuracy']:.3f}; {detect} "
               f"(assumed score correlation {config.power_rho:g})")
    flagged = mdd is None or mdd > MAX_USEFUL_MDD
    data = {"n_test": int(len(y)), "auroc_half_width": half["auroc"], "accuracy_half_width": half["accuracy"],
            "auroc_ci": ci["auroc"], "accuracy_ci": ci["accuracy"], "reference_auroc": reference.test_auroc,
            "min_detectable_auroc_diff": mdd, "power": TARGET_POWER, "alpha": ALPHA, "rho": config.power_rho,
            "sims": config.power_sims}
    return CheckResult(NAME, bool(flagged), message, data)


def min_detectable_difference(y: np.ndarray, scores: np.ndarray, *, rho: float, sims: int,
                              seed: int) -> float | None:
    """Smallest AUROC gain with power >= 0.8 at alpha 0.05 (see the module docstring); None if none reaches it."""
    y = np.asarray(y, dtype=np.int64)
    z = stats.norm.ppf((rankdata(scores) - 0.5) / len(scores))
    base = float(batch_auroc_auprc(y == 1, z[None])[0][0])
    sign = -1.0 if base - 0.5 > 1.0 - base else 1.0  # simulate a worse model B when there is more room below
    room = (base - 0.5 if sign < 0 else 1.0 - base) - 1e-3
    if room <= 0:
        return None
    rng = np.random.default_rng(seed)
    idx = stratified_indices(y, n_boot=sims, rng=rng)  # the same simulated test sets for every delta
    noise = rng.standard_normal(idx.shape)
    curve_auroc, curve_shift = _shift_curve(z, y, rho=rho, seed=seed)

    def power(delta: float) -> float:
        shift = float(np.interp(base + sign * delta, curve_auroc, curve_shift))
        y_sim = y[idx[0]]
        hits = 0
        for b in range(sims):
            a = z[idx[b]]
            other = rho * a + np.sqrt(1.0 - rho * rho) * noise[b] + shift * y_sim
            result = delong_test(y_sim, other, a)
            hits += bool(result["p_value"] < ALPHA and sign * result["diff"] > 0)
        return hits / sims

    if power(room) < TARGET_POWER:
        return None
    low, high = 0.0, room
    for _ in range(BISECTION_STEPS):
        mid = (low + high) / 2.0
        low, high = (low, mid) if power(mid) >= TARGET_POWER else (mid, high)
    return round(high, 4)


def _shift_curve(z: np.ndarray, y: np.ndarray, *, rho: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Expected AUROC of B = rho*z + sqrt(1-rho^2)*e + s*y on a grid of shifts s, from one large replicate
    (all shifts scored in one batch); `np.interp(target, auroc, shifts)` inverts it (AUROC rises with s)."""
    reps = max(1, CALIBRATION_ROWS // len(z))
    rng = np.random.default_rng(seed + 7)
    zz, yy = np.tile(z, reps), np.tile(y, reps) == 1
    base = rho * zz + np.sqrt(1.0 - rho * rho) * rng.standard_normal(zz.size)
    shifts = np.concatenate([np.linspace(-3.0, 3.0, SHIFT_GRID - 8), np.linspace(3.5, 10.0, 8)])
    values = batch_auroc_auprc(yy, base[None, :] + shifts[:, None] * yy[None, :])[0]
    return np.maximum.accumulate(values), shifts
