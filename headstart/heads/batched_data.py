"""The device-resident train/val tensors one batched sweep shares (`heads.batched`), with cached views."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from headstart.data.balance import class_weights
from headstart.heads.scaling import standardise, torch_moments


@dataclass
class TrainData:
    """Standardised features and labels on the device, made once and shared by every group of a sweep."""

    xt: torch.Tensor
    yt: torch.Tensor
    xv: torch.Tensor | None
    yv: torch.Tensor | None
    cw: torch.Tensor  # per-class loss weights
    mean: np.ndarray  # float32 train mean and std, kept by every head for prediction
    scale: np.ndarray
    n_classes: int
    xviews: torch.Tensor | None = None  # (K, N, D) standardised train views (heads --views on), or None

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

    @classmethod
    def prepare(cls, X_train, y_train, X_val, y_val, *, n_classes, class_weight, device, views=None) -> TrainData:
        y_train = np.asarray(y_train, dtype=np.int64)
        C = max(int(n_classes if n_classes is not None else y_train.max() + 1), 2)
        has_val = X_val is not None and y_val is not None and len(y_val) > 0
        mean32, scale32 = torch_moments(X_train)  # blocked: no whole-matrix temporary (heads.scaling)
        return cls(xt=standardise(X_train, mean32, scale32, device), yt=torch.as_tensor(y_train, device=device),
                   xv=standardise(X_val, mean32, scale32, device) if has_val else None,
                   yv=torch.as_tensor(np.asarray(y_val, dtype=np.int64), device=device) if has_val else None,
                   cw=torch.as_tensor(class_weights(y_train, C, class_weight), device=device),
                   mean=mean32, scale=scale32, n_classes=C, xviews=None if views is None else standardise(
                       np.asarray(views).transpose(1, 0, 2).reshape(-1, views.shape[2]), mean32, scale32,
                       device).view(views.shape[1], views.shape[0], views.shape[2]))
