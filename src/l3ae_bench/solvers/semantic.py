"""The semantic item-item matrix C: EASE solved on item embeddings E instead of interactions.

    P_F = (EEᵀ + λ_F I)⁻¹,   C = I − P_F · diag(1 / diag(P_F))   (so diag(C) = 0)

When the embedding width d is below the item count n, the Woodbury identity
    (EEᵀ + λ_F I)⁻¹ = (I − E (EᵀE + λ_F I)⁻¹ Eᵀ) / λ_F
replaces the n × n inverse with a d × d one, computed in float64 because it is cheap.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
from scipy.linalg import cho_factor, cho_solve

from l3ae_bench.errors import SolverError
from l3ae_bench.solvers.linalg import add_to_diagonal, ease_from_inverse, matmul, spd_inverse

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WoodburyFactors:
    """C = I − diag(s) + E·V, the semantic matrix in the Woodbury form of its inverse.

    With W = (EᵀE + λ_F I)⁻¹Eᵀ (d × n), P_F = (EEᵀ + λ_F I)⁻¹ = (I − E·W)/λ_F, so
    C = I − P_F·diag(1/diag(P_F)) = I − diag(s) + E·W·diag(s) with s_j = 1/(λ_F·diag(P_F)_j).
    Off the diagonal C_ij = (E·V)_ij. On the diagonal the two terms cancel, so C_jj = 0.
    """

    V: np.ndarray
    """W·diag(s), shape d × n, in the dtype of E."""
    s: np.ndarray
    """s_j = 1/(λ_F·diag(P_F)_j) = 1/(1 − e_jᵀ(EᵀE + λ_F I)⁻¹e_j), float64, length n."""
    lambda_f: float


def use_woodbury(E: np.ndarray) -> bool:
    """Return whether the d × d route is cheaper than the n × n inverse (d < n)."""
    return E.shape[1] < E.shape[0]


WOODBURY_CHUNK = 1024
"""Rows of E converted to float64 at a time while computing the Woodbury factors."""

MIN_PIVOT = 1e-10
"""Smallest 1 − e_jᵀ(EᵀE + λ_F I)⁻¹e_j accepted. Below it the subtraction has lost most of its
float64 digits, so s_j = 1 / (1 − e_jᵀ(EᵀE + λ_F I)⁻¹e_j) would be noise."""


def woodbury_bytes(n: int, d: int, dtype: np.dtype | str) -> int:
    """Return the peak bytes `woodbury_factors` allocates: V, and its float64 temporaries.

    The temporaries are three chunks of rows (E's rows in float64, W's columns and their
    scaled copy) and four d × d matrices (EᵀE + λ_F I, its Cholesky factor, the identity and K).
    """
    rows = min(WOODBURY_CHUNK, n)
    return n * d * np.dtype(dtype).itemsize + 8 * (3 * rows * d + 4 * d * d)


def woodbury_factors(E: np.ndarray, lambda_f: float) -> WoodburyFactors:
    """Compute the factors V and s of C = I − diag(s) + E·V in O(n·d²).

    With K = (EᵀE + λ_F I)⁻¹ (d × d, symmetric), column j of W = K·Eᵀ is K·e_j and
    s_j = 1/(1 − e_jᵀK·e_j). Both products run in float64 on chunks of rows of E, so no float64
    copy of E or W is made. V is kept in the dtype of E.
    """
    n, d = E.shape
    chunks = [slice(start, start + WOODBURY_CHUNK) for start in range(0, n, WOODBURY_CHUNK)]
    inner = np.zeros((d, d))
    for rows in chunks:
        E64 = E[rows].astype(np.float64)
        inner += matmul(E64.T, E64)
    add_to_diagonal(inner, lambda_f)
    K = cho_solve(cho_factor(inner, lower=True), np.eye(d))

    V = np.empty((d, n), dtype=E.dtype)
    s = np.empty(n)
    for rows in chunks:
        E64 = E[rows].astype(np.float64)
        W = matmul(K, E64.T)
        pivots = 1.0 - np.einsum("ij,ji->i", E64, W)
        _check_pivots(pivots, lambda_f)
        s[rows] = 1.0 / pivots
        V[:, rows] = W * s[np.newaxis, rows]
    return WoodburyFactors(V=V, s=s, lambda_f=lambda_f)


def _check_pivots(pivots: np.ndarray, lambda_f: float) -> None:
    """Raise `SolverError` when some 1 − e_jᵀKe_j is below `MIN_PIVOT` (or NaN).

    Each equals λ_F·diag(P_F)_j, which is at least λ_F / (‖e_j‖² + λ_F), so it becomes this small
    only when λ_F is tiny next to the squared norms of the embeddings.
    """
    bad = ~(pivots >= MIN_PIVOT)
    if bad.any():
        raise SolverError(
            f"The semantic side cannot be computed accurately at λ_F = {lambda_f:g}: for at "
            f"least {int(bad.sum())} items, 1 − e_jᵀ(EᵀE + λ_F I)⁻¹e_j is below {MIN_PIVOT:g}, "
            "so float64 keeps too few digits of it. Raise solver.lambda_f, or scale the "
            "embeddings to unit length."
        )


def semantic_from_factors(E: np.ndarray, factors: WoodburyFactors) -> np.ndarray:
    """Return C = E·V with a zero diagonal: one GEMM of O(n²d) into a single n × n buffer."""
    C = matmul(E, factors.V)
    np.fill_diagonal(C, 0.0)
    return C


def semantic_matrix(E: np.ndarray, lambda_f: float) -> np.ndarray:
    """Return C (n × n, zero diagonal) in the dtype of E."""
    started = time.perf_counter()
    n, d = E.shape
    if use_woodbury(E):
        log.debug("Semantic matrix: Woodbury route, d=%d < n=%d", d, n)
        C = semantic_from_factors(E, woodbury_factors(E, lambda_f))
    else:
        log.debug("Semantic matrix: direct inverse, d=%d ≥ n=%d", d, n)
        A = matmul(E, E.T)
        add_to_diagonal(A, lambda_f)
        C = ease_from_inverse(spd_inverse(A, "EEᵀ + λ_F·I"))
    log.debug("Semantic matrix C (%d items) in %.2fs", n, time.perf_counter() - started)
    return C
