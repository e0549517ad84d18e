"""A fitted head as a torch module, features -> probabilities, for an exported graph (`headstart export`).

Each module computes what the estimator's `predict_proba` computes, from the same arrays held as constants, in
float32 and with ops every exporter takes (matmul, sigmoid/softmax, top-k, gather). kNN is exported too: its
reference rows become a constant and the cosine top-k and the weighted vote are graph operations (`KNNGraph`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from headstart.heads.registry import kind_of


def head_module(estimator: object) -> nn.Module:
    """The eval-mode module mapping (B, D) float32 features to (B, n_classes) probabilities: the graph the
    estimator's kind builds (`HeadKind.graph`; the built-in kinds use the modules below)."""
    return kind_of(estimator).graph(estimator).eval()


def _const(array) -> torch.Tensor:
    return torch.as_tensor(np.asarray(array, dtype=np.float32))


class LogRegGraph(nn.Module):
    """StandardScaler then logistic regression: sigmoid of one logit for two classes, softmax for more; with
    `sigmoid` (multi-label, one-vs-rest) one sigmoid per finding, (B, L)."""

    def __init__(self, mean, scale, coef, intercept, *, sigmoid: bool = False):
        super().__init__()
        for name, value in (("mean", mean), ("scale", scale), ("coef", coef), ("intercept", intercept)):
            self.register_buffer(name, _const(value))
        self.sigmoid = sigmoid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = ((x - self.mean) / self.scale) @ self.coef.T + self.intercept
        if self.sigmoid:
            return torch.sigmoid(z)
        if self.coef.shape[0] == 1:  # scikit-learn's binary case: one logit for the second class
            p = torch.sigmoid(z)
            return torch.cat([1.0 - p, p], dim=1)
        return torch.softmax(z, dim=1)


class TorchHeadGraph(nn.Module):
    """Standardise, then a linear layer or one hidden ReLU layer, then softmax (dropout is off at inference); with
    `sigmoid` (multi-label) one sigmoid per finding."""

    def __init__(self, params: dict[str, torch.Tensor], mean, scale, n_classes: int, *, sigmoid: bool = False):
        super().__init__()
        self.register_buffer("mean", _const(mean))
        self.register_buffer("scale", _const(scale))
        for name, value in params.items():
            self.register_buffer(name, value.detach().float().cpu().clone())
        self.mlp = "W1" in params
        self.n_classes = n_classes
        self.sigmoid = sigmoid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.scale
        if self.mlp:
            logits = torch.relu(x @ self.W1 + self.b1) @ self.W2 + self.b2
        else:
            logits = x @ self.W + self.b
        if self.sigmoid:
            return torch.sigmoid(logits)
        return torch.softmax(logits, dim=1)[:, : self.n_classes]


class KNNGraph(nn.Module):
    """Cosine kNN: normalise the query, one matmul against the unit reference rows, top-k, weighted vote.

    The vote is a one-hot gather (eye[labels]) summed over the k neighbours, which exports as plain Gather and
    ReduceSum where `np.add.at` has no graph form.
    """

    def __init__(self, train, y, vote_weight, *, k: int, distance: bool):
        super().__init__()
        n_classes = len(vote_weight)
        self.multilabel = np.ndim(y) == 2  # (N, L) votes 1 / 0 / -1 unknown: per-finding sigmoid-like shares
        self.register_buffer("reference", _const(train))
        if self.multilabel:
            y = np.asarray(y)
            self.register_buffer("positive", _const(y == 1))
            self.register_buffer("known", _const(y >= 0))
        else:
            self.register_buffer("labels", torch.as_tensor(np.asarray(y, dtype=np.int64)))
            self.register_buffer("eye", torch.eye(n_classes))
        self.register_buffer("vote_weight", _const(vote_weight))
        self.k = min(int(k), len(y))
        self.distance = distance

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = torch.sqrt((x * x).sum(dim=1, keepdim=True))
        q = x / torch.where(norm > 0, norm, torch.ones_like(norm))  # scikit-learn leaves a zero row at zero
        sims, idx = torch.topk(q @ self.reference.T, self.k, dim=1)
        w = 1.0 / torch.clamp(1.0 - sims, min=1e-6) if self.distance else torch.ones_like(sims)
        if self.multilabel:  # (B, k, L): the neighbours' votes, weighted per finding and class, unknown ones 0
            pos, known = self.positive[idx], self.known[idx]
            vw = pos * self.vote_weight[:, 1] + (1.0 - pos) * self.vote_weight[:, 0]
            weight = w.unsqueeze(-1) * vw * known
            return ((weight * pos).sum(dim=1) + 0.5e-12) / (weight.sum(dim=1) + 1e-12)
        labels = self.labels[idx]  # (B, k)
        w = w * self.vote_weight[labels] + 1e-12
        proba = (self.eye[labels] * w.unsqueeze(-1)).sum(dim=1)
        return proba / proba.sum(dim=1, keepdim=True)
