"""K torch heads as one stacked model: one matmul serves every head, and nothing in a head depends on K.

Weights are stacked, (K, D, C) for a linear head and (K, D, H) + (K, H, C) for an MLP. MLP hidden widths are
padded to the widest and masked. Initial weights come from a generator seeded per head, and dropout noise is a
counter-based hash of (seed, step, row, unit), so the same head gets the same numbers whichever heads share
its batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from headstart.heads.scaling import standardise

EVAL_CHUNK = 2048  # rows per forward pass when scoring, bounds the (K, rows, H) activation


class StackedHeads(torch.nn.Module):
    """K linear heads (every width 0) or K MLP heads (every width > 0) with stacked weights.

    `seed` is one seed for every head or one per head. Heads of several seeds sit seed by seed, so each seed's
    heads form one block of the batch that can walk that seed's own minibatches (`forward(blocks=...)`).
    """

    def __init__(self, widths: list[int], dropouts: list[float], *, dim: int, n_classes: int,
                 seed: int | Sequence[int], device: torch.device) -> None:
        super().__init__()
        self.mlp = widths[0] > 0
        self.widths = list(widths)
        K = len(widths)
        self.seeds = [seed] * K if isinstance(seed, int) else [int(s) for s in seed]
        if self.mlp:
            H = max(self.widths)
            shapes = {"W1": (K, dim, H), "b1": (K, 1, H), "W2": (K, H, n_classes), "b2": (K, 1, n_classes)}
        else:
            shapes = {"W": (K, dim, n_classes), "b": (K, 1, n_classes)}
        tensors = {name: torch.zeros(shape) for name, shape in shapes.items()}
        init_cache: dict[tuple[int, int], dict[str, torch.Tensor]] = {}
        for k, (width, head_seed) in enumerate(zip(self.widths, self.seeds)):
            # Heads of equal width and seed get identical init (one generator per head, seeded alike): common
            # random numbers make the sweep compare hyperparameters, not draws; it also makes K irrelevant.
            if (width, head_seed) not in init_cache:
                init_cache[width, head_seed] = _init_head(dim, width, n_classes, head_seed)
            for name, t in init_cache[width, head_seed].items():
                tensors[name][k, : t.shape[0], : t.shape[1]] = t
        for name, t in tensors.items():
            self.register_parameter(name, torch.nn.Parameter(t.to(device)))
        self.dropouts = list(dropouts)
        self._set_heads(list(range(K)))

    def forward(self, x: torch.Tensor, *, noise_key: tuple[int, int] | int | None = None,
                blocks: list[tuple[int, int, int]] | None = None) -> torch.Tensor:
        """Logits (K, B, C). x (B, D) is seen by every head, dropout keyed by noise_key = (seed, step).

        With `blocks` (`seed_blocks()`), x is (S, B, D): heads start:end see block s's rows only, and noise_key
        is the step, each block keying its dropout with its own seed.
        """
        params = dict(self.named_parameters())
        if blocks is None:
            return self._block(params, x, noise_key, slice(None))
        return torch.cat([self._block(params, xs, None if noise_key is None else (seed, noise_key), slice(lo, hi))
                          for (seed, lo, hi), xs in zip(blocks, x)])

    def _block(self, params: dict[str, torch.Tensor], x: torch.Tensor, noise_key: tuple[int, int] | None,
               heads: slice) -> torch.Tensor:
        p = {name: t[heads] for name, t in params.items()}
        if not self.mlp:
            return forward(p, x)
        h = torch.relu(stacked_matmul(x, p["W1"]) + p["b1"])
        if self.training and noise_key is not None and self.any_dropout:
            u = hash_uniform(*noise_key, x.shape[0], h.shape[-1], device=x.device)  # (B, H), shared by heads
            dropout = self.dropout[heads]
            h = h * ((u >= dropout).to(h.dtype) / (1.0 - dropout))
        h = h * self.hmask[heads]
        return torch.matmul(h, p["W2"]) + p["b2"]

    def seed_blocks(self) -> list[tuple[int, int, int]]:
        """(seed, start, end) of each run of same-seed heads in the batch, in order."""
        seeds = [self.seeds[k] for k in self.live.tolist()]
        starts = [i for i in range(len(seeds)) if i == 0 or seeds[i] != seeds[i - 1]]
        return [(seeds[a], a, b) for a, b in zip(starts, starts[1:] + [len(seeds)])]

    def snapshot(self) -> dict[str, torch.Tensor]:
        return {name: p.detach().clone() for name, p in self.named_parameters()}

    @torch.no_grad()
    def copy_heads_into(self, store: dict[str, torch.Tensor], which: torch.Tensor) -> None:
        """Copy the current weights of the heads in the batch where `which` (one flag per head in the batch)
        is True into `store`, which holds every original head."""
        live = self.live.to(which.device)
        for name, p in self.named_parameters():
            mask = which.view(-1, *([1] * (p.dim() - 1)))
            store[name].index_copy_(0, live, torch.where(mask, p, store[name].index_select(0, live)))

    @torch.no_grad()
    def keep(self, index: torch.Tensor) -> None:
        """Keep only the heads at positions `index` (of the current K), in that order: a head that stopped
        training leaves the batch, so it costs no FLOPs. The kept heads' numbers do not change."""
        for name, p in list(self.named_parameters()):
            setattr(self, name, torch.nn.Parameter(p.detach().index_select(0, index.to(p.device))))
        self._set_heads(self.live[index.cpu()])

    @torch.no_grad()
    def load(self, store: dict[str, torch.Tensor]) -> None:
        """Load every head's weights from `store` (as `snapshot` made them, all K heads), re-admitting any
        head that `keep` dropped."""
        for name, t in store.items():
            setattr(self, name, torch.nn.Parameter(t.clone()))
        self._set_heads(list(range(len(self.widths))))

    def _set_heads(self, live) -> None:
        """The batch now holds the original heads `live` (positions into `widths`), in that order."""
        self.live = torch.as_tensor(live, dtype=torch.long)
        if not self.mlp:
            return
        width = max(self.widths)
        device = next(self.parameters()).device
        hmask = torch.zeros(len(self.live), 1, width)
        for i, k in enumerate(self.live.tolist()):
            hmask[i, :, : self.widths[k]] = 1.0
        dropout = [self.dropouts[k] for k in self.live.tolist()]
        self.register_buffer("hmask", hmask.to(device))
        self.register_buffer("dropout", torch.tensor(dropout, device=device).view(-1, 1, 1))
        self.any_dropout = any(d > 0 for d in dropout)

    def per_head_params(self) -> list[dict[str, torch.Tensor]]:
        """Unpadded weights of each head in the batch, on the CPU, the leading K and bias row dimensions dropped."""
        cpu = {name: p.detach().cpu() for name, p in self.named_parameters()}
        out = []
        for k, width in enumerate(self.widths[i] for i in self.live.tolist()):
            if self.mlp:
                out.append({"W1": cpu["W1"][k, :, :width].clone(), "b1": cpu["b1"][k, 0, :width].clone(),
                            "W2": cpu["W2"][k, :width].clone(), "b2": cpu["b2"][k, 0].clone()})
            else:
                out.append({"W": cpu["W"][k].clone(), "b": cpu["b"][k, 0].clone()})
        return out


