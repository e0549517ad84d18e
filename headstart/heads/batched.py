"""Many torch heads trained at once as one batched model (the dinov2 linear-eval idea).

K heads of one kind share a device-resident feature tensor and the same minibatch order. Their weights are
stacked (`headstart.heads.stacked`), so one `matmul` serves every head. Each head keeps its own learning
rate, weight decay, hidden width (padded to the widest, with a mask) and dropout, and stops early on its own
val loss. A head that stops is frozen at its best weights.

`LinearHead.fit` and `MLPHead.fit` are the K = 1 case of `train_batched`, so "a head trained in a sweep equals
the same head trained alone" holds by construction. Everything that could couple heads is made per head or
made independent of K:
- initial weights come from a generator seeded per head (the same seed gives the same init at any K);
- dropout noise is a counter-based hash of (seed, step, row, unit), not a draw whose layout depends on K;
- the loss is a per-head mean summed over heads, so one head's gradient never sees another's;
- AdamW is written out element-wise (`headstart.heads.batched_adamw`), so per-head lr and weight decay are
  plain broadcasts.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from headstart.data.balance import class_weights
from headstart.errors import ConfigError
from headstart.heads.batched_adamw import BatchedAdamW
from headstart.heads.stacked import EVAL_CHUNK, StackedHeads, standardise

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TorchHeadConfig:
    """The hyperparameters that may differ between heads trained in one batch."""

    lr: float = 1e-3  # peak AdamW learning rate, decayed by a cosine schedule
    weight_decay: float = 1e-4  # decoupled (AdamW) decay on weights, not biases
    hidden: int = 0  # hidden width; 0 means a linear head
    dropout: float = 0.0  # dropout on the hidden layer (MLP only)


@dataclass(frozen=True)
class TrainSettings:
    """What every head of one batch shares: they walk the same minibatches for the same number of steps."""

    epochs: int = 50  # maximum epochs; early stopping usually ends sooner
    batch_size: int = 256  # rows per minibatch, drawn in the same order for every head
    patience: int = 8  # epochs without a val-loss improvement before a head is frozen
    class_weight: str | None = None  # "balanced" weights the loss by inverse class frequency; None = uniform
    min_delta: float = 1e-4  # a val-loss drop smaller than this is not an improvement
    min_steps_per_epoch: int = 8  # small train sets get smaller batches, so a short schedule still converges

    def batch_rows(self, n_rows: int) -> int:
        """Rows per minibatch: `batch_size`, lowered for small train sets to keep `min_steps_per_epoch`."""
        return max(1, min(self.batch_size, math.ceil(n_rows / self.min_steps_per_epoch)))


@dataclass
class HeadResult:
    """One trained head: its weights (CPU tensors), standardisation, history and val probabilities."""

    config: TorchHeadConfig
    params: dict[str, torch.Tensor]  # linear: W (D, C), b (C,); mlp: W1, b1, W2, b2
    mean: np.ndarray  # feature mean on train, used to standardise inputs
    scale: np.ndarray  # feature std on train
    n_classes: int
    best_epoch: int  # 1-based epoch whose weights were kept
    history: list[dict] = field(default_factory=list)  # per epoch: train/val loss and accuracy
    val_proba: np.ndarray | None = None  # (n_val, C) at the kept weights, when val was given


def train_batched(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    *,
    configs: list[TorchHeadConfig],
    settings: TrainSettings = TrainSettings(),
    n_classes: int | None = None,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> list[HeadResult]:
    """Train every config at once; return one `HeadResult` per config, in order.

    `y_*` are integer class indices in [0, n_classes). Without val, every head trains for all epochs and
    keeps its last weights.
    """
    if not configs:
        return []
    if len({c.hidden > 0 for c in configs}) > 1:
        raise ConfigError("train_batched got linear (hidden=0) and MLP configs together; batch one kind at a time")
    widths = sorted({c.hidden for c in configs})
    if len(widths) > 1:
        # One batch per width: padding narrow heads to the widest wastes their FLOPs, and every group draws the
        # same minibatch order from `seed`, so results do not depend on the grouping.
        by_width = {
            w: train_batched(X_train, y_train, X_val, y_val, configs=[c for c in configs if c.hidden == w],
                             settings=settings, n_classes=n_classes, device=device, seed=seed)
            for w in widths
        }
        return [by_width[c.hidden].pop(0) for c in configs]
    device = torch.device(device)
    y_train = np.asarray(y_train, dtype=np.int64)
    C = int(n_classes if n_classes is not None else y_train.max() + 1)
    C = max(C, 2)
    has_val = X_val is not None and y_val is not None and len(y_val) > 0

    mean = X_train.mean(axis=0, dtype=np.float64)
    scale = X_train.std(axis=0, dtype=np.float64)
    scale[scale < 1e-8] = 1.0  # constant features carry no signal; avoid dividing by zero
    mean32, scale32 = mean.astype(np.float32), scale.astype(np.float32)
    xt = standardise(X_train, mean32, scale32, device)
    yt = torch.as_tensor(y_train, device=device)
    xv = standardise(X_val, mean32, scale32, device) if has_val else None
    yv = torch.as_tensor(np.asarray(y_val, dtype=np.int64), device=device) if has_val else None
    cw = torch.as_tensor(class_weights(y_train, C, settings.class_weight), device=device)

    model = StackedHeads([c.hidden for c in configs], [c.dropout for c in configs], dim=xt.shape[1], n_classes=C,
                         seed=seed, device=device)
    opt = make_optimiser(model, configs, device=device)
    K, N = len(configs), xt.shape[0]
    batch = settings.batch_rows(N)
    steps_per_epoch = math.ceil(N / batch)
    total_steps = settings.epochs * steps_per_epoch
    perm_gen = torch.Generator().manual_seed(seed)

    active = torch.ones(K, dtype=torch.bool, device=device)
    best_loss = torch.full((K,), float("inf"), device=device)
    best_epoch = torch.zeros(K, dtype=torch.long, device=device)
    since_best = torch.zeros(K, dtype=torch.long, device=device)
    best = model.snapshot()
    histories: list[list[dict]] = [[] for _ in range(K)]
    step = 0
    for epoch in range(1, settings.epochs + 1):
        perm = torch.randperm(N, generator=perm_gen).to(device)
        loss_sum = torch.zeros(K, device=device)
        correct = torch.zeros(K, device=device)
        for start in range(0, N, batch):
            idx = perm[start : start + batch]
            xb, yb = xt[idx], yt[idx]
            logits = model(xb, noise_key=(seed, step))  # (K, B, C)
            per_head = _weighted_ce(logits, yb, cw)  # (K,)
            model.zero_grad()
            per_head.sum().backward()
            lr_scale = 0.5 * (1.0 + math.cos(math.pi * step / total_steps))
            opt.step(lr_scale=lr_scale, active=active)
            with torch.no_grad():
                loss_sum += per_head.detach() * len(idx)
                correct += (logits.argmax(-1) == yb).sum(-1)
            step += 1
        train_loss, train_acc = loss_sum / N, correct / N
        if has_val:
            val_loss, val_acc = _evaluate(model, xv, yv, cw)
            improved = active & (val_loss < best_loss - settings.min_delta)
            model.copy_heads_into(best, improved)
            best_loss = torch.where(improved, val_loss, best_loss)
            best_epoch = torch.where(improved, epoch, best_epoch)
            since_best = torch.where(improved, 0, since_best + 1)
        else:
            val_loss = val_acc = torch.full((K,), float("nan"), device=device)
            best_epoch = torch.where(active, epoch, best_epoch)
        rows = torch.stack([train_loss, train_acc, val_loss, val_acc]).cpu().numpy()  # one sync per epoch
        was_active = active.cpu().numpy()
        for k in np.flatnonzero(was_active):
            histories[k].append({
                "epoch": epoch,
                "train_loss": float(rows[0, k]),
                "train_accuracy": float(rows[1, k]),
                "val_loss": _nan_to_none(rows[2, k]),
                "val_accuracy": _nan_to_none(rows[3, k]),
            })
        if has_val:
            active = active & (since_best < settings.patience)
            if not bool(active.any()):
                log.debug("all %d heads stopped early at epoch %d", K, epoch)
                break
    if has_val:
        model.load(best)
    val_proba = _predict(model, xv).cpu().numpy() if has_val else None
    params = model.per_head_params()
    best_epochs = best_epoch.cpu().tolist()
    return [
        HeadResult(config=cfg, params=params[k], mean=mean32, scale=scale32, n_classes=C,
                   best_epoch=int(best_epochs[k]), history=histories[k],
                   val_proba=None if val_proba is None else val_proba[k])
        for k, cfg in enumerate(configs)
    ]


def make_optimiser(model: StackedHeads, configs: list[TorchHeadConfig], *, device: torch.device) -> BatchedAdamW:
    """AdamW with each head's own lr and weight decay; weights decay, biases do not."""
    names = [name for name, _ in model.named_parameters()]
    return BatchedAdamW(model.parameters(), decays=[n.startswith("W") for n in names], lr=[c.lr for c in configs],
                        weight_decay=[c.weight_decay for c in configs], device=device)


