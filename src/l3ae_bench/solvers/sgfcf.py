"""SGFCF (Peng et al., KDD 2024): a generalized graph filter with individual exponents.

With frequency-normalized interactions R̂ = D_U'^{-ε} X D_I'^{-ε} (D' = counts + μ) and its top-k
singular triplets U, S, V (S divided by its largest value):
    W = (U·S^{β_u}) (V·S^{β_i})ᵀ, each row divided by its sum    (the low-frequency part)
    N = R̂·R̂ᵀR̂, each row divided by its sum                       (all frequencies)
    scores = W + γ·N
The exponents are β for every user and item. With the individualized graph filter (IGF), each
user and item gets its own value in [β, β_end] instead, growing with its homophily ratio. That
ratio is the share of pairs of a user's items (of an item's users) that stay linked once that
user (item) is left out. The research code applies a sigmoid to the scores. The sigmoid is
strictly increasing, so it changes no ranking and is left out here, which also keeps float32
from rounding near-equal scores into ties.

The scores are not x_u·B for one item × item matrix, so `fit_sgfcf` returns a scorer of user
rows. It keeps R̂ᵀR̂ (one n × n buffer) and the weighted singular vectors.
NOTE: the SGFCF research code takes the triplets from torch.svd_lowrank (randomized, 30
iterations). This module takes the exact top-k from ARPACK, so scores can differ in the last
digits.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from l3ae_bench.errors import ConfigError
from l3ae_bench.solvers.base import FitInputs, hyperparameter
from l3ae_bench.solvers.linalg import add_sparse_gram

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SGFCFConfig:
    """Hyperparameters of SGFCF."""

    beta: float = hyperparameter(0.5, 0.0, 3.0)
    """β, exponent of the normalized singular values (the lower end with IGF). Search: uniform
    over [0, 3]."""
    beta_end: float = hyperparameter(2.0, 0.0, 3.0)
    """β_end, the upper end of the individual exponents with IGF. Search: uniform over [0, 3]."""
    gamma: float = hyperparameter(1.6, 0.0, 5.0)
    """γ, weight of the all-frequency part N. Search: uniform over [0, 5]."""
    eps: float = hyperparameter(0.5, 0.0, 1.0)
    """ε, exponent of the degree normalization. Search: uniform over [0, 1]."""
    mu: float = 0.0
    """μ, added to every user and item count before the normalization."""
    k: int = 100
    """Number of singular triplets in the low-frequency part."""
    use_igf: bool = True
    """Individual exponents from homophily ratios (IGF) instead of β for everyone."""

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ConfigError(f"solver.k must be ≥ 1, got {self.k}.")
        if self.mu < 0:
            raise ConfigError(f"solver.mu (μ) must be ≥ 0, got {self.mu}.")


@dataclass(frozen=True)
class SGFCFScorer:
    """Scores of SGFCF for rows of the training matrix."""

    user_factors: np.ndarray
    """U·S^{β_u}, users × k, each row divided by the row sum of W."""
    item_factors: np.ndarray
    """V·S^{β_i}, items × k."""
    R: sp.csr_matrix
    """R̂, users × items, each row divided by the row sum of N."""
    item_gram: np.ndarray
    """R̂ᵀR̂ (items × items)."""
    gamma: float

    def __call__(self, users: np.ndarray) -> np.ndarray:
        scores = self.user_factors[users] @ self.item_factors.T
        scores += self.gamma * np.asarray(self.R[users] @ self.item_gram)
        return scores


def homophily_ratios(X: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """Return the homophily ratio of every user and every item.

    For a user u with s > 1 items, it is the share of ordered pairs (i, j), i ≠ j, of u's items
    that some other user also shares: (XᵀX)_ij ≥ 2. For items it is the same over users with
    XXᵀ. Users and items with at most one interaction get 0.
    """
    B = sp.csr_matrix(X, dtype=np.float64)
    B.data[:] = 1.0
    ratios = []
    for rows, gram in ((B, B.T @ B), (sp.csr_matrix(B.T), B @ B.T)):
        linked = sp.csr_matrix(gram >= 2, dtype=np.float64)
        linked.setdiag(0)
        linked.eliminate_zeros()
        pairs = np.asarray((rows @ linked).multiply(rows).sum(axis=1)).ravel()
        sizes = np.diff(rows.indptr).astype(np.float64)
        ratio = np.zeros_like(sizes)
        many = sizes > 1
        ratio[many] = pairs[many] / (sizes[many] * (sizes[many] - 1))
        ratios.append(ratio)
    return ratios[0], ratios[1]


def individual_exponents(ratio: np.ndarray, beta: float, beta_end: float) -> np.ndarray:
    """Map homophily ratios linearly from [min, max] onto [β, β_end]."""
    low, high = ratio.min(), ratio.max()
    if high == low:
        return np.full_like(ratio, beta)
    return beta + (beta_end - beta) * (ratio - low) / (high - low)


def _safe_reciprocal(values: np.ndarray) -> np.ndarray:
    """Return 1 / values, with 0 where a value is 0 (such as users without training items)."""
    scale = np.zeros_like(values)
    np.divide(1.0, values, out=scale, where=values != 0)
    return scale


def fit_sgfcf(inputs: FitInputs, config: SGFCFConfig) -> SGFCFScorer:
    """Return the SGFCF scorer of the training users."""
    started = time.perf_counter()
    inputs.check_memory(1, "SGFCF")
    X = sp.csr_matrix(inputs.X, dtype=np.float64)
    user_counts = np.asarray(X.sum(axis=1)).ravel()
    item_counts = np.asarray(X.sum(axis=0)).ravel()
    user_scale = _safe_reciprocal((user_counts + config.mu) ** config.eps)
    item_scale = _safe_reciprocal((item_counts + config.mu) ** config.eps)
    R = sp.csr_matrix(sp.diags(user_scale) @ X @ sp.diags(item_scale))

    k = min(config.k, min(R.shape) - 1)
    U, S, Vt = svds(R, k=k, random_state=0)
    S = S / S.max()
    if config.use_igf:
        user_ratio, item_ratio = homophily_ratios(X)
        user_power = individual_exponents(user_ratio, config.beta, config.beta_end)
        item_power = individual_exponents(item_ratio, config.beta, config.beta_end)
    else:
        user_power = np.full(R.shape[0], config.beta)
        item_power = np.full(R.shape[1], config.beta)
    user_factors = U * S[np.newaxis, :] ** user_power[:, np.newaxis]
    item_factors = Vt.T * S[np.newaxis, :] ** item_power[:, np.newaxis]
    # Rows of users without training items are zero up to rounding, and dividing by their sum
    # would blow that rounding up. Those users keep all-zero scores instead.
    low_sums = _safe_reciprocal(user_factors @ item_factors.sum(axis=0)) * (user_counts > 0)
    user_factors *= low_sums[:, np.newaxis]

    dtype = inputs.dtype
    R_typed = R.astype(dtype)
    item_gram = add_sparse_gram(np.zeros((R.shape[1], R.shape[1]), dtype), R_typed, 1.0)
    frequency_sums = R @ item_gram.sum(axis=1, dtype=np.float64)
    R = sp.csr_matrix(sp.diags(_safe_reciprocal(frequency_sums)) @ R)
    scorer = SGFCFScorer(
        user_factors=user_factors.astype(dtype),
        item_factors=item_factors.astype(dtype),
        R=R.astype(dtype),
        item_gram=item_gram,
        gamma=config.gamma,
    )
    log.info("Fitted SGFCF on %d items in %.2fs", inputs.n_items, time.perf_counter() - started)
    return scorer
