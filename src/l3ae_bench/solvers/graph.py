"""Graph-filter pieces shared by GF-CF and BSPM: the normalized interactions and the ideal filter.

    R̃ = D_U^{-1/2} X D_I^{-1/2}     (D_U, D_I: user and item interaction counts)
    P̃ = R̃ᵀR̃                        (the linear low-pass filter, an item × item matrix)
    Π = D_I^{-1/2} Vₖᵀ Vₖ D_I^{1/2}  (the ideal low-pass filter; Vₖ: top-k right singular
                                       vectors of R̃)

Users or items without interactions get a zero scale, so their rows and columns of R̃ are zero.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds

log = logging.getLogger(__name__)


def inverse_sqrt_counts(counts: np.ndarray) -> np.ndarray:
    """Return counts^(-1/2), with 0 where a count is 0."""
    counts = np.asarray(counts, dtype=np.float64).ravel()
    scale = np.zeros_like(counts)
    np.divide(1.0, np.sqrt(counts), out=scale, where=counts > 0)
    return scale


def normalized_interactions(X: sp.csr_matrix, dtype: np.dtype) -> tuple[sp.csr_matrix, np.ndarray]:
    """Return R̃ = D_U^{-1/2} X D_I^{-1/2} (CSR) and the item counts D_I."""
    item_counts = np.asarray(X.sum(axis=0), dtype=np.float64).ravel()
    user_scale = inverse_sqrt_counts(X.sum(axis=1))
    item_scale = inverse_sqrt_counts(item_counts)
    R = sp.diags(user_scale) @ X @ sp.diags(item_scale)
    return sp.csr_matrix(R, dtype=dtype), item_counts


@dataclass(frozen=True)
class IdealFilter:
    """The ideal low-pass filter Π = left · right, kept in low-rank form."""

    left: np.ndarray
    """D_I^{-1/2} Vₖᵀ, shape n × k."""
    right: np.ndarray
    """Vₖ D_I^{1/2}, shape k × n."""


def top_right_singular_vectors(R: sp.csr_matrix, k: int, what: str) -> np.ndarray:
    """Return Vₖ (k × n), the right singular vectors of the k largest singular values of R."""
    started = time.perf_counter()
    limit = min(R.shape) - 1
    if k > limit:
        log.warning("%s: k=%d exceeds min(users, items) − 1; using k=%d", what, k, limit)
        k = limit
    _, _, Vt = svds(R.astype(np.float64), k=k, random_state=0)
    log.debug("%s: top %d singular vectors in %.2fs", what, k, time.perf_counter() - started)
    return Vt


def ideal_filter(
    R: sp.csr_matrix, item_counts: np.ndarray, k: int, dtype: np.dtype, what: str
) -> IdealFilter:
    """Return Π of R̃ in low-rank form."""
    Vt = top_right_singular_vectors(R, k, what)
    inverse_sqrt = inverse_sqrt_counts(item_counts)
    left = (Vt * inverse_sqrt[np.newaxis, :]).T
    right = Vt * np.sqrt(item_counts)[np.newaxis, :]
    return IdealFilter(np.ascontiguousarray(left, dtype=dtype), right.astype(dtype))
