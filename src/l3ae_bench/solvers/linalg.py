"""Dense linear algebra shared by the closed-form solvers.

The expensive step of every solver here is inverting an n × n symmetric positive definite
matrix. `spd_inverse` does it with LAPACK's Cholesky factorization and inverse (potrf, potri)
in place, which costs about a third of a general inverse and needs no second n × n buffer.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import psutil
import scipy.sparse as sp
from scipy.linalg import lapack

from l3ae_bench.errors import SolverError

log = logging.getLogger(__name__)


def check_memory(n_items: int, dtype: np.dtype, n_matrices: int, what: str) -> None:
    """Raise `SolverError` when `n_matrices` dense n × n matrices do not fit in available memory."""
    needed = n_matrices * n_items * n_items * np.dtype(dtype).itemsize
    available = psutil.virtual_memory().available
    log.debug("%s needs about %.2f GB, %.2f GB available", what, needed / 1e9, available / 1e9)
    if needed > available:
        raise SolverError(
            f"{what} needs about {needed / 1e9:.1f} GB for {n_matrices} dense {n_items} × "
            f"{n_items} {np.dtype(dtype).name} matrices, but only {available / 1e9:.1f} GB of "
            "memory is available. Use compute.dtype=float32 (half the memory of float64), "
            "filter the catalog to fewer items, or run on a machine with more memory."
        )


def gram(X: sp.csr_matrix, dtype: np.dtype) -> np.ndarray:
    """Return G = XᵀX as a dense matrix; its diagonal holds the item counts."""
    started = time.perf_counter()
    X = X.astype(dtype, copy=False)
    G = (X.T @ X).toarray()
    log.debug("Built the %d × %d Gram matrix in %.2fs", *G.shape, time.perf_counter() - started)
    return G


def add_to_diagonal(A: np.ndarray, value: float) -> None:
    """Add `value` to the diagonal of A in place."""
    A.flat[:: A.shape[0] + 1] += value


def spd_inverse(A: np.ndarray, what: str) -> np.ndarray:
    """Invert a symmetric positive definite matrix in place through its Cholesky factor.

    A must be C-contiguous; its memory is reused for the result, which is returned. `what`
    names the matrix in the error raised when it is not positive definite.
    """
    if A.dtype == np.float32:
        potrf, potri = lapack.spotrf, lapack.spotri
    elif A.dtype == np.float64:
        potrf, potri = lapack.dpotrf, lapack.dpotri
    else:
        raise TypeError(f"spd_inverse takes float32 or float64, got {A.dtype}")
    started = time.perf_counter()

    # LAPACK is column-major: the transposed view of a C-contiguous symmetric matrix is the same
    # matrix in Fortran order, so nothing is copied. The factor is written to the lower triangle.
    At = A.T
    factor, info = potrf(At, lower=True, overwrite_a=True, clean=False)
    if info > 0:
        raise SolverError(
            f"{what} is not positive definite (Cholesky failed at pivot {info} of "
            f"{A.shape[0]}). Increase the ridge weight so the diagonal shift is positive."
        )
    if info < 0:
        raise SolverError(f"LAPACK potrf rejected argument {-info} while factoring {what}.")
    inverse, info = potri(factor, lower=True, overwrite_c=True)
    if info != 0:
        raise SolverError(f"{what} is singular: LAPACK potri returned info={info}.")

    # potri fills only the lower triangle (in LAPACK's column-major view); mirror it.
    _mirror_lower(inverse)
    log.debug(
        "Inverted %s (%d × %d, %s) by Cholesky in %.2fs",
        what,
        A.shape[0],
        A.shape[1],
        A.dtype,
        time.perf_counter() - started,
    )
    return inverse.T


def _mirror_lower(M: np.ndarray, block: int = 512) -> None:
    """Copy the lower triangle of square M onto its upper triangle, one row block at a time."""
    n = M.shape[0]
    for start in range(0, n, block):
        stop = min(start + block, n)
        diagonal_block = M[start:stop, start:stop]
        diagonal_block[:] = np.tril(diagonal_block) + np.tril(diagonal_block, -1).T
        M[start:stop, stop:] = M[stop:, start:stop].T


def ease_from_inverse(P: np.ndarray) -> np.ndarray:
    """Turn P = (G + λI)⁻¹ into EASE weights B = I − P·diag(1/diag(P)), in place.

    B[i, j] = −P[i, j] / P[j, j] off the diagonal and B[j, j] = 0.
    """
    diagonal = np.diag(P).copy()
    P /= -diagonal[np.newaxis, :]
    np.fill_diagonal(P, 0.0)
    return P
