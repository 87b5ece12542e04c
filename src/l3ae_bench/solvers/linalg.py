"""Dense linear algebra shared by the closed-form solvers.

The expensive step of every solver here is inverting an n × n symmetric positive definite
matrix. `spd_inverse` does it with LAPACK's Cholesky factorization and inverse (potrf, potri)
in place, which costs about a third of a general inverse and needs no second n × n buffer.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext

import numpy as np
import psutil
import scipy.sparse as sp
from scipy.linalg import blas, lapack
from threadpoolctl import threadpool_info, threadpool_limits

from l3ae_bench.errors import SolverError

log = logging.getLogger(__name__)

SINGLE_THREAD_LAPACK_BYTES = 2**31
"""Matrices of at least this many bytes are factored and inverted on one BLAS thread.

NOTE: with 2 threads, spotrf of SciPy 1.17.1's bundled OpenBLAS (0.3.31.188) segfaulted on
float32 matrices of 31,000 items (3.8 GB) and more, and dpotrf on 23,200 float64 items
(4.3 GB), while 20,000 float32 items (1.6 GB) ran. The 2 GiB limit is a guess between those;
one thread costs speed, not correctness."""


def matrix_bytes(n_items: int, dtype: np.dtype | str, n_matrices: int = 1) -> int:
    """Return the bytes of `n_matrices` dense n × n matrices of `dtype`."""
    return n_matrices * n_items * n_items * np.dtype(dtype).itemsize


def available_memory() -> int:
    """Return the bytes of host memory available to new allocations, as psutil reports them."""
    return int(psutil.virtual_memory().available)


def check_memory(
    n_items: int,
    dtype: np.dtype | str,
    n_matrices: int,
    label: str,
    available: int | None = None,
    where: str = "memory",
    extra_bytes: int = 0,
) -> None:
    """Raise `SolverError` when a fit's buffers do not fit in `available` bytes.

    Solvers call this before they allocate any n × n buffer, with the largest number of such
    buffers alive at once, plus `extra_bytes` for their n × d buffers (such as the Woodbury
    factors and P·E). `available` defaults to the host memory available now; `where` names the
    memory in the message (host memory or a GPU).
    """
    needed = matrix_bytes(n_items, dtype, n_matrices) + extra_bytes
    if available is None:
        available = available_memory()
    log.debug("%s needs about %.2f GB, %.2f GB available", label, needed / 1e9, available / 1e9)
    if needed > available:
        matrices = "matrix" if n_matrices == 1 else "matrices"
        halve = "Use "
        if np.dtype(dtype) == np.float64:
            halve = "Use compute.dtype=float32 (half the memory of float64), "
        rows = f" and {extra_bytes / 1e9:.1f} GB of n × d buffers" if extra_bytes else ""
        raise SolverError(
            f"{label} needs about {needed / 1e9:.1f} GB for {n_matrices} dense {n_items} × "
            f"{n_items} {np.dtype(dtype).name} {matrices}{rows}, but only "
            f"{available / 1e9:.1f} GB of {where} is available. {halve}a catalog with fewer "
            f"items (about {_items_that_fit(available, dtype, n_matrices)} fit), or a machine "
            "with more memory."
        )


def _items_that_fit(available: int, dtype: np.dtype | str, n_matrices: int) -> int:
    """Return the largest n whose n_matrices dense n × n matrices fit in `available` bytes."""
    return int((available / (n_matrices * np.dtype(dtype).itemsize)) ** 0.5)


def sweep_threads() -> int:
    """Return the threads for n × n sweeps outside BLAS: as many as BLAS may use now.

    Building G, mirroring a triangle and scaling columns are passes over n² entries in which
    NumPy's copies and SciPy's sparse products release the GIL, so they run on threads. Following
    the BLAS limit (`compute.blas_threads`, or threadpoolctl's) keeps one setting for both.
    """
    pools = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
    return max(1, min(max(pools, default=1), os.cpu_count() or 1))


def sweep(
    function: Callable[[int], None], starts: Iterable[int], threads: int | None = None
) -> None:
    """Call function(start) for each start of a block sweep, on `threads` threads.

    `threads` defaults to `sweep_threads()`. The blocks must touch disjoint parts of the output.
    An exception of any block is raised.
    """
    starts = list(starts)
    threads = min(threads or sweep_threads(), len(starts))
    if threads <= 1:
        for start in starts:
            function(start)
        return
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for _ in pool.map(function, starts):
            pass


def gram(X: sp.csr_matrix, dtype: np.dtype) -> np.ndarray:
    """Return G = XᵀX as a dense matrix; its diagonal contains the item counts.

    Each block of rows of the sparse product is zeroed and filled in place in its rows of G,
    with no dense temporary.
    """
    started = time.perf_counter()
    n = X.shape[1]
    G = np.empty((n, n), dtype=dtype)

    def fill(start: int, stop: int, part: sp.csr_matrix) -> None:
        part.toarray(out=G[start:stop])

    _sweep_sparse_gram(X, G.dtype, fill)
    log.debug("Built the %d × %d Gram matrix in %.2fs", n, n, time.perf_counter() - started)
    return G


NEGLIGIBLE_RATIO = 2.0**-64
"""Entries of E below this fraction of their row's largest magnitude are set to zero."""


def zero_negligible(E: np.ndarray) -> np.ndarray:
    """Set the entries of E below `NEGLIGIBLE_RATIO` × their row's largest magnitude to zero.

    E is changed in place and returned. Such an entry changes no dot product with its row even
    at float64 precision. Left in, its products with the small entries of an inverse fall below
    the normal float32 range, where x86 CPUs compute many times slower. MiniLM embeddings with
    two components near 1e-37 in every row made P·E three times slower.
    """
    if E.size == 0:
        return E
    magnitude = np.abs(E)
    largest = magnitude.max(axis=1, keepdims=True)
    # Rows with NaN or infinite values are left as they are, for the caller's checks to report.
    threshold = np.where(np.isfinite(largest), NEGLIGIBLE_RATIO * largest, 0.0)
    negligible = magnitude < threshold
    if negligible.any():
        log.debug("Set %d negligible embedding entries to zero", int(negligible.sum()))
        E[negligible] = 0.0
    return E


def add_to_diagonal(A: np.ndarray, value: float) -> None:
    """Add `value` to the diagonal of A in place."""
    A.flat[:: A.shape[0] + 1] += value


def spd_inverse(A: np.ndarray, label: str) -> np.ndarray:
    """Invert a symmetric positive definite matrix in place through its Cholesky factor.

    A must be C-contiguous; its memory is reused for the result, which is returned. `label`
    names the matrix in the error raised when it is not positive definite.
    """
    if A.dtype == np.float32:
        potrf, potri = lapack.spotrf, lapack.spotri
    elif A.dtype == np.float64:
        potrf, potri = lapack.dpotrf, lapack.dpotri
    else:
        raise TypeError(f"spd_inverse takes float32 or float64, got {A.dtype}")
    started = time.perf_counter()
    threads: AbstractContextManager = nullcontext()
    if A.nbytes >= SINGLE_THREAD_LAPACK_BYTES:
        log.warning(
            "Factoring %s (%.1f GB) on one BLAS thread: the threaded potrf of the OpenBLAS "
            "bundled with SciPy crashes on matrices this large",
            label,
            A.nbytes / 1e9,
        )
        threads = threadpool_limits(limits=1, user_api="blas")

    # LAPACK is column-major: the transposed view of a C-contiguous symmetric matrix is the same
    # matrix in Fortran order, so nothing is copied. The factor is written to the lower triangle.
    with threads:
        factor, info = potrf(A.T, lower=True, overwrite_a=True, clean=False)
        if info > 0:
            raise SolverError(
                f"{label} is not positive definite (Cholesky failed at pivot {info} of "
                f"{A.shape[0]}). Increase the ridge weight so the diagonal shift is positive."
            )
        if info < 0:
            raise SolverError(f"LAPACK potrf rejected argument {-info} while factoring {label}.")
        inverse, info = potri(factor, lower=True, overwrite_c=True)
    if info != 0:
        raise SolverError(f"{label} is singular: LAPACK potri returned info={info}.")

    # potri fills only the lower triangle (in LAPACK's column-major view); mirror it.
    _mirror_lower(inverse)
    log.debug(
        "Inverted %s (%d × %d, %s) by Cholesky in %.2fs",
        label,
        A.shape[0],
        A.shape[1],
        A.dtype,
        time.perf_counter() - started,
    )
    return inverse.T


def block_size(n: int, largest: int = 1024) -> int:
    """Return a block width for n × n sweeps: at most `largest` and at most n/16 (at least 16).

    The temporaries of a blocked sweep are n × block, so they stay a small fraction of one
    n × n matrix at every n.
    """
    return max(16, min(largest, n // 16))


MIRROR_TILE = 256
"""Largest side of the square tiles `_mirror_lower` copies. Two float32 tiles of this side take
512 KiB, which fits the L2 cache of a Skylake-X core (1 MiB)."""


def _mirror_lower(M: np.ndarray) -> None:
    """Copy the lower triangle of square M onto its upper triangle, one square tile at a time.

    A transposed copy reads one of its two sides across rows, so square tiles keep both sides in
    cache. Each task of the sweep fills one row of tiles.
    """
    n = M.shape[0]
    tile = block_size(n, MIRROR_TILE)

    def tile_row(start: int) -> None:
        stop = min(start + tile, n)
        diagonal_block = M[start:stop, start:stop]
        diagonal_block[:] = np.tril(diagonal_block) + np.tril(diagonal_block, -1).T
        for column in range(stop, n, tile):
            end = min(column + tile, n)
            M[start:stop, column:end] = M[column:end, start:stop].T

    sweep(tile_row, range(0, n, tile))


def scale_columns(M: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Multiply column j of the C-contiguous M by scale[j] in place, and return M."""
    scale = scale.astype(M.dtype)[np.newaxis, :]
    block = block_size(M.shape[0])

    def rows(start: int) -> None:
        M[start : start + block] *= scale

    sweep(rows, range(0, M.shape[0], block))
    return M


def ease_from_inverse(P: np.ndarray) -> np.ndarray:
    """Turn P = (G + λI)⁻¹ into EASE weights B = I − P·diag(1/diag(P)), in place.

    B[i, j] = −P[i, j] / P[j, j] off the diagonal and B[j, j] = 0.
    """
    scale_columns(P, -1.0 / np.diag(P))
    np.fill_diagonal(P, 0.0)
    return P


def add_product(M: np.ndarray, a: np.ndarray, b: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """Add alpha · a @ b to the C-contiguous matrix M in place through BLAS gemm, and return M.

    No temporary of M's size is made: gemm updates M's memory directly, which is what keeps a
    rank-d update of an n × n matrix within the memory of that matrix.
    """
    if not M.flags.c_contiguous:
        raise ValueError("add_product needs a C-contiguous output matrix")
    gemm = blas.sgemm if M.dtype == np.float32 else blas.dgemm
    # M += α·a·b is Mᵀ += α·bᵀ·aᵀ, and Mᵀ of a C-contiguous M is Fortran-ordered.
    left, trans_left = _gemm_operand(b.T.astype(M.dtype, copy=False))
    right, trans_right = _gemm_operand(a.T.astype(M.dtype, copy=False))
    result = gemm(
        alpha,
        left,
        right,
        beta=1.0,
        c=M.T,
        trans_a=trans_left,
        trans_b=trans_right,
        overwrite_c=True,
    )
    if not np.shares_memory(result, M):
        M[...] = result.T
    return M


def add_gram_of_rows(M: np.ndarray, E: np.ndarray, alpha: float) -> np.ndarray:
    """Add alpha · E Eᵀ to the symmetric C-contiguous matrix M in place (BLAS syrk), return M."""
    if not M.flags.c_contiguous:
        raise ValueError("add_gram_of_rows needs a C-contiguous output matrix")
    syrk = blas.ssyrk if M.dtype == np.float32 else blas.dsyrk
    E = np.ascontiguousarray(E, dtype=M.dtype)
    # With trans=1, syrk forms α·AᵀA + C for A = Eᵀ (a Fortran view of E), writing one
    # triangle of the Fortran view Mᵀ; mirroring restores the full symmetric matrix.
    result = syrk(alpha, E.T, beta=1.0, c=M.T, trans=1, lower=True, overwrite_c=True)
    if not np.shares_memory(result, M):
        M[...] = result.T
        return M
    _mirror_lower(M.T)
    return M


def zero_diagonal(M: np.ndarray) -> np.ndarray:
    """Set the diagonal of square M to zero in place and return M."""
    np.fill_diagonal(M, 0.0)
    return M


def add_sparse_gram(M: np.ndarray, F: sp.spmatrix, alpha: float) -> np.ndarray:
    """Add alpha · FᵀF to the dense C-contiguous n × n matrix M in place and return M.

    Each block adds through a dense temporary of its rows, so the blocks run on one thread and
    only one such temporary is alive at a time.
    """

    def add(start: int, stop: int, part: sp.csr_matrix) -> None:
        if alpha != 1.0:
            part.data *= alpha
        M[start:stop] += part.toarray()

    _sweep_sparse_gram(F, M.dtype, add, threads=1)
    return M


def _sweep_sparse_gram(
    F: sp.spmatrix,
    dtype: np.dtype,
    consume: Callable[[int, int, sp.csr_matrix], None],
    threads: int | None = None,
) -> None:
    """Call consume(start, stop, rows) for FᵀF of a sparse F (rows × n), by blocks of rows.

    The blocks run on `threads` threads (default `sweep_threads()`), and those in flight
    together span at most n/16 rows. So the sparse products never hold more than n/16 × n
    entries, however dense FᵀF is, and each block fills contiguous rows of a C-ordered n × n
    matrix.
    """
    Ft = sp.csr_matrix(F.T, dtype=dtype)
    F = sp.csr_matrix(F, dtype=dtype)
    n = F.shape[1]
    threads = threads or sweep_threads()
    block = max(1, block_size(n) // threads)

    def rows(start: int) -> None:
        stop = min(start + block, n)
        consume(start, stop, sp.csr_matrix(Ft[start:stop] @ F))

    sweep(rows, range(0, n, block), threads)


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Return a @ b as a C-contiguous array, computed by SciPy's BLAS gemm.

    The NumPy and SciPy wheels bundle separate OpenBLAS builds, each with its own thread pool,
    and SciPy's runs potrf and potri. Keeping a fit's dense products on SciPy's build too means
    one pool at a time works on the cores. Both operands take the dtype of a (at least float32).
    """
    dtype, gemm = _gemm_for(a.dtype)
    # (a·b)ᵀ = bᵀ·aᵀ, and a Fortran-ordered (a·b)ᵀ is a·b in C order.
    left, trans_left = _gemm_operand(b.T.astype(dtype, copy=False))
    right, trans_right = _gemm_operand(a.T.astype(dtype, copy=False))
    return gemm(1.0, left, right, trans_a=trans_left, trans_b=trans_right).T


def symmetric_matmul(S: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Return S @ b for a symmetric S, as a Fortran-ordered array computed by SciPy's gemm.

    Because S = Sᵀ, gemm reads S's memory in C or Fortran order as S when it transposes that
    operand, so nothing is copied. OpenBLAS runs this form faster than `matmul`'s: measured on
    the benchmark machine, P·E for 8,330 items and d = 384 took 0.16 s against 0.18 s. Both
    operands take the dtype of S (at least float32).
    """
    dtype, gemm = _gemm_for(S.dtype)
    S = S.astype(dtype, copy=False)
    # A C-ordered S is the Fortran-ordered Sᵀ, which gemm's transpose flag reads back as S.
    left = S.T if S.flags.c_contiguous else np.asfortranarray(S)
    right, trans_right = _gemm_operand(b.astype(dtype, copy=False))
    return gemm(1.0, left, right, trans_a=1, trans_b=trans_right)


def _gemm_for(dtype: np.dtype) -> tuple[np.dtype, Callable]:
    """Return the compute dtype for operands of `dtype` (at least float32) and SciPy's gemm."""
    dtype = np.result_type(dtype, np.float32)
    return dtype, blas.sgemm if dtype == np.float32 else blas.dgemm


def _gemm_operand(a: np.ndarray) -> tuple[np.ndarray, int]:
    """Return a Fortran-ordered array and gemm's trans flag that together stand for a."""
    if a.flags.f_contiguous:
        return a, 0
    if a.flags.c_contiguous:
        return a.T, 1
    return np.asfortranarray(a), 0
