"""The device-resident train/val tensors one batched sweep shares (`heads.batched`), with cached views, and the
task-specific pieces of a step: the per-head loss, the hit count and the link.

Single-label: `yt` (N,) class indices, weighted cross-entropy (`cw` per class), softmax. Multi-label: `yt`
(N, L) 0/1 targets with a mask `mt` of the labels the policy keeps, masked BCE with a per-finding `pos_weight`
(`cw`), one sigmoid per finding. A finding with one class among the train labels is masked out of training
entirely (`untrained`); the sweep reports its probabilities as NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from headstart.data.balance import class_weights, pos_weights
from headstart.heads.scaling import standardise, torch_moments


@dataclass
class TrainData:
    """Standardised features and labels on the device, made once and shared by every group of a sweep."""

    xt: torch.Tensor
    yt: torch.Tensor
    xv: torch.Tensor | None
    yv: torch.Tensor | None
    cw: torch.Tensor  # per-class loss weights; multi-label: per-finding pos_weight
    mean: np.ndarray  # float32 train mean and std, kept by every head for prediction
    scale: np.ndarray
    n_classes: int  # outputs: classes, or findings
    xviews: torch.Tensor | None = None  # (K, N, D) standardised train views (heads --views on), or None
    mt: torch.Tensor | None = None  # multi-label (N, L) train labels used (float 0/1); None: single-label
    mv: torch.Tensor | None = None  # multi-label (n_val, L) val labels scored
    untrained: np.ndarray | None = None  # multi-label (L,) findings with one class in train: never trained

    @property
    def multilabel(self) -> bool:
        return self.mt is not None

    def epoch_rows(self, gen: torch.Generator) -> torch.Tensor:
        """The train matrix of one epoch for one seed: each row one of its K + 1 views, uniformly."""
        if self.xviews is None:
            return self.xt
        n = self.xt.shape[0]
        choice = torch.randint(0, self.xviews.shape[0] + 1, (n,), generator=gen).to(self.xt.device)
        x, picked = self.xt.clone(), torch.nonzero(choice > 0).squeeze(1)
        x[picked] = self.xviews[choice[picked] - 1, picked]
        return x

    @property
    def has_val(self) -> bool:
        return self.xv is not None

    def loss(self, logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Per-head mean loss (K,): logits (K, B, C); y (B,) or (K, B) [multi-label (K, B, L) with its mask]."""
        if not self.multilabel:
            return _weighted_ce(logits, y, self.cw)
        per = F.binary_cross_entropy_with_logits(logits, y.expand_as(logits), pos_weight=self.cw, reduction="none")
        m = mask.expand_as(logits)
        return (per * m).sum((-1, -2)) / m.sum((-1, -2)).clamp(min=1.0)

    def loss_weight(self, y: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """What `loss` averages over in a chunk (class weights, or known labels), to combine chunks exactly."""
        return self.cw[y].sum() if not self.multilabel else mask.sum()

    def hits(self, logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """(K,) correct predictions: rows by argmax, or known labels at logit 0 (probability 1/2)."""
        if not self.multilabel:
            return (logits.argmax(-1) == y).sum(-1)
        return (((logits > 0) == (y > 0.5)) & (mask > 0)).sum((-1, -2))

    def scored(self, mask: torch.Tensor | None, n: int) -> float:
        """What an accuracy divides by: rows, or known labels."""
        return float(n) if mask is None else float(mask.sum().clamp(min=1.0))

    def link(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, -1)

    @classmethod
    def prepare(cls, X_train, y_train, X_val, y_val, *, n_classes, class_weight, device, views=None,
                mask_train=None, mask_val=None) -> TrainData:
        multilabel = np.ndim(y_train) == 2
        has_val = X_val is not None and y_val is not None and len(y_val) > 0
        if multilabel:
            y_train = np.asarray(y_train, dtype=np.float32)
            known = np.ones(y_train.shape, bool) if mask_train is None else np.asarray(mask_train, dtype=bool)
            pos, neg = ((y_train == 1) & known).any(axis=0), ((y_train == 0) & known).any(axis=0)
            untrained = ~(pos & neg)
            known = known & ~untrained  # a one-class finding never enters the loss
            C = y_train.shape[1]
            cw = pos_weights(y_train, known, class_weight)
            yv = np.asarray(y_val, dtype=np.float32) if has_val else None
            kv = (np.ones(yv.shape, bool) if mask_val is None else np.asarray(mask_val, bool)) if has_val else None
            masks = {"mt": torch.as_tensor(known.astype(np.float32), device=device),
                     "mv": torch.as_tensor(kv.astype(np.float32), device=device) if has_val else None,
                     "untrained": untrained}
        else:
            y_train = np.asarray(y_train, dtype=np.int64)
            C = max(int(n_classes if n_classes is not None else y_train.max() + 1), 2)
            cw = class_weights(y_train, C, class_weight)
            yv = np.asarray(y_val, dtype=np.int64) if has_val else None
            masks = {}
        mean32, scale32 = torch_moments(X_train)  # blocked: no whole-matrix temporary (heads.scaling)
        return cls(xt=standardise(X_train, mean32, scale32, device), yt=torch.as_tensor(y_train, device=device),
                   xv=standardise(X_val, mean32, scale32, device) if has_val else None,
                   yv=torch.as_tensor(yv, device=device) if has_val else None,
                   cw=torch.as_tensor(cw, device=device),
                   mean=mean32, scale=scale32, n_classes=C, xviews=None if views is None else standardise(
                       np.asarray(views).transpose(1, 0, 2).reshape(-1, views.shape[2]), mean32, scale32,
                       device).view(views.shape[1], views.shape[0], views.shape[2]), **masks)


def _weighted_ce(logits: torch.Tensor, y: torch.Tensor, class_weight: torch.Tensor) -> torch.Tensor:
    """Per-head weighted mean cross-entropy: logits (K, B, C), y (B,) shared or (K, B) per head -> (K,)."""
    K, B, C = logits.shape
    y = y.expand(K, B)
    nll = F.cross_entropy(logits.reshape(K * B, C), y.reshape(K * B), reduction="none").view(K, B)
    w = class_weight[y]
    return (nll * w).sum(-1) / w.sum(-1)
