"""Closed forms of EASE and L3AE checked against direct numpy.linalg formulas."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

from l3ae_bench.errors import ConfigError, SolverError
from l3ae_bench.solvers import FitInputs, linalg, parse_solver_config
from l3ae_bench.solvers import base as base_module
from l3ae_bench.solvers import semantic as semantic_module
from l3ae_bench.solvers.ease import EASEConfig, fit_ease
from l3ae_bench.solvers.fusions import AdditiveConfig, fit_additive_ease, fit_l3ae_additive
from l3ae_bench.solvers.l3ae import L3AEConfig, fit_l3ae
from l3ae_bench.solvers.linalg import gram, spd_inverse
from l3ae_bench.solvers.semantic import semantic_matrix
from l3ae_bench.solvers.text import EASETextConfig, fit_ease_text
from l3ae_bench.solvers.words import bag_of_words


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


def test_chunked_woodbury_matches_direct_formula(monkeypatch):
    """The Woodbury factors summed over chunks of rows equal the one-piece formula."""
    monkeypatch.setattr(semantic_module, "WOODBURY_CHUNK", 3)
    E = np.random.default_rng(6).standard_normal((11, 4))
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


# Limits of the fusions: α = 0 and λ_E = 0 give EASE, α = 1 gives the text side alone.


@pytest.fixture
def fusion_inputs(small_problem):
    X, E = small_problem
    texts = ["red car", "blue car", "red boat", "blue boat", "green car", "green boat"]
    return lambda: FitInputs(X, E, "float64", item_texts=texts)


@pytest.mark.parametrize(
    "name, settings",
    [
        ("l3ae", {"lambda_x": 3.0, "lambda_f": 1.0, "lambda_e": 0.0}),
        ("l3ae_collective", {"lambda_x": 3.0, "alpha": 0.0}),
        ("l3ae_additive", {"lambda_x": 3.0, "lambda_f": 1.0, "alpha": 0.0}),
        ("collective_ease", {"lambda_x": 3.0, "alpha": 0.0}),
        ("additive_ease", {"lambda_x": 3.0, "lambda_f": 1.0, "alpha": 0.0}),
    ],
)
def test_fusion_reduces_to_ease(fusion_inputs, name, settings):
    spec, config = parse_solver_config({"name": name, **settings})
    B = spec.fit(fusion_inputs(), config)
    expected = fit_ease(fusion_inputs(), EASEConfig(3.0))
    np.testing.assert_allclose(B, expected, atol=1e-10)


def test_l3ae_additive_at_one_is_semantic_matrix(fusion_inputs):
    inputs = fusion_inputs()
    B = fit_l3ae_additive(inputs, AdditiveConfig(lambda_x=3.0, lambda_f=0.7, alpha=1.0))
    np.testing.assert_allclose(B, semantic_matrix(inputs.E, 0.7), atol=1e-10)
    np.testing.assert_allclose(B, fit_ease_text(inputs, EASETextConfig(0.7)), atol=1e-10)


def test_additive_ease_at_one_is_word_ease(fusion_inputs):
    inputs = fusion_inputs()
    B = fit_additive_ease(inputs, AdditiveConfig(lambda_x=3.0, lambda_f=0.7, alpha=1.0))
    F = inputs.words("test").toarray()
    np.testing.assert_allclose(B, direct_ease(F.T @ F, 0.7), atol=1e-10)


# FitInputs: shared pieces built once.


def test_woodbury_factors_reused_per_lambda(small_problem):
    X, E = small_problem
    inputs = FitInputs(X, E, "float64")
    first = inputs.woodbury(0.5, "test")
    assert inputs.woodbury(0.5, "test") is first
    assert inputs.woodbury(2.0, "test") is not first


def test_refit_reuses_semantic_side(small_problem, monkeypatch):
    X, E = small_problem
    inputs = FitInputs(X, E, "float64")
    calls = []
    original = base_module.woodbury_factors
    monkeypatch.setattr(
        base_module, "woodbury_factors", lambda *args: calls.append(args) or original(*args)
    )
    for lambda_x in (1.0, 2.0, 3.0):
        fit_l3ae(inputs, L3AEConfig(lambda_x=lambda_x, lambda_f=0.5, lambda_e=4.0))
    assert len(calls) == 1


def test_gram_handed_over_without_reuse(small_problem):
    X, _ = small_problem
    inputs = FitInputs(X, dtype="float64", reuse=False)
    first = fit_ease(inputs, EASEConfig(2.0))
    assert inputs._gram is None
    np.testing.assert_allclose(fit_ease(inputs, EASEConfig(2.0)), first)


def test_item_texts_must_match_items(small_problem):
    X, _ = small_problem
    with pytest.raises(SolverError, match="2 item texts"):
        FitInputs(X, item_texts=["a", "b"])


def test_word_solver_needs_texts(small_problem):
    X, _ = small_problem
    with pytest.raises(SolverError, match="needs item texts"):
        fit_additive_ease(FitInputs(X), AdditiveConfig())


# In-place BLAS helpers and n × n sweeps.


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_gram_matches_dense_product_on_threads(monkeypatch, threads):
    monkeypatch.setattr(linalg, "sweep_threads", lambda: threads)
    rng = np.random.default_rng(11)
    X = sp.csr_matrix((rng.random((120, 333)) < 0.05).astype(np.float32))
    np.testing.assert_array_equal(gram(X, np.float32), (X.T @ X).toarray())


@pytest.mark.parametrize("n", [5, 37, 1000])
@pytest.mark.parametrize("order", ["C", "F"])
def test_mirror_copies_lower_triangle(n, order):
    rng = np.random.default_rng(n)
    M = np.asarray(rng.standard_normal((n, n)), order=order)
    expected = np.tril(M) + np.tril(M, -1).T
    linalg._mirror_lower(M)
    np.testing.assert_array_equal(M, expected)


def test_scale_columns_in_place():
    rng = np.random.default_rng(12)
    M = rng.standard_normal((70, 70)).astype(np.float32)
    scale = rng.standard_normal(70)
    expected = M * scale.astype(np.float32)[np.newaxis, :]
    assert linalg.scale_columns(M, scale) is M
    np.testing.assert_array_equal(M, expected)


def test_sweep_raises_block_error():
    def block(start: int) -> None:
        if start == 30:
            raise ValueError("block 30 failed")

    with pytest.raises(ValueError, match="block 30"):
        linalg.sweep(block, range(0, 100, 10), threads=2)


def test_negligible_embedding_entries_become_zero():
    """Entries below 2⁻⁶⁴ of their row's largest are zeroed in the copy, not in the caller's E."""
    E = np.array([[0.5, 1e-37, -0.25], [1e-30, 2e-30, 0.0], [0.0, 0.0, 0.0], [1.0, -1e-19, 1e-21]])
    original = E.copy()
    inputs = FitInputs(sp.csr_matrix(np.eye(4, dtype=np.float32)), E)
    expected = np.array(
        [[0.5, 0.0, -0.25], [1e-30, 2e-30, 0.0], [0.0, 0.0, 0.0], [1.0, -1e-19, 0.0]]
    )
    np.testing.assert_array_equal(inputs.E, expected.astype(np.float32))
    np.testing.assert_array_equal(E, original)


def test_non_finite_embeddings_rejected():
    E = np.ones((4, 2))
    E[2, 1] = np.nan
    with pytest.raises(SolverError, match="1 row of .* NaN or infinite .*\\[2\\]"):
        FitInputs(sp.csr_matrix(np.eye(4, dtype=np.float32)), E)


def test_embeddings_overflowing_float32_rejected():
    E = np.full((4, 2), 1e39)
    with pytest.raises(SolverError, match="4 rows .* in float32"):
        FitInputs(sp.csr_matrix(np.eye(4, dtype=np.float32)), E)


def test_semantic_side_rejects_lost_precision():
    """Items orthogonal to all others, with λ_F tiny next to ‖e‖²: 1 − eᵀKe cancels."""
    E = np.zeros((6, 5))
    E[:5] = 1e6 * np.eye(5)
    with pytest.raises(SolverError, match="solver.lambda_f"):
        semantic_matrix(E, 1e-6)


def test_negligible_zeroing_skips_non_finite_rows():
    E = np.array([[np.inf, 1e-30, 0.5], [np.nan, 1e-30, 0.5]])
    result = linalg.zero_negligible(E.copy())
    np.testing.assert_array_equal(result[:, 1:], E[:, 1:])


def test_add_product_updates_in_place():
    rng = np.random.default_rng(8)
    M = rng.standard_normal((7, 7)).astype(np.float32)
    a, b = rng.standard_normal((7, 3)), rng.standard_normal((3, 7))
    expected = M + 0.5 * a @ b
    result = linalg.add_product(M, a, b, 0.5)
    assert result is M
    np.testing.assert_allclose(M, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_add_product_any_layout(layout):
    rng = np.random.default_rng(11)
    M = rng.standard_normal((9, 9))
    a, b = rng.standard_normal((9, 4)), rng.standard_normal((4, 9))
    if layout == "F":
        a, b = np.asfortranarray(a), np.asfortranarray(b)
    elif layout == "strided":
        a, b = rng.standard_normal((9, 8))[:, ::2], rng.standard_normal((8, 9))[::2]
    expected = M + 2.0 * a @ b
    linalg.add_product(M, a, b, 2.0)
    np.testing.assert_allclose(M, expected, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("order", ["C", "F"])
def test_symmetric_matmul_matches_numpy(dtype, order):
    rng = np.random.default_rng(12)
    A = rng.standard_normal((11, 11))
    S = np.array(A + A.T, dtype=dtype, order=order)
    b = rng.standard_normal((11, 3))
    result = linalg.symmetric_matmul(S, b)
    assert result.dtype == dtype
    assert result.flags.f_contiguous
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(result, S.astype(np.float64) @ b, rtol=tolerance, atol=tolerance)
    # A strided S and a strided b give the same product.
    wide = np.zeros((11, 22), dtype=dtype)
    wide[:, ::2] = S
    result = linalg.symmetric_matmul(wide[:, ::2], b[:, ::-1])
    expected = S.astype(np.float64) @ b[:, ::-1]
    np.testing.assert_allclose(result, expected, rtol=tolerance, atol=tolerance)


def test_add_gram_of_rows_keeps_symmetry():
    rng = np.random.default_rng(9)
    A = rng.standard_normal((6, 6))
    M = A @ A.T
    E = rng.standard_normal((6, 2))
    expected = M + 2.0 * E @ E.T
    linalg.add_gram_of_rows(M, E, 2.0)
    np.testing.assert_allclose(M, expected, atol=1e-12)


def test_add_sparse_gram_matches_dense():
    rng = np.random.default_rng(10)
    F = sp.csr_matrix((rng.random((40, 50)) < 0.2).astype(np.float64))
    M = np.eye(50)
    linalg.add_sparse_gram(M, F, 3.0)
    np.testing.assert_allclose(M, np.eye(50) + 3.0 * (F.T @ F).toarray(), atol=1e-12)


def test_bag_of_words_drops_rare_and_common_words():
    texts = ["The red car", "a red boat", "red green car", "blue plane"]
    F = bag_of_words(texts, min_items=2, max_item_fraction=0.7)
    # "red" is in 3 of 4 items (over 70 %), "green", "blue", "boat", "plane" in one, "the" and
    # "a" are stop words or too short: only "car" remains.
    assert F.shape == (1, 4)
    assert F.toarray().tolist() == [[1.0, 0.0, 1.0, 0.0]]


def test_large_matrix_factored_on_one_thread(monkeypatch):
    """Above the size limit, potrf and potri run with the BLAS limited to one thread."""
    from threadpoolctl import threadpool_info

    seen = []
    original = linalg.lapack.dpotrf

    def recording_potrf(*args, **kwargs):
        # Only BLAS pools count: torch's OpenMP pool, once loaded, keeps its own threads.
        seen.append(
            {info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"}
        )
        return original(*args, **kwargs)

    monkeypatch.setattr(linalg.lapack, "dpotrf", recording_potrf)
    monkeypatch.setattr(linalg, "SINGLE_THREAD_LAPACK_BYTES", 1)
    S = np.diag([2.0, 3.0, 4.0])
    np.testing.assert_allclose(spd_inverse(S.copy(), "S"), np.diag([0.5, 1 / 3, 0.25]))
    assert seen == [{1}]


@pytest.mark.parametrize(("given", "expected"), [(None, "24"), ("30", "30")])
def test_import_sets_openblas_timeout(given, expected):
    env = {key: value for key, value in os.environ.items() if key != "OPENBLAS_THREAD_TIMEOUT"}
    if given is not None:
        env["OPENBLAS_THREAD_TIMEOUT"] = given
    code = "import os, l3ae_bench; print(os.environ['OPENBLAS_THREAD_TIMEOUT'])"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert result.stdout.strip() == expected
