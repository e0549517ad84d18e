"""k-nearest neighbours under cosine similarity: a training-free check of how well the features cluster.

`KNNKind` is its head kind (heads.protocol): the k grid, one search for the whole sweep, tensors, graph.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.preprocessing import normalize

from headstart.data.balance import class_weights
from headstart.errors import ConfigError
from headstart.heads.protocol import Candidate, HeadKind, expand, require
from headstart.heads.tensor_file import Stored

# Bytes of one (query rows, n_train) similarity block. 1,024 query rows against 70,000 train rows were 287 MB,
# most of a third copy of a 100,000 x 1,024 cache (benchmarks/memory.py); 32 MiB keeps blocks wide enough for
# an efficient matmul at every train size measured here.
_BLOCK_BYTES = 32 * 2**20


class KNNHead(ClassifierMixin, BaseEstimator):
    """Cosine kNN: rows are L2-normalised, neighbours found by one matmul + top-k (torch, on the CPU).

    `weights="distance"` weights each vote by 1 / cosine distance (sklearn's rule), `"uniform"` counts votes.
    `class_weight="balanced"` divides each class's votes by its train frequency, so a majority class does
    not win by sheer numbers; None leaves votes as they are.
    """

    def __init__(self, *, k: int = 15, weights: str = "distance", class_weight: str | None = None) -> None:
        self.k = k
        self.weights = weights
        self.class_weight = class_weight

    def fit(self, X, y):
        if self.weights not in ("distance", "uniform"):
            raise ConfigError(f"KNNHead weights {self.weights!r} is not valid; expected 'distance' or 'uniform'")
        self.classes_, y_idx = np.unique(np.asarray(y), return_inverse=True)
        self.train_ = normalize(np.asarray(X, dtype=np.float32))  # unit rows: a dot product is the cosine
        self.y_ = y_idx
        self.vote_weight_ = class_weights(y_idx, len(self.classes_), self.class_weight)  # the loss heads' rule
        self.n_features_in_ = self.train_.shape[1]
        return self

    def _with_k(self, k: int) -> KNNHead:
        """This fitted head with another k, sharing its train rows: nothing `fit` learns depends on k, so a
        sweep over k (`knn_sweep`) fits once."""
        head = KNNHead(k=int(k), weights=self.weights, class_weight=self.class_weight)
        head.classes_, head.train_, head.y_ = self.classes_, self.train_, self.y_
        head.vote_weight_, head.n_features_in_ = self.vote_weight_, self.n_features_in_
        return head

    def predict_proba(self, X) -> np.ndarray:
        sims, idx = neighbours(self.train_, np.asarray(X, dtype=np.float32), k=self.k)
        return vote(sims, idx, self.y_, k=self.k, n_classes=len(self.classes_), weights=self.weights,
                    vote_weight=self.vote_weight_)

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


def neighbours(train_normalised: np.ndarray, X: np.ndarray, *, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarities and indices of the k nearest train rows for each row of X, most similar first.

    A sweep over k calls this once with the largest k and slices, since the top-k of a smaller k is a prefix.
    """
    train = torch.from_numpy(train_normalised)
    k = min(k, train.shape[0])
    if len(X) == 0:  # sklearn's normalize refuses an empty array
        return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
    q = torch.from_numpy(normalize(X))
    sims, idx = [], []
    rows = max(1, _BLOCK_BYTES // (4 * max(1, train.shape[0])))
    # one similarity buffer for every block: a fresh 32 MiB block per step left the allocator's heap holding
    # up to 200 MiB more (glibc's mmap threshold rises to the size of the first freed block)
    buffer = torch.empty((min(rows, q.shape[0]), train.shape[0]))
    for start in range(0, q.shape[0], rows):
        block = q[start : start + rows]
        s, i = torch.topk(torch.mm(block, train.T, out=buffer[: len(block)]), k, dim=1)
        sims.append(s)
        idx.append(i)
    return torch.cat(sims).numpy(), torch.cat(idx).numpy()


def vote(sims: np.ndarray, idx: np.ndarray, y_train: np.ndarray, *, k: int, n_classes: int, weights: str,
         vote_weight: np.ndarray) -> np.ndarray:
    """Class probabilities from the first k neighbours' (weighted) votes."""
    sims, idx = sims[:, :k], idx[:, :k]
    # sklearn's "distance" rule, 1 / d, on cosine distance d = 1 - similarity; duplicates are capped, not inf
    w = 1.0 / np.maximum(1.0 - sims, 1e-6) if weights == "distance" else np.ones_like(sims)
    labels = y_train[idx]
    w = w * vote_weight[labels] + 1e-12  # keeps an all-zero row from dividing by zero
    proba = np.zeros((sims.shape[0], n_classes), dtype=np.float64)
    np.add.at(proba, (np.arange(sims.shape[0])[:, None], labels), w)
    return (proba / proba.sum(axis=1, keepdims=True)).astype(np.float32)


def knn_sweep(X_train, y_train, X_val, ks, *, weights: str = "distance",
              class_weight: str | None = None) -> list[tuple[KNNHead, np.ndarray]]:
    """One fitted `KNNHead` per k with its val probabilities, from a single neighbour search at max(ks)."""
    base = KNNHead(k=max(ks), weights=weights, class_weight=class_weight).fit(X_train, y_train)
    sims, idx = neighbours(base.train_, np.asarray(X_val, dtype=np.float32), k=max(ks))
    return [(base._with_k(k), vote(sims, idx, base.y_, k=int(k), n_classes=len(base.classes_), weights=weights,
                                   vote_weight=base.vote_weight_)) for k in ks]


class KNNKind(HeadKind):
    """The kNN head kind: one neighbour search at the largest k serves the whole sweep and every seed."""

    name = "knn"
    estimator = KNNHead
    tensors = ("train", "y", "vote_weight")

    def configs(self, grid) -> list[dict]:
        return [{"k": int(k)} for k in grid.knn_k]

    def fit_one(self, params, train, *, fit, seed, epochs=None) -> KNNHead:
        return KNNHead(k=params["k"], class_weight=fit.class_weight).fit(train.X, train.y)

    def fit_sweeps(self, train, val, *, fit, seeds, params=None, stop_split=None) -> list[list[Candidate]]:
        params = self.configs(fit.grid) if params is None else params
        fitted = knn_sweep(train.X, train.y, val.X, [p["k"] for p in params], class_weight=fit.class_weight)
        return [[Candidate(p, expand(proba, h.classes_, fit.n_classes), h)
                 for p, (h, proba) in zip(params, fitted)]] * len(seeds)

    def state(self, head: KNNHead, dtype: str) -> tuple[dict, dict]:
        # float32, whatever the set's dtype: these are the normalised rows the record was evaluated with; narrowing
        # them to float16 moved predictions by up to 1e-2 from the record (and could flip decisions near the cut)
        return {"train": Stored.of(head.train_, "float32"), "y": head.y_, "vote_weight": head.vote_weight_}, {}

    def build(self, params: dict, t: dict, state: dict, classes: np.ndarray) -> KNNHead:
        head = KNNHead(**params)
        head.classes_, head.train_ = classes, np.ascontiguousarray(t["train"], dtype=np.float32)
        head.y_, head.vote_weight_ = t["y"].astype(np.int64), t["vote_weight"]
        head.n_features_in_ = head.train_.shape[1]
        require(len(head.y_) == len(head.train_) and len(head.vote_weight_) == len(classes)
                and (len(head.y_) == 0 or head.y_.max() < len(classes)),
                f"{len(head.train_)} reference rows, {len(head.y_)} labels and {len(classes)} classes do not agree")
        return head

    def graph(self, head: KNNHead):
        from headstart.heads.graph import KNNGraph

        return KNNGraph(head.train_, head.y_, head.vote_weight_, k=head.k, distance=head.weights == "distance")
