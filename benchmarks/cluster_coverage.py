"""Coverage of the 95% AUROC interval when patients hold several correlated images, and the size of the paired
DeLong test under the null: patient-clustered (what headstart records where groups are known) against
image-level (what it recorded before). Prints coverage / rejection rates measured side by side in one run.

Each data set: P patients (half positive) with 1-5 images each; an image's score is label + the patient's
effect (sd 1) + its own noise (sd 0.5), so the true AUROC over images of independent patients is
Phi(1 / sqrt(2 * 1.25)) = 0.673. Usage: python benchmarks/cluster_coverage.py [--trials 2000] [--patients 120]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.stats import norm

from headstart.evaluation.bootstrap import bootstrap_ci
from headstart.evaluation.paired import delong_test


def patients(rng: np.random.Generator, n: int, *, models: int = 1):
    label = np.repeat([0, 1], n // 2)
    patient = np.repeat(np.arange(n), rng.integers(1, 6, n))
    y = label[patient]
    scores = [y + rng.normal(0, 1, n)[patient] + rng.normal(0, 0.5, patient.size) for _ in range(models)]
    return y, scores, np.array([f"p{i}" for i in patient])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--patients", type=int, default=120)
    parser.add_argument("--n-boot", type=int, default=500)
    args = parser.parse_args()
    truth = norm.cdf(1.0 / np.sqrt(2 * 1.25))
    rng = np.random.default_rng(2024)
    covered, rejected, seconds = {"cluster": 0, "image": 0}, {"cluster": 0, "image": 0}, {"cluster": 0.0, "image": 0.0}
    for trial in range(args.trials):
        y, (a, b), groups = patients(rng, args.patients, models=2)
        p = 1.0 / (1.0 + np.exp(-a))
        for method, g in (("cluster", groups), ("image", None)):
            start = time.perf_counter()
            low, high = bootstrap_ci(y, p, threshold=0.5, metrics=("auroc",), n_boot=args.n_boot, seed=trial,
                                     groups=g)["auroc"]
            seconds[method] += time.perf_counter() - start
            covered[method] += low <= truth <= high
            rejected[method] += delong_test(y, a, b, groups=g)["p_value"] < 0.05  # a, b: equal AUROC (the null)
    se = np.sqrt(0.95 * 0.05 / args.trials)
    print(f"{args.trials} data sets of {args.patients} patients (1-5 images each), {args.n_boot} resamples; "
          f"binomial se at 95%: {se:.3%}")
    for method in ("cluster", "image"):
        print(f"{method:>7}: 95% interval coverage {covered[method] / args.trials:.1%}, paired DeLong size at 5% "
              f"{rejected[method] / args.trials:.1%}, {seconds[method] / args.trials * 1000:.1f} ms per interval")


if __name__ == "__main__":
    main()
