"""Many torch heads trained at once as one batched model (the dinov2 linear-eval idea).

K heads of one kind share a device-resident feature tensor and the same minibatch order. Their weights are
stacked, (K, D, C) for a linear head and (K, D, H) + (K, H, C) for an MLP, so one `matmul` serves every head.
Each head keeps its own learning rate, weight decay, hidden width (padded to the widest, with a mask) and
dropout, and stops early on its own val loss. A head that stops is frozen at its best weights.

`LinearHead.fit` and `MLPHead.fit` are the K = 1 case of `train_batched`, so "a head trained in a sweep equals
the same head trained alone" holds by construction. Everything that could couple heads is made per head or
made independent of K:
- initial weights come from a generator seeded per head (the same seed gives the same init at any K);
- dropout noise is a counter-based hash of (seed, step, row, unit), not a draw whose layout depends on K;
- the loss is a per-head mean summed over heads, so one head's gradient never sees another's;
- AdamW is written out element-wise here, so per-head lr and weight decay are plain broadcasts.
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

log = logging.getLogger(__name__)

_ADAM_BETAS = (0.9, 0.999)
_ADAM_EPS = 1e-8
_EVAL_CHUNK = 2048  # rows per forward pass when scoring, bounds the (K, rows, H) activation


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
    kinds = {c.hidden > 0 for c in configs}
    if len(kinds) > 1:
        raise ConfigError("train_batched got linear (hidden=0) and MLP configs together; batch one kind at a time")
    mlp = kinds.pop()
    widths = sorted({c.hidden for c in configs})
    if len(widths) > 1:
        # One batch per width: padding narrow heads to the widest wastes their FLOPs (2.4x on the default grid),
        # and every group draws the same minibatch order from `seed`, so results do not depend on the grouping.
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
    xt = _standardise(X_train, mean32, scale32, device)
    yt = torch.as_tensor(y_train, device=device)
    xv = _standardise(X_val, mean32, scale32, device) if has_val else None
    yv = torch.as_tensor(np.asarray(y_val, dtype=np.int64), device=device) if has_val else None
    cw = torch.as_tensor(class_weights(y_train, C, settings.class_weight), device=device)

    model = _BatchedModel(configs, xt.shape[1], C, mlp=mlp, seed=seed, device=device)
    opt = _BatchedAdamW(model, configs, device=device)
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


def predict_proba(result_params: dict[str, torch.Tensor], mean: np.ndarray, scale: np.ndarray,
                  X: np.ndarray, *, device: torch.device | str = "cpu") -> np.ndarray:
    """Class probabilities of one trained head (its params as returned in `HeadResult.params`)."""
    device = torch.device(device)
    x = _standardise(X, mean, scale, device)
    p = {name: t.to(device).unsqueeze(0) for name, t in result_params.items()}
    out = []
    with torch.no_grad():
        for start in range(0, x.shape[0], _EVAL_CHUNK):
            out.append(torch.softmax(_forward(p, x[start : start + _EVAL_CHUNK]), -1)[0])
    if not out:
        return np.zeros((0, p["b2" if "b2" in p else "b"].shape[-1]), dtype=np.float32)
    return torch.cat(out).cpu().numpy()


# --- internals ---------------------------------------------------------------------------------------------


class _BatchedModel(torch.nn.Module):
    """K heads with stacked weights; MLP hidden widths are padded to the widest and masked."""

    def __init__(self, configs: list[TorchHeadConfig], dim: int, n_classes: int, *, mlp: bool, seed: int,
                 device: torch.device) -> None:
        super().__init__()
        self.mlp = mlp
        self.widths = [c.hidden for c in configs]
        K = len(configs)
        if mlp:
            H = max(self.widths)
            shapes = {"W1": (K, dim, H), "b1": (K, 1, H), "W2": (K, H, n_classes), "b2": (K, 1, n_classes)}
        else:
            shapes = {"W": (K, dim, n_classes), "b": (K, 1, n_classes)}
        tensors = {name: torch.zeros(shape) for name, shape in shapes.items()}
        init_cache: dict[int, dict[str, torch.Tensor]] = {}
        for k, width in enumerate(self.widths):
            # Heads of equal width get identical init (one generator per head, seeded alike): common random
            # numbers make the sweep compare hyperparameters, not draws; it also makes K irrelevant.
            if width not in init_cache:
                init_cache[width] = _init_head(dim, width, n_classes, seed)
            for name, t in init_cache[width].items():
                tensors[name][k, : t.shape[0], : t.shape[1]] = t
        for name, t in tensors.items():
            self.register_parameter(name, torch.nn.Parameter(t.to(device)))
        if mlp:
            hmask = torch.zeros(K, 1, H)
            for k, width in enumerate(self.widths):
                hmask[k, :, :width] = 1.0
            self.register_buffer("hmask", hmask.to(device))
            self.register_buffer("dropout", torch.tensor([c.dropout for c in configs], device=device).view(K, 1, 1))
            self.any_dropout = any(c.dropout > 0 for c in configs)

    def forward(self, x: torch.Tensor, *, noise_key: tuple[int, int] | None = None) -> torch.Tensor:
        params = dict(self.named_parameters())
        if not self.mlp:
            return _forward(params, x)
        h = torch.relu(stacked_matmul(x, params["W1"]) + params["b1"])
        if self.training and noise_key is not None and self.any_dropout:
            u = _hash_uniform(*noise_key, x.shape[0], h.shape[-1], device=x.device)  # (B, H), shared by heads
            keep = (u >= self.dropout).to(h.dtype) / (1.0 - self.dropout)
            h = h * keep
        h = h * self.hmask
        return torch.matmul(h, params["W2"]) + params["b2"]

    def snapshot(self) -> dict[str, torch.Tensor]:
        return {name: p.detach().clone() for name, p in self.named_parameters()}

    @torch.no_grad()
    def copy_heads_into(self, store: dict[str, torch.Tensor], which: torch.Tensor) -> None:
        """Copy the current weights of heads where `which` (K,) is True into `store`."""
        for name, p in self.named_parameters():
            mask = which.view(-1, *([1] * (p.dim() - 1)))
            store[name].copy_(torch.where(mask, p, store[name]))

    @torch.no_grad()
    def load(self, store: dict[str, torch.Tensor]) -> None:
        for name, p in self.named_parameters():
            p.copy_(store[name])

    def per_head_params(self) -> list[dict[str, torch.Tensor]]:
        """Unpadded per-head weights on the CPU, with the leading K and bias row dimensions dropped."""
        cpu = {name: p.detach().cpu() for name, p in self.named_parameters()}
        out = []
        for k, width in enumerate(self.widths):
            if self.mlp:
                out.append({"W1": cpu["W1"][k, :, :width].clone(), "b1": cpu["b1"][k, 0, :width].clone(),
                            "W2": cpu["W2"][k, :width].clone(), "b2": cpu["b2"][k, 0].clone()})
            else:
                out.append({"W": cpu["W"][k].clone(), "b": cpu["b"][k, 0].clone()})
        return out


def _init_head(dim: int, width: int, n_classes: int, seed: int) -> dict[str, torch.Tensor]:
    """Initial weights from a generator seeded for this head.

    A linear head starts near zero (normal, std 0.01, as dinov2's linear eval does): on standardised features
    nn.Linear's uniform +-1/sqrt(D) init is noise that a short schedule never fully unlearns. The MLP keeps
    nn.Linear's default init, which it needs to break the symmetry between hidden units.
    """
    gen = torch.Generator().manual_seed(seed)

    def uniform(shape: tuple[int, ...], fan_in: int) -> torch.Tensor:
        bound = 1.0 / math.sqrt(fan_in)
        return (torch.rand(shape, generator=gen) * 2 - 1) * bound

    if width == 0:
        return {"W": torch.randn((dim, n_classes), generator=gen) * 0.01, "b": torch.zeros((1, n_classes))}
    return {"W1": uniform((dim, width), dim), "b1": uniform((1, width), dim),
            "W2": uniform((width, n_classes), width), "b2": uniform((1, n_classes), width)}


def _forward(params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Plain (no dropout) forward of stacked heads: x (B, D) -> logits (K, B, C). Biases may be (K, C) or
    (K, 1, C)."""

    def bias(b: torch.Tensor) -> torch.Tensor:
        return b if b.dim() == 3 else b.unsqueeze(1)

    if "W" in params:
        return stacked_matmul(x, params["W"]) + bias(params["b"])
    h = torch.relu(stacked_matmul(x, params["W1"]) + bias(params["b1"]))
    return torch.matmul(h, params["W2"]) + bias(params["b2"])


def stacked_matmul(x: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """x (B, D) @ W (K, D, O) -> (K, B, O) as ONE (B, D) x (D, K*O) GEMM.

    `torch.matmul` broadcasts x to K copies and runs a batched GEMM, which for the narrow outputs of linear
    heads (O = n_classes) was measured ~10x slower than one wide GEMM here; a plain (D, O) W is a plain GEMM.
    """
    if W.dim() == 2:
        return x @ W
    K, D, O = W.shape
    return (x @ W.permute(1, 0, 2).reshape(D, K * O)).view(x.shape[0], K, O).permute(1, 0, 2)


class _BatchedAdamW:
    """AdamW (torch's update rule) over stacked heads with per-head lr and weight decay as (K, 1, 1) tensors.

    Written out because a param group per head would need per-head tensors, undoing the batching.
    """

    def __init__(self, model: _BatchedModel, configs: list[TorchHeadConfig], *, device: torch.device) -> None:
        self.params = [p for _, p in model.named_parameters()]
        self.decays = [name.startswith("W") for name, _ in model.named_parameters()]  # no decay on biases
        self.lr = torch.tensor([c.lr for c in configs], device=device).view(-1, 1, 1)
        self.wd = torch.tensor([c.weight_decay for c in configs], device=device).view(-1, 1, 1)
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = 0

    @torch.no_grad()
    def step(self, *, lr_scale: float, active: torch.Tensor) -> None:
        self.t += 1
        b1, b2 = _ADAM_BETAS
        bc1, bc2 = 1 - b1**self.t, 1 - b2**self.t
        lr = self.lr * lr_scale * active.view(-1, 1, 1).to(self.lr.dtype)  # frozen heads get lr 0
        for p, m, v, decays in zip(self.params, self.m, self.v, self.decays):
            if p.grad is None:
                continue
            g = p.grad
            if decays:
                p.mul_(1 - lr * self.wd)
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            denom = (v / bc2).sqrt_().add_(_ADAM_EPS)
            p.sub_(lr / bc1 * m / denom)


def _weighted_ce(logits: torch.Tensor, y: torch.Tensor, class_weight: torch.Tensor) -> torch.Tensor:
    """Per-head weighted mean cross-entropy: logits (K, B, C), y (B,) -> (K,)."""
    K, B, C = logits.shape
    nll = F.cross_entropy(logits.reshape(K * B, C), y.repeat(K), reduction="none").view(K, B)
    w = class_weight[y]
    return (nll * w).sum(-1) / w.sum()


@torch.no_grad()
def _evaluate(model: _BatchedModel, x: torch.Tensor, y: torch.Tensor, cw: torch.Tensor):
    model.eval()
    K = len(model.widths)
    loss, correct = torch.zeros(K, device=x.device), torch.zeros(K, device=x.device)
    w_total = cw[y].sum()
    for start in range(0, x.shape[0], _EVAL_CHUNK):
        logits = model(x[start : start + _EVAL_CHUNK])
        yb = y[start : start + _EVAL_CHUNK]
        loss += _weighted_ce(logits, yb, cw) * cw[yb].sum()
        correct += (logits.argmax(-1) == yb).sum(-1)
    model.train()
    return loss / w_total, correct / x.shape[0]


@torch.no_grad()
def _predict(model: _BatchedModel, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    out = torch.cat([torch.softmax(model(x[s : s + _EVAL_CHUNK]), -1) for s in range(0, x.shape[0], _EVAL_CHUNK)],
                    dim=1)
    model.train()
    return out


def _standardise(X: np.ndarray, mean: np.ndarray, scale: np.ndarray, device: torch.device) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(X), device=device).float()
    return (x - torch.as_tensor(mean, device=device)) / torch.as_tensor(scale, device=device)



_M32 = 0xFFFFFFFF


def _mix32(x: torch.Tensor | int):
    """A 32-bit integer hash (lowbias32 style) kept in int64 so no product overflows."""
    x = x & _M32
    x = ((x >> 16) ^ x) * 0x45D9F3B & _M32
    x = ((x >> 16) ^ x) * 0x45D9F3B & _M32
    return (x >> 16) ^ x


def _hash_uniform(seed: int, step: int, rows: int, cols: int, *, device: torch.device) -> torch.Tensor:
    """Uniform [0, 1) noise that is a pure function of (seed, step, row, column).

    Unlike a generator draw, unit j of row b gets the same number whatever the widest head is, so dropout
    masks do not depend on which other heads share the batch.
    """
    key = _mix32(_mix32(seed * 0x9E3779B1 + 0x7F4A7C15) ^ step)
    r = torch.arange(rows, device=device, dtype=torch.int64).unsqueeze(1)
    c = torch.arange(cols, device=device, dtype=torch.int64).unsqueeze(0)
    h = _mix32(c * 0x27D4EB2D + _mix32(r ^ key))
    return (h >> 8).to(torch.float32) / float(1 << 24)


def _nan_to_none(v: float) -> float | None:
    return None if not np.isfinite(v) else float(v)