def predict_proba(params: dict[str, torch.Tensor], mean: np.ndarray, scale: np.ndarray, X: np.ndarray, *,
                  device: torch.device | str = "cpu", link: str = "softmax") -> np.ndarray:
    """Class probabilities of one trained head (its params as returned in `HeadResult.params`); with
    `link="sigmoid"` (multi-label) one probability per finding."""
    device = torch.device(device)
    x = standardise(X, mean, scale, device)
    p = {name: t.to(device).unsqueeze(0) for name, t in params.items()}
    out = []
    with torch.no_grad():
        for start in range(0, x.shape[0], EVAL_CHUNK):
            logits = forward(p, x[start : start + EVAL_CHUNK])
            out.append((torch.sigmoid(logits) if link == "sigmoid" else torch.softmax(logits, -1))[0])
    if not out:
        return np.zeros((0, p["b2" if "b2" in p else "b"].shape[-1]), dtype=np.float32)
    return torch.cat(out).cpu().numpy()


def forward(params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
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

    Hand-written because `torch.matmul` broadcasts x to K copies and runs a batched GEMM, which for the narrow
    outputs of linear heads (O = n_classes) measured many times slower than one wide GEMM (README, Benchmarks).
    A plain (D, O) W is a plain GEMM.
    """
    if W.dim() == 2:
        return x @ W
    K, D, O = W.shape
    return (x @ W.permute(1, 0, 2).reshape(D, K * O)).view(x.shape[0], K, O).permute(1, 0, 2)


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


_M32 = 0xFFFFFFFF


def _mix32(x: torch.Tensor | int):
    """A 32-bit integer hash (lowbias32 style) kept in int64 so no product overflows."""
    x = x & _M32
    x = ((x >> 16) ^ x) * 0x45D9F3B & _M32
    x = ((x >> 16) ^ x) * 0x45D9F3B & _M32
    return (x >> 16) ^ x


def hash_uniform(seed: int, step: int, rows: int, cols: int, *, device: torch.device) -> torch.Tensor:
    """Uniform [0, 1) noise that is a pure function of (seed, step, row, column).

    Unlike a generator draw, unit j of row b gets the same number whatever the widest head is, so dropout
    masks do not depend on which other heads share the batch.
    """
    key = _mix32(_mix32(seed * 0x9E3779B1 + 0x7F4A7C15) ^ step)
    r = torch.arange(rows, device=device, dtype=torch.int64).unsqueeze(1)
    c = torch.arange(cols, device=device, dtype=torch.int64).unsqueeze(0)
    h = _mix32(c * 0x27D4EB2D + _mix32(r ^ key))
    return (h >> 8).to(torch.float32) / float(1 << 24)
