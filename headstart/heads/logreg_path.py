"""Every C of a logistic-regression sweep solved at once: one batched, preconditioned L-BFGS per column.

sklearn fits one C at a time and each of its lbfgs iterations is a pass over the train rows (a matrix-vector
product). Warm-starting along the path (small C to large) still took about 600 iterations on issue 13's real
Kaggle cache. Here every C shares each pass (one matrix-matrix product), and each column's search direction is
preconditioned with the eigendecomposition of the weighted Gram matrix: that is the exact Hessian at w = 0, up to
the logistic curvature 1/4, so L-BFGS starts out well conditioned. The same cache then needs about 60 passes.

The objective and the stopping rule are sklearn's binary lbfgs ones: the weighted mean log-loss plus
||w||^2 / (2 C sum(weights)), with an unpenalised intercept, stopped at max |gradient| <= tol.
`heads.logreg.fit_logreg_path` hands every solution to sklearn's own lbfgs, which confirms it (0 iterations)
or finishes the job, so each head is still a plain sklearn fit. `lbfgs_columns` is the solver itself, for any
problem that gives a loss, gradient and preconditioner per column; `heads.logreg_softmax` runs it on the
multinomial objective.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

LINE_SEARCH_HALVINGS = 30  # a column whose step still fails Armijo after this many halvings stops here
ARMIJO = 1e-4  # sufficient-decrease constant of the backtracking line search
GRAM_ROWS = 8192  # rows per block of the Gram matrix
CURVATURE_AT_ZERO = 0.25  # p (1 - p) at p = 1/2: the logistic Hessian's weight at w = 0


def solve_logistic_path(X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray, Cs, *, tol: float = 1e-4,
                        max_iter: int = 1000, history: int = 10) -> np.ndarray:
    """Coefficients (d + 1, len(Cs)), intercept in the last row, of sklearn's binary L2 logistic regression at
    each C on (X, y in {0, 1}, sample_weight); each column stops on its own at max |gradient| <= tol."""
    X = np.asarray(X)
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)  # float32 stays float32: no copy of the train matrix (issue 13's memory target)
    y = np.asarray(y, dtype=np.float64)
    sw = np.asarray(sample_weight, dtype=np.float64)
    problem = _Problem(X, y, sw, 1.0 / (np.asarray(Cs, dtype=np.float64) * sw.sum()))
    return lbfgs_columns(problem, X.shape[1] + 1, tol=tol, max_iter=max_iter, history=history)


def lbfgs_columns(problem, n_params: int, *, tol: float, max_iter: int, history: int = 10,
                  start: np.ndarray | None = None) -> np.ndarray:
    """Minimise the K problems of `problem` (one per entry of `problem.lam`) from 0 (or `start`), each a column
    of (n_params, K); `problem` gives `loss_grad(W, cols)` and `precondition(q, cols)` (an approximate inverse
    Hessian). Each column stops on its own at max |gradient| <= tol, or when its line search finds no decrease."""
    K, p = len(problem.lam), n_params
    W = np.zeros((p, K)) if start is None else np.array(start, dtype=np.float64)
    f, g = problem.loss_grad(W, np.arange(K))
    S, Y = np.zeros((history, p, K)), np.zeros((history, p, K))  # circular buffers of steps and gradient changes
    rho = np.zeros((history, K))  # 1 / (s . y) per stored pair; 0 marks an empty or skipped slot
    running = np.abs(g).max(axis=0) > tol
    for it in range(max_iter):
        cols = np.flatnonzero(running)
        if len(cols) == 0:
            break
        direction = -_two_loop(problem, g[:, cols], S[:, :, cols], Y[:, :, cols], rho[:, cols], it, cols)
        slope = (g[:, cols] * direction).sum(axis=0)
        uphill = slope >= 0  # a stale curvature pair: fall back to the preconditioned gradient
        if uphill.any():
            direction[:, uphill] = -problem.precondition(g[:, cols[uphill]], cols[uphill])
            slope[uphill] = (g[:, cols[uphill]] * direction[:, uphill]).sum(axis=0)
        W_new, f_new, g_new, moved = _line_search(problem, W[:, cols], f[cols], g[:, cols], direction, slope, cols)
        slot = it % history
        s, dy = W_new - W[:, cols], g_new - g[:, cols]
        sy = (s * dy).sum(axis=0)
        S[slot][:, cols], Y[slot][:, cols] = s, dy
        rho[slot, cols] = np.where(sy > 1e-12, 1.0 / np.where(sy > 1e-12, sy, 1.0), 0.0)
        W[:, cols], f[cols], g[:, cols] = W_new, f_new, g_new
        running[cols] = moved & (np.abs(g_new).max(axis=0) > tol)
    return W


def gram_eigen(X: np.ndarray, sw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (clipped at 0) and eigenvectors of the weighted Gram matrix X' diag(sw / sum(sw)) X, the
    logistic Hessian at w = 0 up to its curvature; built in row blocks, never a weighted copy of X."""
    gram = np.zeros((X.shape[1], X.shape[1]))
    for start in range(0, len(X), GRAM_ROWS):
        block, w = X[start:start + GRAM_ROWS], (sw[start:start + GRAM_ROWS] / sw.sum()).astype(X.dtype)
        gram += (block * w[:, None]).T @ block
    eigenvalues, V = np.linalg.eigh(gram)
    return np.maximum(eigenvalues, 0.0), V


