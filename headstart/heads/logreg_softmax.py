"""Every C of a multinomial (softmax) logistic-regression sweep solved at once, like the binary path.

sklearn's multinomial lbfgs fits one C at a time, and on issue 23's real 3-class Kaggle cache it needed hundreds of
iterations per C even warm-started along the path (27 s for the default sweep against 0.8 s for the binary task on
the same features). This is the binary path's solver (`heads.logreg_path.lbfgs_columns`) on the softmax objective:
every C shares each pass over the rows (one (n, d) x (d, K * len(Cs)) product), and the search directions are
preconditioned with the exact Hessian at w = 0. At w = 0 every class has probability 1/K, so that Hessian is
Gram (x) (I - 11'/K) / K plus the L2 term: the Gram matrix's eigenvectors and the split of each coefficient row
into its class mean and its deviation from it diagonalise it.

The objective is sklearn's (LinearModelLoss with HalfMultinomialLoss, lbfgs): the weighted mean cross-entropy
plus ||coef||^2 / (2 C sum(weights)) over all K rows of coef, intercepts unpenalised, stopped at
max |gradient| <= tol. `heads.logreg.fit_logreg_path` hands each solution to sklearn's lbfgs as its warm start.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from headstart.heads.logreg_path import gram_eigen, lbfgs_columns


def solve_multinomial_path(X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray, Cs, *, n_classes: int,
                           tol: float = 1e-4, max_iter: int = 1000, history: int = 10) -> np.ndarray:
    """sklearn's multinomial L2 logistic regression at each C on (X, y in 0..K-1, sample_weight): an array
    (len(Cs), K, d + 1) of [coef | intercept], sklearn's layout; each C stops on its own at max |grad| <= tol."""
    X = np.asarray(X)
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)  # float32 stays float32: no copy of the train matrix
    sw = np.asarray(sample_weight, dtype=np.float64)
    problem = _Softmax(X, np.asarray(y, dtype=np.intp), sw, 1.0 / (np.asarray(Cs, dtype=np.float64) * sw.sum()),
                       n_classes)
    d = X.shape[1]
    W = lbfgs_columns(problem, (d + 1) * n_classes, tol=tol, max_iter=max_iter, history=history)
    return W.reshape(d + 1, n_classes, len(Cs)).transpose(2, 1, 0).copy()


class _Softmax:
    """Loss, gradient and preconditioner of len(lam) weighted L2 softmax regressions that differ only in strength.
    A column of parameters is the (d + 1, K) matrix [coef' ; intercept'], ravelled row by row."""

    def __init__(self, X: np.ndarray, y: np.ndarray, sw: np.ndarray, lam: np.ndarray, n_classes: int) -> None:
        self.X, self.y, self.lam, self.K = X, y, lam, n_classes
        self.rows = np.arange(len(y))
        self.share = sw / sw.sum()  # each row's weight in the mean loss
        eigenvalues, self.V = gram_eigen(X, sw)
        self.curvature = eigenvalues[:, None, None] / n_classes  # (d, 1, 1): Gram (x) (I - 11'/K) / K off the mean

    def _split(self, W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(P, m) columns -> coef (d, K, m) and intercept (K, m) views."""
        Wr = W.reshape(-1, self.K, W.shape[1])
        return Wr[:-1], Wr[-1]

    def loss_grad(self, W: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """sklearn's objective and its gradient for the columns `cols` of W ((d + 1) K, len(cols))."""
        coef, intercept = self._split(W)
        d, K, m = coef.shape
        z = (self.X @ coef.reshape(d, K * m).astype(self.X.dtype)).astype(np.float64).reshape(-1, K, m)
        z += intercept
        lse = logsumexp(z, axis=1)  # (n, m)
        lam = self.lam[cols]
        loss = self.share @ (lse - z[self.rows, self.y]) + 0.5 * lam * (coef ** 2).sum(axis=(0, 1))
        residual = np.exp(z - lse[:, None, :])  # softmax, then minus the one-hot truth, times each row's share
        residual[self.rows, self.y] -= 1.0
        residual *= self.share[:, None, None]
        grad = np.empty_like(W).reshape(d + 1, K, m)
        grad[:-1] = (self.X.T @ residual.reshape(-1, K * m).astype(self.X.dtype)).astype(np.float64).reshape(d, K, m)
        grad[:-1] += lam * coef
        grad[-1] = residual.sum(axis=0)
        return loss, grad.reshape(W.shape)

    def precondition(self, q: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """q times the inverse Hessian at w = 0 of each column's problem. Along the class mean of a coefficient
        row only the L2 term curves; the intercept's class mean has zero gradient, so it keeps the scale K."""
        coef, intercept = self._split(q)
        d, K, m = coef.shape
        lam = self.lam[cols]
        mean = coef.mean(axis=1, keepdims=True)
        spread = (self.V.T @ (coef - mean).reshape(d, K * m)).reshape(d, K, m) / (self.curvature + lam)
        out = np.empty_like(q).reshape(d + 1, K, m)
        out[:-1] = (self.V @ spread.reshape(d, K * m)).reshape(d, K, m) + mean / lam
        out[-1] = intercept * K
        return out.reshape(q.shape)
