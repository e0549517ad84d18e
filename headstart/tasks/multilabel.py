"""Multi-label tasks: L findings per image, each a sigmoid output with its own mask, threshold and metrics.

Unknown labels (masked) never enter the loss, a threshold or a metric. A finding with one class among its known
rows of a split is not an error: its AUROC is `null` with the reason, and the macro mean covers the others.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from headstart.errors import ConfigError
from headstart.evaluation.clusters import cluster_index, n_clusters
from headstart.evaluation.metrics import batch_auroc_auprc, compute_metrics
from headstart.evaluation.paired import finding_auroc_draws, macro_draws, percentile_interval
from headstart.evaluation.thresholds import choose_threshold
from headstart.tasks.core import Task, sigmoid

log = logging.getLogger(__name__)

ONE_CLASS = "one class among the labelled rows"  # the reason a finding's AUROC is null
NOT_TRAINED = "not trained: one class among its training rows"  # a finding `trainable` left out (NaN probabilities)


class MultilabelTask(Task):
    """y is (N, L) 0/1, mask (N, L) bool; probabilities are (N, L), one sigmoid per finding."""

    kind = "multilabel"
    link_name = "sigmoid"

    def stratify_key(self) -> np.ndarray:
        return ((np.asarray(self.y) == 1) & self.known()).astype(np.int8)

    def link(self, logits: np.ndarray) -> np.ndarray:
        return sigmoid(logits)

    def loss(self, logits: Any, target: Any, *, weight: Any = None, mask: Any = None) -> Any:
        """Masked binary cross-entropy: the mean over known labels; `weight` is a per-finding pos_weight."""
        import torch.nn.functional as F

        per = F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), pos_weight=weight,
                                                 reduction="none")
        if mask is None:
            return per.mean()
        m = mask.to(per.dtype)
        return (per * m).sum() / m.sum().clamp(min=1.0)

    def trainable(self, y: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """(L,) bool: findings with both classes among their known rows; the others get one warning each."""
        pos, neg = class_presence(y, mask)
        for name in np.asarray(self.names)[~(pos & neg)]:
            log.warning("finding %s has %s among the training rows; it is left out of training and reported "
                        "as null", name, "no positive" if not pos[self.names.index(name)] else "no negative")
        return pos & neg

    def choose_threshold(self, y: np.ndarray, proba: np.ndarray, *, rule: str,
                         mask: np.ndarray | None = None) -> list[float | None]:
        """One threshold per finding, on its known val rows; None where val has one class there or the finding
        was not trained (its probabilities are NaN)."""
        known = _mask(y, mask)
        out: list[float | None] = []
        for j in range(len(self.names)):
            yj, pj = np.asarray(y)[known[:, j], j], np.asarray(proba, dtype=np.float64)[known[:, j], j]
            out.append(float(choose_threshold(yj, pj, rule=rule))
                       if np.unique(yj).size == 2 and np.isfinite(pj).all() else None)
        return out

    def record_rule(self, rule: str) -> str:
        return rule

    def record_threshold(self, threshold: list[float | None] | None) -> dict[str, float | None]:
        """The record's and head.json's `threshold`: an object by finding."""
        threshold = threshold or [None] * len(self.names)
        return {name: None if t is None else float(t) for name, t in zip(self.names, threshold)}

    def predict(self, proba: np.ndarray, threshold) -> np.ndarray:
        if isinstance(threshold, dict):
            threshold = [threshold.get(name) for name in self.names]
        cuts = np.array([0.5 if t is None else t for t in (threshold or [None] * len(self.names))])
        return (np.asarray(proba) >= cuts).astype(np.int64)

    def evaluate(self, y: np.ndarray, proba: np.ndarray, *, threshold: list[float | None] | None, n_boot: int,
                 seed: int, mask: np.ndarray | None = None, groups: np.ndarray | None = None) -> dict:
        """Per-finding metrics (null + reason for a one-class or untrained finding), macro and micro AUROC, mean
        AP. The AUROC intervals, per finding and macro, come from one set of bootstrap resamples
        (evaluation.paired.finding_auroc_draws): whole patients where `groups` names patients with several
        images (`ci_method` cluster-bootstrap, `n_clusters` patients), images otherwise."""
        y, proba, known = np.asarray(y), np.asarray(proba, dtype=np.float64), _mask(y, mask)
        if isinstance(threshold, dict):
            threshold = [threshold.get(name) for name in self.names]
        threshold = threshold or [None] * len(self.names)
        groups = None if groups is None else np.asarray([str(g) for g in groups], dtype=object)
        draws = finding_auroc_draws(y, known, proba, groups=groups, n_boot=n_boot, seed=seed)
        per_label = {}
        for j, name in enumerate(self.names):
            rows = known[:, j]
            per_label[name] = self._one(y[rows, j], proba[rows, j], threshold[j], draws[:, j])
            per_label[name]["n_masked"] = int((~rows).sum())
        aurocs = [v["auroc"] for v in per_label.values() if v["auroc"] is not None]
        aps = [v["auprc"] for v in per_label.values() if v["auprc"] is not None]
        usable = known & np.isfinite(proba)
        micro, _ = batch_auroc_auprc(y[usable] == 1, proba[usable][None, :])
        cluster = cluster_index(groups, len(y))
        return {"n": int(len(y)), "auroc": _num(np.mean(aurocs)) if aurocs else None,
                "auroc_ci": [_num(c) for c in percentile_interval(macro_draws(draws))],
                "micro_auroc": _num(micro[0]), "mean_ap": _num(np.mean(aps)) if aps else None,
                "n_labels_scored": len(aurocs), "per_label": per_label,
                "ci_method": "bootstrap" if cluster is None else "cluster-bootstrap",
                "n_clusters": n_clusters(cluster, len(y))}

    @staticmethod
    def _one(y: np.ndarray, p: np.ndarray, threshold: float | None, draws: np.ndarray) -> dict:
        n, n_pos = int(len(y)), int((y == 1).sum())
        reason = NOT_TRAINED if n and not np.isfinite(p).all() else ONE_CLASS if n_pos in (0, n) else None
        if reason is not None:
            return {"auroc": None, "auroc_ci": None, "auprc": None, "sensitivity": None, "specificity": None,
                    "threshold": threshold, "n": n, "n_pos": n_pos, "reason": reason}
        two = np.stack([1.0 - p, p], axis=1)
        m = compute_metrics(y, two, threshold=threshold)
        ci = percentile_interval(draws)
        return {"auroc": _num(m["auroc"]), "auroc_ci": [_num(c) for c in ci], "auprc": _num(m["auprc"]),
                "sensitivity": _num(m["sensitivity"]), "specificity": _num(m["specificity"]),
                "threshold": threshold, "n": n, "n_pos": n_pos}

    def score(self, y: np.ndarray, proba: np.ndarray, *, metric: str, threshold_rule: str,
              mask: np.ndarray | None = None) -> float:
        """Val macro AUROC (or AUPRC) over the findings with both classes; NaN when none has both."""
        if metric not in ("auroc", "auprc"):
            raise ConfigError(f"select metric {metric!r} is not defined for a multi-label task; expected auroc "
                              f"or auprc (macro over the findings)")
        key = 0 if metric == "auroc" else 1
        known = _mask(y, mask) & np.isfinite(np.asarray(proba, dtype=np.float64))  # NaN: an untrained finding
        values = [batch_auroc_auprc(np.asarray(y)[known[:, j], j] == 1,
                                    np.asarray(proba, dtype=np.float64)[known[:, j], j][None, :])[key][0]
                  for j in range(len(self.names))]
        finite = [v for v in values if np.isfinite(v)]
        return float(np.mean(finite)) if finite else float("nan")


def class_presence(y: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(L,) bool twice: whether each finding has a known positive, and a known negative; heads fit only the
    findings with both (silently: `MultilabelTask.trainable` gives the one warning per finding)."""
    y, known = np.asarray(y), _mask(y, mask)
    return ((y == 1) & known).any(axis=0), ((y == 0) & known).any(axis=0)


def _mask(y: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    return np.ones(np.shape(y), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)


def _num(value: float) -> float | None:
    """A JSON-safe float: NaN becomes None."""
    value = float(value)
    return value if np.isfinite(value) else None
