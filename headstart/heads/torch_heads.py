"""PyTorch linear and MLP heads as scikit-learn estimators.

`fit` is the K = 1 case of `headstart.heads.batched.train_batched`, the same code a sweep runs for all its
configs at once, so a head fitted alone equals the same config fitted inside a sweep.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from headstart.device import resolve_device
from headstart.heads.batched import HeadResult, TorchHeadConfig, TrainSettings, train_batched
from headstart.heads.stacked import predict_proba


class _TorchHead(ClassifierMixin, BaseEstimator):
    """Shared fit/predict; subclasses only declare their hyperparameters."""

    def _config(self) -> TorchHeadConfig:
        return TorchHeadConfig(lr=self.lr, weight_decay=self.weight_decay)

    def _settings(self) -> TrainSettings:
        return TrainSettings(epochs=self.epochs, batch_size=self.batch_size, patience=self.patience,
                             class_weight=self.class_weight, precision=self.precision)

    def fit(self, X, y, *, X_val=None, y_val=None):
        """Fit on (X, y); with (X_val, y_val), stop early on val loss and keep the best epoch's weights."""
        X = np.asarray(X, dtype=np.float32)
        self.classes_, y_idx = np.unique(np.asarray(y), return_inverse=True)
        yv_idx = None
        if X_val is not None and y_val is not None:
            yv_idx = np.searchsorted(self.classes_, np.asarray(y_val))
            known = np.isin(np.asarray(y_val), self.classes_)
            X_val, yv_idx = np.asarray(X_val, dtype=np.float32)[known], yv_idx[known]
        (result,) = train_batched(X, y_idx, X_val, yv_idx, configs=[self._config()], settings=self._settings(),
                                  n_classes=len(self.classes_), device=resolve_device(self.device), seed=self.seed)
        self._adopt(result)
        return self

    @classmethod
    def _from_batched(cls, result: HeadResult, classes: np.ndarray, *, settings: TrainSettings, seed: int,
                      device: str = "cpu") -> _TorchHead:
        """The fitted estimator that `fit` would have produced, for one head of a batched sweep.

        `train_batched` trains every config of a sweep at once; the sweep adopts each head's trained weights
        here instead of refitting it. `classes` are the labels that the result's class indices stand for.
        """
        cfg = result.config
        names = cls._get_param_names()
        if (cfg.hidden > 0) != ("hidden" in names):
            raise ValueError(f"{cls.__name__} cannot adopt a head with hidden={cfg.hidden}; use "
                              f"{'MLPHead' if cfg.hidden else 'LinearHead'}")
        hyper = {name: getattr(cfg, name) for name in ("lr", "weight_decay", "hidden", "dropout") if name in names}
        head = cls(**hyper, epochs=settings.epochs, batch_size=settings.batch_size, patience=settings.patience,
                   class_weight=settings.class_weight, seed=seed, device=device, precision=settings.precision)
        head.classes_ = np.asarray(classes)
        head._adopt(result)
        return head

    def _adopt(self, result: HeadResult) -> None:
        self.params_ = result.params
        self.mean_, self.scale_ = result.mean, result.scale
        self.history_ = result.history
        self.best_epoch_ = result.best_epoch
        self.n_features_in_ = result.mean.shape[0]

    def predict_proba(self, X) -> np.ndarray:
        proba = predict_proba(self.params_, self.mean_, self.scale_, np.asarray(X, dtype=np.float32))
        return proba[:, : len(self.classes_)]  # a one-class fit still trains a 2-logit head

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


class LinearHead(_TorchHead):
    """A linear layer on standardised features, trained with AdamW + cosine decay and val early stopping."""

    def __init__(self, *, lr: float = 1e-3, weight_decay: float = 1e-4, epochs: int = 50, batch_size: int = 256,
                 class_weight: str | None = None, patience: int = 8, seed: int = 0, device: str = "cpu",
                 precision: str = "fp32") -> None:
        self.lr = lr
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.class_weight = class_weight
        self.patience = patience
        self.seed = seed
        self.device = device
        self.precision = precision  # "fp32" or "bf16" training steps (TrainSettings.precision)


class MLPHead(LinearHead):
    """One hidden ReLU layer with dropout; otherwise trained exactly like `LinearHead`."""

    def __init__(self, *, lr: float = 1e-3, weight_decay: float = 1e-4, epochs: int = 50, batch_size: int = 256,
                 class_weight: str | None = None, patience: int = 8, seed: int = 0, device: str = "cpu",
                 precision: str = "fp32", hidden: int = 512, dropout: float = 0.0) -> None:
        # The full signature stays spelled out: scikit-learn's get_params reads it.
        super().__init__(lr=lr, weight_decay=weight_decay, epochs=epochs, batch_size=batch_size,
                         class_weight=class_weight, patience=patience, seed=seed, device=device, precision=precision)
        self.hidden = hidden
        self.dropout = dropout

    def _config(self) -> TorchHeadConfig:
        return TorchHeadConfig(lr=self.lr, weight_decay=self.weight_decay, hidden=self.hidden, dropout=self.dropout)
