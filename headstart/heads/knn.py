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
_VOTE_ROWS = 2048  # query rows per block of a multi-label vote: (rows, k, L) stays a few MiB


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

    def fit(self, X, y, *, mask=None):
        """Fit on (X, y). A multi-label y (N, L) of 0/1 votes per finding, each over the neighbours whose label
        for it is known (`mask`); a finding with one class among them is not trained (NaN probabilities)."""
        if self.weights not in ("distance", "uniform"):
            raise ConfigError(f"KNNHead weights {self.weights!r} is not valid; expected 'distance' or 'uniform'")
        self.train_ = normalize(np.asarray(X, dtype=np.float32))  # unit rows: a dot product is the cosine
        self.n_features_in_ = self.train_.shape[1]
        if np.ndim(y) == 2:
            self.classes_, self.y_ = np.arange(np.shape(y)[1]), multilabel_codes(y, mask)
            self.vote_weight_ = finding_vote_weights(self.y_, self.class_weight)
            return self
        self.classes_, y_idx = np.unique(np.asarray(y), return_inverse=True)
        self.y_ = y_idx
        self.vote_weight_ = class_weights(y_idx, len(self.classes_), self.class_weight)  # the loss heads' rule
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
        if np.ndim(self.y_) == 2:
            return (self.predict_proba(X) >= 0.5).astype(np.int64)
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


def multilabel_codes(y, mask) -> np.ndarray:
    """(N, L) int8 votes: 1 positive, 0 negative, -1 unknown (a masked label never votes)."""
    codes = (np.asarray(y) == 1).astype(np.int8)
    if mask is not None:
        codes[~np.asarray(mask, dtype=bool)] = -1
    return codes


def finding_vote_weights(codes: np.ndarray, class_weight: str | None) -> np.ndarray:
    """(L, 2) weights of a negative and a positive vote per finding: the loss heads' balanced rule over the
    finding's known labels (1 under no weighting); NaN for a finding with one class (not trained)."""
    out = np.ones((codes.shape[1], 2), dtype=np.float32)
    for j in range(codes.shape[1]):
        known = codes[:, j][codes[:, j] >= 0]
        if np.unique(known).size < 2:
            out[j] = np.nan
        else:
            out[j] = class_weights(known, 2, class_weight)
    return out


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
    """Class probabilities from the first k neighbours' (weighted) votes. Multi-label (y_train (N, L) codes of
    `multilabel_codes`, vote_weight (L, 2)): per finding, the weighted share of positive votes among the
    neighbours whose label is known (1/2 where none is); NaN for an untrained finding."""
    sims, idx = sims[:, :k], idx[:, :k]
    # sklearn's "distance" rule, 1 / d, on cosine distance d = 1 - similarity; duplicates are capped, not inf
    w = 1.0 / np.maximum(1.0 - sims, 1e-6) if weights == "distance" else np.ones_like(sims)
    if np.ndim(y_train) == 2:
        out = np.empty((len(sims), y_train.shape[1]), dtype=np.float32)
        for start in range(0, len(sims), _VOTE_ROWS):  # bounds the (rows, k, L) temporaries
            labels = y_train[idx[start:start + _VOTE_ROWS]]  # (rows, k, L)
            weight = w[start:start + _VOTE_ROWS, :, None] * np.where(labels == 1, vote_weight[:, 1],
                                                                     vote_weight[:, 0]) * (labels >= 0)
            out[start:start + _VOTE_ROWS] = ((weight * (labels == 1)).sum(axis=1) + 0.5e-12) / \
                (weight.sum(axis=1) + 1e-12)
        return out
    labels = y_train[idx]
    w = w * vote_weight[labels] + 1e-12  # keeps an all-zero row from dividing by zero
    proba = np.zeros((sims.shape[0], n_classes), dtype=np.float64)
    np.add.at(proba, (np.arange(sims.shape[0])[:, None], labels), w)
    return (proba / proba.sum(axis=1, keepdims=True)).astype(np.float32)


def knn_sweep(X_train, y_train, X_val, ks, *, weights: str = "distance", class_weight: str | None = None,
              mask=None) -> list[tuple[KNNHead, np.ndarray]]:
    """One fitted `KNNHead` per k with its val probabilities, from a single neighbour search at max(ks)."""
    base = KNNHead(k=max(ks), weights=weights, class_weight=class_weight).fit(X_train, y_train, mask=mask)
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
        return KNNHead(k=params["k"], class_weight=fit.class_weight).fit(train.X, train.y, mask=train.mask)

    def fit_sweeps(self, train, val, *, fit, seeds, params=None, stop_split=None) -> list[list[Candidate]]:
        params = self.configs(fit.grid) if params is None else params
        fitted = knn_sweep(train.X, train.y, val.X, [p["k"] for p in params], class_weight=fit.class_weight,
                           mask=train.mask)
        return [[Candidate(p, expand(proba, h.classes_, fit.n_classes), h)
                 for p, (h, proba) in zip(params, fitted)]] * len(seeds)

    def state(self, head: KNNHead, dtype: str) -> tuple[dict, dict]:
        # float32, whatever the set's dtype: these are the normalised rows the record was evaluated with; narrowing
        # them to float16 moved predictions by up to 1e-2 from the record (and could flip decisions near the cut)
        return {"train": Stored.of(head.train_, "float32"), "y": head.y_, "vote_weight": head.vote_weight_}, {}

    def build(self, params: dict, t: dict, state: dict, classes: np.ndarray) -> KNNHead:
        head = KNNHead(**params)
        head.classes_, head.train_ = classes, np.ascontiguousarray(t["train"], dtype=np.float32)
        multilabel = np.ndim(t["y"]) == 2  # (N, L) votes: 1 / 0 / -1 unknown
        head.y_ = t["y"].astype(np.int8 if multilabel else np.int64)
        head.vote_weight_ = t["vote_weight"]
        head.n_features_in_ = head.train_.shape[1]
        require(len(head.y_) == len(head.train_) and len(head.vote_weight_) == len(classes)
                and (len(head.y_) == 0 or head.y_.max() < len(classes))
                and (not multilabel or head.y_.shape[1] == len(classes) == head.vote_weight_.shape[0]),
                f"{len(head.train_)} reference rows, {len(head.y_)} labels and {len(classes)} classes do not agree")
        return head

    def graph(self, head: KNNHead):
        from headstart.heads.graph import KNNGraph

        return KNNGraph(head.train_, head.y_, head.vote_weight_, k=head.k, distance=head.weights == "distance")
