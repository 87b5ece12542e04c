"""Closed forms of EASE and L3AE checked against direct numpy.linalg formulas."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from l3ae_bench.errors import ConfigError, SolverError
from l3ae_bench.solvers import FitInputs
from l3ae_bench.solvers.ease import EASEConfig, fit_ease
from l3ae_bench.solvers.l3ae import L3AEConfig, fit_l3ae
from l3ae_bench.solvers.linalg import gram, spd_inverse
from l3ae_bench.solvers.semantic import semantic_matrix


def direct_ease(G: np.ndarray, lam: float) -> np.ndarray:
    P = np.linalg.inv(G + lam * np.eye(len(G)))
    B = P / -np.diag(P)
    np.fill_diagonal(B, 0.0)
    return B


def direct_l3ae(X: np.ndarray, E: np.ndarray, lx: float, lf: float, le: float) -> np.ndarray:
    """L3AE by the textbook formula with general inverses, in float64."""
    n = X.shape[1]
    C = direct_ease(E @ E.T, lf)
    P = np.linalg.inv(X.T @ X + (lx + le) * np.eye(n))
    PC = P @ C
    B = le * PC - P * ((1 + le * np.diag(PC)) / np.diag(P))
    np.fill_diagonal(B, 0.0)
    return B


@pytest.fixture
def small_problem() -> tuple[sp.csr_matrix, np.ndarray]:
    rng = np.random.default_rng(7)
    X = sp.csr_matrix((rng.random((5, 6)) < 0.5).astype(np.float32))
    E = rng.standard_normal((6, 3))
    return X, E


def test_gram_diagonal_is_item_counts(small_problem):
    X, _ = small_problem
    G = gram(X, np.float64)
    np.testing.assert_array_equal(np.diag(G), np.asarray(X.sum(axis=0)).ravel())
    np.testing.assert_allclose(G, X.toarray().T @ X.toarray())


def test_spd_inverse_matches_numpy():
    rng = np.random.default_rng(1)
    A = rng.standard_normal((30, 10))
    S = A @ A.T + 2.0 * np.eye(30)
    np.testing.assert_allclose(spd_inverse(S.copy(), "S"), np.linalg.inv(S), rtol=1e-10)


def test_spd_inverse_rejects_indefinite():
    S = np.diag([1.0, -1.0, 2.0])
    with pytest.raises(SolverError, match="not positive definite"):
        spd_inverse(S, "test matrix")


@pytest.mark.parametrize("dtype, tolerance", [("float64", 1e-9), ("float32", 1e-4)])
def test_ease_matches_direct_formula(small_problem, dtype, tolerance):
    X, _ = small_problem
    B = fit_ease(FitInputs(X, dtype=dtype), EASEConfig(lambda_x=2.0))
    expected = direct_ease(X.toarray().T @ X.toarray(), 2.0)
    assert B.dtype == np.dtype(dtype)
    np.testing.assert_allclose(B, expected, atol=tolerance)
    np.testing.assert_array_equal(np.diag(B), 0.0)


@pytest.mark.parametrize("lambdas", [(1.0, 0.5, 3.0), (-1.5, 2.0, 4.0), (10.0, 0.1, 0.5)])
def test_l3ae_matches_direct_formula(small_problem, lambdas):
    X, E = small_problem
    lx, lf, le = lambdas
    B = fit_l3ae(FitInputs(X, E, "float64"), L3AEConfig(lx, lf, le))
    np.testing.assert_allclose(B, direct_l3ae(X.toarray(), E, lx, lf, le), atol=1e-9)
    np.testing.assert_array_equal(np.diag(B), 0.0)


def test_l3ae_woodbury_equals_dense_route():
    """d < n takes the Woodbury route, d ≥ n the dense one; both give the same B."""
    rng = np.random.default_rng(3)
    X = sp.csr_matrix((rng.random((30, 8)) < 0.4).astype(np.float32))
    narrow, wide = rng.standard_normal((8, 3)), rng.standard_normal((8, 12))
    for E in (narrow, wide):
        B = fit_l3ae(FitInputs(X, E, "float64"), L3AEConfig(2.0, 0.7, 5.0))
        np.testing.assert_allclose(B, direct_l3ae(X.toarray(), E, 2.0, 0.7, 5.0), atol=1e-9)


def test_l3ae_without_distillation_is_ease(small_problem):
    X, E = small_problem
    B = fit_l3ae(FitInputs(X, E, "float64"), L3AEConfig(lambda_x=3.0, lambda_f=1.0, lambda_e=0.0))
    np.testing.assert_allclose(
        B, fit_ease(FitInputs(X, dtype="float64"), EASEConfig(3.0)), atol=1e-12
    )


def test_semantic_matrix_matches_direct_formula():
    rng = np.random.default_rng(5)
    for d in (2, 9):
        E = rng.standard_normal((7, d))
        np.testing.assert_allclose(semantic_matrix(E, 0.3), direct_ease(E @ E.T, 0.3), atol=1e-9)


def test_l3ae_rejects_non_positive_shift():
    with pytest.raises(ConfigError, match="λ_X \\+ λ_E"):
        L3AEConfig(lambda_x=-50.0, lambda_f=1.0, lambda_e=50.0)


def test_ease_rejects_non_positive_ridge():
    with pytest.raises(ConfigError, match="lambda_x"):
        EASEConfig(lambda_x=0.0)


def test_l3ae_needs_embeddings(small_problem):
    X, _ = small_problem
    with pytest.raises(SolverError, match="needs item embeddings"):
        fit_l3ae(FitInputs(X), L3AEConfig())


def test_embedding_rows_must_match_items(small_problem):
    X, E = small_problem
    with pytest.raises(SolverError, match="7 rows"):
        FitInputs(X, np.vstack([E, E[:1]]))


def test_gram_is_reused_across_fits(small_problem):
    X, E = small_problem
    inputs = FitInputs(X, E, "float64")
    fit_ease(inputs, EASEConfig(1.0))
    cached = inputs._gram
    fit_ease(inputs, EASEConfig(2.0))
    assert inputs._gram is cached
    np.testing.assert_allclose(cached, X.toarray().T @ X.toarray())
