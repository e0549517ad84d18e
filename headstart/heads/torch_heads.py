"""PyTorch linear and MLP heads as scikit-learn estimators.

`fit` is the K = 1 case of `headstart.heads.batched.train_batched`, the same code a sweep runs for all its
configs at once, so a head fitted alone equals the same config fitted inside a sweep. `LinearKind` and
`MLPKind` are their head kinds (heads.protocol): the grid, the batched sweep, the saved tensors, the graph.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin

from headstart.device import resolve_device
from headstart.heads.batched import HeadResult, TorchHeadConfig, TrainSettings, train_batched, train_batched_seeds
from headstart.heads.protocol import Candidate, HeadKind, full_proba, require
from headstart.heads.stacked import predict_proba


class _TorchHead(ClassifierMixin, BaseEstimator):
    """Shared fit/predict; subclasses only declare their hyperparameters."""

    def _config(self) -> TorchHeadConfig:
        return TorchHeadConfig(lr=self.lr, weight_decay=self.weight_decay)

    def _settings(self) -> TrainSettings:
        return TrainSettings(epochs=self.epochs, batch_size=self.batch_size, patience=self.patience,
                             class_weight=self.class_weight, precision=self.precision)

    def fit(self, X, y, *, X_val=None, y_val=None, mask=None, mask_val=None):
        """Fit on (X, y); with (X_val, y_val), stop early on val loss and keep the best epoch's weights.
        A multi-label y (N, L) of 0/1 trains one sigmoid per finding on its `mask`ed labels (masked BCE)."""
        X = np.asarray(X, dtype=np.float32)
        if np.ndim(y) == 2:
            self.classes_ = np.arange(np.shape(y)[1])
            (result,) = train_batched_seeds(
                X, y, None if X_val is None else np.asarray(X_val, dtype=np.float32), y_val,
                configs=[self._config()], settings=self._settings(), n_classes=len(self.classes_),
                device=resolve_device(self.device), seeds=(self.seed,), mask_train=mask, mask_val=mask_val)[0]
            self._adopt(result)
            return self
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
        self.link_ = result.link  # "sigmoid": multi-label, one probability per finding
        self.params_ = result.params
        self.mean_, self.scale_ = result.mean, result.scale
        self.history_ = result.history
        self.best_epoch_ = result.best_epoch
        self.n_features_in_ = result.mean.shape[0]

    def predict_proba(self, X) -> np.ndarray:
        link = getattr(self, "link_", "softmax")
        proba = predict_proba(self.params_, self.mean_, self.scale_, np.asarray(X, dtype=np.float32), link=link)
        return proba[:, : len(self.classes_)]  # a one-class fit still trains a 2-logit head

    def predict(self, X) -> np.ndarray:
        if getattr(self, "link_", "softmax") == "sigmoid":
            return (self.predict_proba(X) >= 0.5).astype(np.int64)
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


class LinearKind(HeadKind):
    """The linear head kind: every config of every seed trains in one batched model (`train_batched_seeds`)."""

    name = "linear"
    estimator = LinearHead
    tensors = ("W", "b", "mean", "scale")
    seeded = True
    on_device = True

    def configs(self, grid) -> list[dict]:
        return [{"lr": lr, "weight_decay": wd}
                for lr, wd in itertools.product(grid.linear_lr, grid.linear_weight_decay)]

    def _halving(self, grid) -> tuple[int, ...]:
        return grid.train.halving  # a linear sweep's cost is per-step overhead, which halving does not reduce

    def fit_one(self, params, train, *, fit, seed, epochs=None) -> LinearHead:
        settings = fit.grid.train
        est = self.estimator(**params, epochs=max(1, epochs or settings.epochs), batch_size=settings.batch_size,
                             patience=settings.patience, class_weight=fit.class_weight, seed=seed,
                             device=str(fit.device), precision=fit.precision)
        return est.fit(train.X, train.y, mask=train.mask)

    def fit_sweeps(self, train, val, *, fit, seeds, params=None, stop_split=None) -> list[list[Candidate]]:
        """Every config of every seed in one batched loop, stopping early on val, or on the train rows
        `stop_split` picks (then fitted on the others, and val predicted with the weights each head kept)."""
        params = self.configs(fit.grid) if params is None else params
        settings = dataclasses.replace(fit.grid.train, class_weight=fit.class_weight, precision=fit.precision,
                                       halving=self._halving(fit.grid))
        fit_rows, stop_rows = train, val
        if stop_split is not None:
            stop = np.zeros(len(train.y), dtype=bool)
            stop[stop_split(train)] = True
            fit_rows, stop_rows = train.take(np.flatnonzero(~stop)), train.take(np.flatnonzero(stop))
        per_seed = train_batched_seeds(fit_rows.X, fit_rows.y, stop_rows.X, stop_rows.y,
                                       configs=torch_configs(params), settings=settings, n_classes=fit.n_classes,
                                       device=fit.device, seeds=seeds, views=fit_rows.views,
                                       mask_train=fit_rows.mask, mask_val=stop_rows.mask)
        classes, out = np.arange(fit.n_classes), []
        for seed, results in zip(seeds, per_seed):
            heads = [self.estimator._from_batched(r, classes, settings=settings, seed=seed, device=str(fit.device))
                     for r in results]
            out.append([Candidate(p, r.val_proba if stop_rows is val else full_proba(h, val.X, fit.n_classes), h,
                                  r.best_epoch, r.history) for p, r, h in zip(params, results, heads)])
        return out

    def record_hyper(self, cand, fit) -> dict:
        train = fit.grid.train
        return {"epochs": train.epochs, "batch_size": train.batch_size, "patience": train.patience,
                "best_epoch": cand.best_epoch, "precision": fit.precision}

    def state(self, head: LinearHead, dtype: str) -> tuple[dict, dict]:
        tensors = {name: p.detach().cpu().numpy() for name, p in head.params_.items()}
        state = {"best_epoch": int(head.best_epoch_)}
        if getattr(head, "link_", "softmax") == "sigmoid":
            state["link"] = "sigmoid"
        return {**tensors, "mean": head.mean_, "scale": head.scale_}, state

    def build(self, params: dict, t: dict, state: dict, classes: np.ndarray) -> LinearHead:
        names = self.tensors[:-2]  # the weights; mean and scale are the standardisation
        head = self.estimator(**params)
        head.classes_ = classes
        head.params_ = {name: torch.from_numpy(np.ascontiguousarray(t[name])) for name in names}
        head.mean_, head.scale_ = t["mean"], t["scale"]
        head.history_, head.best_epoch_ = [], state.get("best_epoch", 0)
        head.link_ = state.get("link", "softmax")
        head.n_features_in_ = len(t["mean"])
        first, last = t[names[0]], t[names[-1]]
        require(first.shape[0] == len(t["mean"]) == len(t["scale"]) and last.shape[-1] >= len(classes),
                f"weights {first.shape} .. {last.shape} do not fit {len(t['mean'])} features and "
                f"{len(classes)} classes")
        return head

    def graph(self, head: LinearHead):
        from headstart.heads.graph import TorchHeadGraph

        return TorchHeadGraph(head.params_, head.mean_, head.scale_, len(head.classes_),
                              sigmoid=getattr(head, "link_", "softmax") == "sigmoid")


class MLPKind(LinearKind):
    """The MLP head kind: trained like linear, with successive halving across its sweep (SweepGrid.mlp_halving)."""

    name = "mlp"
    estimator = MLPHead
    tensors = ("W1", "b1", "W2", "b2", "mean", "scale")

    def configs(self, grid) -> list[dict]:
        return [{"lr": lr, "weight_decay": wd, "hidden": h, "dropout": d} for lr, wd, h, d in
                itertools.product(grid.mlp_lr, grid.mlp_weight_decay, grid.mlp_hidden, grid.mlp_dropout)]

    def _halving(self, grid) -> tuple[int, ...]:
        return grid.mlp_halving


def torch_configs(configs: list[dict]) -> list[TorchHeadConfig]:
    """Hyperparameter dicts of a linear or MLP sweep -> the configs `train_batched` takes."""
    return [TorchHeadConfig(lr=c["lr"], weight_decay=c["weight_decay"], hidden=c.get("hidden", 0),
                            dropout=c.get("dropout", 0.0)) for c in configs]
