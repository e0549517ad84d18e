"""Scorers: a batch of uint8 crops -> class probabilities, one kind per thing `predict` can apply.

A cached-head scorer computes its feature set with extraction's own code (`extract.features.compute_features` on
the rebuilt `FeatureModel`: the backbone of any provider, the set's layer/pool tap, and the engine `--engine`
picked, onnxruntime checked against torch on real rows as extraction checks it), rounds the features to the
set's storage dtype as the cache did (the head was fitted and tested on those), and applies the saved head with
the runner's `full_proba`. A fine-tune scorer runs its network on the torch engine (the one plain forward:
`engines.TorchEngine` after `normalize_batch`) and takes its task's link (softmax, or a sigmoid per finding for
multi-label), as the fine-tune's evaluation does. Both
also give their function as ONE torch module on [0, 1] images (`graph()`), which is what `export` writes.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from headstart.apply.card import RunCard
from headstart.backbones.types import Preprocessing
from headstart.engines import TorchEngine
from headstart.extract.features import FeatureModel, attach_engine, compute_features
from headstart.extract.preprocess import normalize_batch
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


class ZeroColumns(nn.Module):
    """Multi-label: the columns of findings left out of training set to 0 in the exported graph (their NaN would
    fail every exporter's check); the card lists them and `predict` on the model blanks them again."""

    def __init__(self, keep: np.ndarray):
        super().__init__()
        self.register_buffer("keep", torch.as_tensor(np.asarray(keep, dtype=bool)).view(1, -1))

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        return torch.where(self.keep, p, torch.zeros_like(p))


class Softmax(nn.Module):
    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, dim=1)


class Sigmoid(nn.Module):
    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits)


LINKS = {"softmax": Softmax, "sigmoid": Sigmoid}  # a task's link_name -> its graph module


class OneSet(nn.Module):
    """The taps module of a one-set `FeatureModel` as a plain `x -> (B, D)` module (for the exported graph)."""

    def __init__(self, taps: nn.Module, name: str):
        super().__init__()
        self.taps, self.name = taps, name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.taps(x)[self.name]


class CachedHeadScorer:
    """A saved head on its feature set, computed by the rebuilt `FeatureModel` on `device` as extraction does."""

    def __init__(self, card: RunCard, *, model: FeatureModel, head: object, dtype: str, device: torch.device,
                 amp_dtype: torch.dtype | None):
        self.card, self.model, self.head, self.dtype = card, model, head, np.dtype(dtype)
        self.device, self.amp_dtype = device, amp_dtype
        self.set_name = model.outputs[0].name

    def attach(self, engine: str, *, probe: dict | None = None) -> None:
        """Give the feature model its engine (`extract.features.attach_engine`: onnxruntime is decided on the
        `probe` batch's real rows, or on the first batch without one)."""
        attach_engine(self.model, engine, self.device, amp_dtype=self.amp_dtype, probe=probe)

    @property
    def engine_name(self) -> str:
        """The engine computing the features ("torch" until one is attached: `features` attaches torch)."""
        return self.model.engine.name if self.model.engine is not None else "torch"

    def features(self, images: torch.Tensor) -> np.ndarray:
        """Features as the cache holds them: extraction's `compute_features`, rounded to the storage dtype."""
        if self.model.engine is None:
            self.attach("torch")
        x = compute_features([self.model], {self.model.geometry: images}, device=self.device)[self.set_name]
        return x.astype(self.dtype).astype(np.float32)

    def score(self, images: torch.Tensor) -> np.ndarray:
        return self.score_features(self.features(images))

    def score_features(self, X: np.ndarray) -> np.ndarray:
        return head_proba(self.head, X, self.card)

    def graph(self) -> nn.Module:
        """[0, 1] images -> probabilities: normalise, the backbone's tap of this set, storage rounding, head."""
        features = OneSet(self.model.taps, self.set_name).eval().requires_grad_(False).cpu().float()
        steps = [Normalise(self.card.preprocessing), features]
        if self.dtype == np.float16:
            steps.append(StorageRound())
        steps.append(self.head_graph())
        return nn.Sequential(*steps).eval()

    def head_graph(self) -> nn.Module:
        """(B, D) features -> the run's probability columns: the head kind's graph (`HeadKind.graph`), then, for
        a single-label head fitted on fewer classes than the run has, zero columns for the absent ones (for a
        multi-label head, zero columns for the findings left out of training)."""
        steps = [head_module(self.head)]
        fitted, n = np.asarray(getattr(self.head, "classes_", np.arange(len(self.card.classes)))), len(self.card.classes)
        if not self.card.multilabel and (len(fitted) != n or not np.array_equal(fitted, np.arange(n))):
            steps.append(ExpandClasses(fitted, n))
        if self.card.multilabel and self.card.untrained:
            steps.append(ZeroColumns(np.array([f not in self.card.untrained for f in self.card.classes])))
        return nn.Sequential(*steps).eval()


def head_proba(head: object, X: np.ndarray, card: RunCard) -> np.ndarray:
    """A saved head's probabilities on features X: over every class of the run (`full_proba`), or for a
    multi-label run one sigmoid column per finding, NaN for the findings left out of training."""
    proba = full_proba(head, np.asarray(X, dtype=np.float32), len(card.classes))
    return card.blank_untrained(proba) if card.multilabel else proba


class FinetuneScorer:
    """A fine-tuned network: its task's link (softmax; a sigmoid per finding for multi-label), as the fine-tune's
    final evaluation computes it."""

    engine_name = "torch"  # a trained network, not a frozen backbone: no exported graph is cached for it

    def __init__(self, card: RunCard, *, net: nn.Module, device: torch.device, amp_dtype: torch.dtype | None):
        self.card, self.device = card, device
        self.runner = TorchEngine(net, device, amp_dtype=amp_dtype)

    def score(self, images: torch.Tensor) -> np.ndarray:
        logits = self.runner(normalize_batch(images, self.card.preprocessing, device=self.device))
        return LINKS[self.card.task.link_name]()(torch.from_numpy(logits)).numpy()

    def graph(self) -> nn.Module:
        link = LINKS[self.card.task.link_name]()
        return nn.Sequential(Normalise(self.card.preprocessing), self.runner.module.cpu().float(), link).eval()