def _weighted_ce(logits: torch.Tensor, y: torch.Tensor, class_weight: torch.Tensor) -> torch.Tensor:
    """Per-head weighted mean cross-entropy: logits (K, B, C), y (B,) -> (K,)."""
    K, B, C = logits.shape
    nll = F.cross_entropy(logits.reshape(K * B, C), y.repeat(K), reduction="none").view(K, B)
    w = class_weight[y]
    return (nll * w).sum(-1) / w.sum()


@torch.no_grad()
def _evaluate(model: StackedHeads, x: torch.Tensor, y: torch.Tensor, cw: torch.Tensor):
    model.eval()
    K = len(model.widths)
    loss, correct = torch.zeros(K, device=x.device), torch.zeros(K, device=x.device)
    w_total = cw[y].sum()
    for start in range(0, x.shape[0], EVAL_CHUNK):
        logits = model(x[start : start + EVAL_CHUNK])
        yb = y[start : start + EVAL_CHUNK]
        loss += _weighted_ce(logits, yb, cw) * cw[yb].sum()
        correct += (logits.argmax(-1) == yb).sum(-1)
    model.train()
    return loss / w_total, correct / x.shape[0]


@torch.no_grad()
def _predict(model: StackedHeads, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    out = torch.cat([torch.softmax(model(x[s : s + EVAL_CHUNK]), -1) for s in range(0, x.shape[0], EVAL_CHUNK)],
                    dim=1)
    model.train()
    return out


def _nan_to_none(v: float) -> float | None:
    return None if not np.isfinite(v) else float(v)
