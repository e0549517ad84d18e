"""Scorers: a batch of uint8 crops -> class probabilities, one kind per thing `predict` can apply.

A cached-head scorer runs the rebuilt backbone through extract's own forward (`extract.forward`), rounds the
features to the feature set's storage dtype as the cache did (the head was fitted and tested on those), and
applies the saved head with the runner's `full_proba`. A fine-tune scorer runs the network the same way and
takes the softmax, as the fine-tune's evaluation does. Both also give their function as ONE torch module on
[0, 1] images (`graph()`), which is what `export` writes.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from headstart.apply.card import RunCard
from headstart.backbones.types import Preprocessing
from headstart.extract.forward import forward_features, prepare_model
from headstart.heads.fitting import full_proba
from headstart.heads.graph import head_module


class Normalise(nn.Module):
    """[0, 1] images -> the network input, `(x - mean) / std` per channel (what normalize_batch does to /255)."""

    def __init__(self, prep: Preprocessing):
        super().__init__()
        self.register_buffer("mean", torch.tensor(prep.mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(prep.std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class StorageRound(nn.Module):
    """Round features to float16 and back, as a float16 cache stores them: the head was fitted on those."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.half().float()


class ExpandClasses(nn.Module):
    """Probabilities over the head's fitted classes -> over every class of the run (absent ones get 0)."""

    def __init__(self, fitted: np.ndarray, n_classes: int):
        super().__init__()
        self.register_buffer("onehot", torch.eye(n_classes)[torch.as_tensor(np.asarray(fitted, dtype=np.int64))])

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        return p @ self.onehot


class Softmax(nn.Module):
    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, dim=1)


class CachedHeadScorer:
    """A saved head on the features of its rebuilt backbone (prepared on `device` as extract prepares it)."""

    def __init__(self, card: RunCard, *, backbone: nn.Module, head: object, dtype: str, device: torch.device,
                 amp_dtype: torch.dtype | None):
        self.card, self.head, self.dtype = card, head, np.dtype(dtype)
        self.device, self.amp_dtype = device, amp_dtype
        self.model = prepare_model(backbone, device)

    def features(self, images: torch.Tensor) -> np.ndarray:
        """Features as the cache holds them: extract's forward, rounded to the storage dtype, as float32."""
        x = forward_features(self.model, images, self.card.preprocessing, device=self.device, amp_dtype=self.amp_dtype)
        return x.numpy().astype(self.dtype).astype(np.float32)

    def score(self, images: torch.Tensor) -> np.ndarray:
        return self.score_features(self.features(images))

    def score_features(self, X: np.ndarray) -> np.ndarray:
        return full_proba(self.head, np.asarray(X, dtype=np.float32), len(self.card.classes))

    def graph(self) -> nn.Module:
        """[0, 1] images -> probabilities: normalise, backbone, storage rounding, head (over every class)."""
        steps = [Normalise(self.card.preprocessing), self.model.float()]
        if self.dtype == np.float16:
            steps.append(StorageRound())
        steps.append(head_module(self.head))
        fitted, n = np.asarray(self.head.classes_), len(self.card.classes)
        if len(fitted) != n or not np.array_equal(fitted, np.arange(n)):
            steps.append(ExpandClasses(fitted, n))
        return nn.Sequential(*steps).eval()


class FinetuneScorer:
    """A fine-tuned network: its softmax, as the fine-tune's final evaluation computes it."""

    def __init__(self, card: RunCard, *, net: nn.Module, device: torch.device, amp_dtype: torch.dtype | None):
        self.card, self.device, self.amp_dtype = card, device, amp_dtype
        self.model = prepare_model(net, device)

    def score(self, images: torch.Tensor) -> np.ndarray:
        logits = forward_features(self.model, images, self.card.preprocessing, device=self.device,
                                  amp_dtype=self.amp_dtype)
        return torch.softmax(logits, dim=1).numpy()

    def graph(self) -> nn.Module:
        return nn.Sequential(Normalise(self.card.preprocessing), self.model.float(), Softmax()).eval()