class _Problem:
    """Loss, gradient and preconditioner of K weighted L2 logistic regressions that differ only in strength."""

    def __init__(self, X: np.ndarray, y: np.ndarray, sw: np.ndarray, lam: np.ndarray) -> None:
        self.X, self.y, self.sw, self.lam = X, y, sw, lam
        self.sw_sum = sw.sum()
        eigenvalues, self.V = gram_eigen(X, sw)
        self.curvature = CURVATURE_AT_ZERO * eigenvalues[:, None]  # (d, 1)
        self.intercept_curvature = CURVATURE_AT_ZERO

    def loss_grad(self, W: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """sklearn's objective and its gradient for the columns `cols` of W (d + 1, len(cols))."""
        z = (self.X @ W[:-1].astype(self.X.dtype)).astype(np.float64) + W[-1]  # X's dtype: never a cast copy of X
        loss = self.sw @ (np.logaddexp(0.0, z) - self.y[:, None] * z) / self.sw_sum
        lam = self.lam[cols]
        loss += 0.5 * lam * (W[:-1] ** 2).sum(axis=0)
        residual = (self.sw / self.sw_sum)[:, None] * (expit(z) - self.y[:, None])
        grad = np.empty_like(W)
        grad[:-1] = (self.X.T @ residual.astype(self.X.dtype)).astype(np.float64) + lam * W[:-1]
        grad[-1] = residual.sum(axis=0)
        return loss, grad

    def precondition(self, q: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """q times the inverse Hessian at w = 0 of each column's problem."""
        out = np.empty_like(q)
        out[:-1] = self.V @ ((self.V.T @ q[:-1]) / (self.curvature + self.lam[cols]))
        out[-1] = q[-1] / self.intercept_curvature
        return out


def _two_loop(problem, g, S, Y, rho, it: int, cols: np.ndarray) -> np.ndarray:
    """L-BFGS's two-loop recursion, column by column in one pass, preconditioned in the middle."""
    history = S.shape[0]
    q = g.copy()
    alpha = np.zeros((history, g.shape[1]))
    for back in range(history):  # newest pair first
        slot = (it - 1 - back) % history
        alpha[back] = rho[slot] * (S[slot] * q).sum(axis=0)
        q -= alpha[back] * Y[slot]
    r = problem.precondition(q, cols)
    for back in reversed(range(history)):
        slot = (it - 1 - back) % history
        beta = rho[slot] * (Y[slot] * r).sum(axis=0)
        r += (alpha[back] - beta) * S[slot]
    return r


def _line_search(problem, W, f, g, direction, slope, cols):
    """Backtracking Armijo search from step 1, each column on its own; a column that finds no decrease stays
    where it is (sklearn's polish takes it from there) and reports `moved` False."""
    W_new, f_new, g_new = W.copy(), f.copy(), g.copy()
    step = np.ones(len(cols))
    todo = np.ones(len(cols), dtype=bool)
    for _ in range(LINE_SEARCH_HALVINGS):
        idx = np.flatnonzero(todo)
        trial = W[:, idx] + step[idx] * direction[:, idx]
        f_trial, g_trial = problem.loss_grad(trial, cols[idx])
        ok = f_trial <= f[idx] + ARMIJO * step[idx] * slope[idx]
        done = idx[ok]
        W_new[:, done], f_new[done], g_new[:, done] = trial[:, ok], f_trial[ok], g_trial[:, ok]
        todo[done] = False
        step[idx[~ok]] *= 0.5
        if not todo.any():
            break
    return W_new, f_new, g_new, ~todo
