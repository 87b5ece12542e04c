"""One contract for every registered solver: its scores equal a direct NumPy computation.

Each reference below writes the model's formula, as its paper and the L3AE research code
state it, with general inverses, full SVDs and dense matrices in float64. The solver's scores
for every training user (x_u · B, or the scorer's output) must match it in float64 and float32.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

import numpy as np
import pytest
import scipy.sparse as sp

from l3ae_bench.errors import SolverError
from l3ae_bench.solvers import SOLVERS, FitInputs, parse_solver_config
from l3ae_bench.solvers import base as base_module
from l3ae_bench.solvers import linalg as linalg_module
from l3ae_bench.solvers.words import bag_of_words

N_USERS, N_ITEMS, DIM = 14, 9, 4

TEXTS = [
    "red racing car game with fast cars",
    "blue racing boat game on water",
    "red puzzle game with blocks",
    "green puzzle adventure in a forest",
    "blue adventure quest with dragons",
    "fast boat racing on the blue sea",
    "forest quest for green dragons",
    "blocks and cars puzzle for kids",
    "sea adventure with kids and boats",
]


@pytest.fixture(scope="module")
def problem() -> tuple[sp.csr_matrix, np.ndarray]:
    rng = np.random.default_rng(11)
    dense = (rng.random((N_USERS, N_ITEMS)) < 0.45).astype(np.float64)
    dense[np.arange(N_USERS), rng.integers(0, N_ITEMS, N_USERS)] = 1.0
    dense[0] = 0.0  # a user without training items
    return sp.csr_matrix(dense), rng.standard_normal((N_ITEMS, DIM))


# Direct formulas, float64, dense.


def ease(G: np.ndarray, lam: float) -> np.ndarray:
    P = np.linalg.inv(G + lam * np.eye(len(G)))
    B = P / -np.diag(P)
    np.fill_diagonal(B, 0.0)
    return B


def words_dense() -> np.ndarray:
    return bag_of_words(TEXTS).toarray().astype(np.float64)


def reciprocal(values: np.ndarray) -> np.ndarray:
    return np.array([1.0 / v if v != 0 else 0.0 for v in values])


def normalized(X: np.ndarray) -> np.ndarray:
    return np.diag(reciprocal(np.sqrt(X.sum(1)))) @ X @ np.diag(reciprocal(np.sqrt(X.sum(0))))


def ideal(X: np.ndarray, k: int) -> np.ndarray:
    _, _, Vt = np.linalg.svd(normalized(X))
    counts = X.sum(0)
    return np.diag(reciprocal(np.sqrt(counts))) @ Vt[:k].T @ Vt[:k] @ np.diag(np.sqrt(counts))


def ref_ease(X, E, lam=5.0):
    return X @ ease(X.T @ X, lam)


def ref_gfcf(X, E, alpha=0.3, k=3):
    R = normalized(X)
    return X @ (R.T @ R + alpha * ideal(X, k))


def ref_popularity(X, E):
    return np.tile(X.sum(0), (X.shape[0], 1))


def ref_bspm(X, E, beta, t_s, k_s, solver, merge, tpc, factor_dim=3):
    R = normalized(X)
    blur = R.T @ R
    h = t_s / k_s
    M = -h * blur
    if solver == "euler":
        step = np.eye(len(blur)) + M
    else:
        power = np.linalg.matrix_power
        step = np.eye(len(blur)) + M + power(M, 2) / 2 + power(M, 3) / 6 + power(M, 4) / 24
    idl = beta * ideal(X, factor_dim)
    start = blur + idl if merge == "EM" else blur
    states = [start @ np.linalg.matrix_power(step, j) for j in range(1, k_s + 1)]
    B = (blur + sum(states)) / (k_s + 1) if tpc else states[-1]
    if merge == "LM":
        B = B + idl
    return X @ B


def homophily_loop(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Homophily ratios as the SGFCF research code loops over users and items."""
    ratios = []
    for M in (X, X.T):
        ratio = np.zeros(M.shape[0])
        for u in range(M.shape[0]):
            members = np.flatnonzero(M[u])
            if len(members) > 1:
                inter = M[:, members].T.copy()
                inter[:, u] = 0
                connect = inter @ inter.T
                off = (connect != 0).sum() - (np.diag(connect) != 0).sum()
                ratio[u] = off / (len(members) * (len(members) - 1))
        ratios.append(ratio)
    return ratios[0], ratios[1]


def ref_sgfcf(X, E, beta=0.5, beta_end=2.0, gamma=1.6, eps=0.5, mu=0.5, k=3, igf=True):
    du, di = X.sum(1) + mu, X.sum(0) + mu
    R = np.diag(reciprocal(du**eps)) @ X @ np.diag(reciprocal(di**eps))
    U, S, Vt = np.linalg.svd(R)
    U, S, V = U[:, :k], S[:k] / S[0], Vt[:k].T
    if igf:
        hu, hi = homophily_loop(X)
        wu = beta + (beta_end - beta) * (hu - hu.min()) / (hu.max() - hu.min())
        wi = beta + (beta_end - beta) * (hi - hi.min()) / (hi.max() - hi.min())
    else:
        wu, wi = np.full(len(du), beta), np.full(len(di), beta)
    W = (U * S[None, :] ** wu[:, None]) @ (V * S[None, :] ** wi[:, None]).T
    N = R @ R.T @ R
    with np.errstate(invalid="ignore", divide="ignore"):
        scores = W / W.sum(1, keepdims=True) + gamma * N / N.sum(1, keepdims=True)
    return np.nan_to_num(scores)


def ref_ease_text(X, E, lambda_f=0.5):
    return X @ ease(E @ E.T, lambda_f)


def ref_cosine(X, E):
    unit = E / np.linalg.norm(E, axis=1, keepdims=True)
    B = unit @ unit.T
    np.fill_diagonal(B, 0.0)
    return X @ B


def ref_collective_ease(X, E, lam=5.0, alpha=0.7):
    F = words_dense()
    return X @ ease(X.T @ X + alpha**2 * F.T @ F, lam)


def ref_additive_ease(X, E, lam=5.0, lambda_f=2.0, alpha=0.3):
    F = words_dense()
    return X @ ((1 - alpha) * ease(X.T @ X, lam) + alpha * ease(F.T @ F, lambda_f))


def ref_l3ae(X, E, lx=-1.0, lf=0.5, le=4.0):
    n = X.shape[1]
    C = ease(E @ E.T, lf)
    P = np.linalg.inv(X.T @ X + (lx + le) * np.eye(n))
    PC = P @ C
    B = le * PC - P * ((1 + le * np.diag(PC)) / np.diag(P))
    np.fill_diagonal(B, 0.0)
    return X @ B


def ref_l3ae_collective(X, E, lam=5.0, alpha=0.7):
    return X @ ease(X.T @ X + alpha**2 * E @ E.T, lam)


def ref_l3ae_additive(X, E, lam=5.0, lambda_f=0.5, alpha=0.3):
    return X @ ((1 - alpha) * ease(X.T @ X, lam) + alpha * ease(E @ E.T, lambda_f))


Reference = Callable[[np.ndarray, np.ndarray], np.ndarray]

CASES: dict[str, tuple[dict, Reference]] = {
    "ease": ({"lambda_x": 5.0}, ref_ease),
    "gfcf": ({"alpha": 0.3, "k": 3}, ref_gfcf),
    "popularity": ({}, ref_popularity),
    "bspm": (
        {"beta": 0.4, "t_s": 1.5, "k_s": 2, "solver": "rk4", "merge": "EM", "factor_dim": 3},
        lambda X, E: ref_bspm(X, E, 0.4, 1.5, 2, "rk4", "EM", True),
    ),
    "bspm-euler-late": (
        {"beta": 0.4, "t_s": 2.0, "k_s": 3, "solver": "euler", "merge": "LM", "factor_dim": 3},
        lambda X, E: ref_bspm(X, E, 0.4, 2.0, 3, "euler", "LM", True),
    ),
    "bspm-last-state": (
        {"beta": 0.2, "t_s": 1.0, "k_s": 2, "t_point_combination": False, "factor_dim": 3},
        lambda X, E: ref_bspm(X, E, 0.2, 1.0, 2, "rk4", "EM", False),
    ),
    "sgfcf": ({"mu": 0.5, "k": 3}, ref_sgfcf),
    "sgfcf-no-igf": (
        {"mu": 0.5, "k": 3, "use_igf": False},
        lambda X, E: ref_sgfcf(X, E, igf=False),
    ),
    "ease_text": ({"lambda_f": 0.5}, ref_ease_text),
    "cosine": ({}, ref_cosine),
    "collective_ease": ({"lambda_x": 5.0, "alpha": 0.7}, ref_collective_ease),
    "additive_ease": (
        {"lambda_x": 5.0, "lambda_f": 2.0, "alpha": 0.3},
        ref_additive_ease,
    ),
    "l3ae": ({"lambda_x": -1.0, "lambda_f": 0.5, "lambda_e": 4.0}, ref_l3ae),
    "l3ae_collective": ({"lambda_x": 5.0, "alpha": 0.7}, ref_l3ae_collective),
    "l3ae_additive": (
        {"lambda_x": 5.0, "lambda_f": 0.5, "alpha": 0.3},
        ref_l3ae_additive,
    ),
}


def solver_scores(
    case: str, X: sp.csr_matrix, E: np.ndarray, dtype: str = "float64", **inputs_options
) -> np.ndarray:
    name = case.split("-")[0]
    spec, config = parse_solver_config({"name": name, **CASES[case][0]})
    inputs = FitInputs(X, E, dtype, item_texts=TEXTS, **inputs_options)
    fitted = spec.fit(inputs, config)
    if callable(fitted):
        return fitted(np.arange(X.shape[0]))
    assert fitted.shape == (X.shape[1], X.shape[1])
    return X.astype(fitted.dtype) @ fitted


def test_cases_cover_every_solver():
    assert {case.split("-")[0] for case in CASES} == set(SOLVERS)


@pytest.mark.parametrize("case", list(CASES))
def test_solver_matches_direct_formula(problem, case):
    X, E = problem
    expected = CASES[case][1](X.toarray(), E)
    np.testing.assert_allclose(solver_scores(case, X, E), expected, atol=1e-8, rtol=1e-7)


@pytest.mark.parametrize("case", list(CASES))
def test_float32_matches_float64(problem, case):
    X, E = problem
    double = solver_scores(case, X, E, "float64")
    single = solver_scores(case, X, E, "float32")
    assert single.dtype == np.float32
    scale = np.abs(double).max()
    np.testing.assert_allclose(single, double, atol=2e-4 * scale)


@pytest.mark.parametrize("case", ["l3ae", "l3ae_additive", "ease_text"])
def test_dense_semantic_route(problem, case):
    """With d ≥ n the semantic side is inverted densely; the result is the same."""
    X, _ = problem
    E = np.random.default_rng(2).standard_normal((N_ITEMS, N_ITEMS + 3))
    expected = CASES[case][1](X.toarray(), E)
    np.testing.assert_allclose(solver_scores(case, X, E), expected, atol=1e-8, rtol=1e-7)


# Memory: every n × n solver checks before it allocates, with the count of buffers it holds.

NEEDS_MEMORY = sorted(set(SOLVERS) - {"popularity"})
MEDIUM_ITEMS = 600


@pytest.fixture(scope="module")
def medium() -> tuple[sp.csr_matrix, np.ndarray, list[str]]:
    rng = np.random.default_rng(4)
    X = sp.csr_matrix((rng.random((400, MEDIUM_ITEMS)) < 0.01).astype(np.float32))
    E = rng.standard_normal((MEDIUM_ITEMS, 16)).astype(np.float32)
    texts = [f"item {i % 17} kind {i % 5} shade {i % 11}" for i in range(MEDIUM_ITEMS)]
    return X, E, texts


# Few singular vectors, as on real catalogs where k is far below the item count.
SMALL_RANK = {"gfcf": {"k": 8}, "bspm": {"factor_dim": 8}, "sgfcf": {"k": 8}}


def fit_traced(name: str, inputs: FitInputs) -> int:
    """Fit solver `name` and return the peak of traced allocations during the fit."""
    spec, config = parse_solver_config({"name": name, **SMALL_RANK.get(name, {})})
    tracemalloc.start()
    try:
        spec.fit(inputs, config)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak


@pytest.mark.parametrize("name", NEEDS_MEMORY)
def test_memory_error_before_allocation(medium, monkeypatch, name):
    X, E, texts = medium
    monkeypatch.setattr(linalg_module, "available_memory", lambda: 1000)
    inputs = FitInputs(X, E, "float32", item_texts=texts)
    tracemalloc.start()
    try:
        spec, config = parse_solver_config({"name": name})
        with pytest.raises(SolverError, match="GB") as error:
            spec.fit(inputs, config)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "fewer items" in str(error.value)
    assert inputs._gram is None
    assert peak < linalg_module.matrix_bytes(MEDIUM_ITEMS, "float32")


@pytest.mark.parametrize("width", [16, 590])
@pytest.mark.parametrize("reuse", [True, False])
@pytest.mark.parametrize("name", NEEDS_MEMORY)
def test_memory_estimate_bounds_peak(medium, monkeypatch, name, reuse, width):
    """The buffers a solver declares cover what it allocates at its peak, also when d ≈ n."""
    X, _, texts = medium
    E = np.random.default_rng(5).standard_normal((MEDIUM_ITEMS, width)).astype(np.float32)
    declared = []
    original = base_module.check_memory

    def record(n_items, dtype, n_matrices, what, extra_bytes=0, **options):
        declared.append(linalg_module.matrix_bytes(n_items, dtype, n_matrices) + extra_bytes)
        original(n_items, dtype, n_matrices, what, extra_bytes=extra_bytes, **options)

    monkeypatch.setattr(base_module, "check_memory", record)
    inputs = FitInputs(X, E, "float32", item_texts=texts, reuse=reuse)
    if SOLVERS[name].uses_texts:
        inputs.words(name)
    peak = fit_traced(name, inputs)
    assert len(declared) == 1
    # Small vectors and sparse temporaries may add a fraction of one matrix, not more.
    assert peak <= declared[0] + 0.5 * linalg_module.matrix_bytes(MEDIUM_ITEMS, "float32")


@pytest.mark.parametrize("name", ["ease", "l3ae", "l3ae_collective", "l3ae_additive"])
def test_torch_backend_matches_numpy(problem, name):
    pytest.importorskip("torch")
    X, E = problem
    case = name
    numpy_scores = solver_scores(case, X, E, "float64")
    torch_scores = solver_scores(case, X, E, "float64", backend="torch", device="cpu")
    np.testing.assert_allclose(torch_scores, numpy_scores, atol=1e-9)


def test_memory_error_suggests_float32(medium, monkeypatch):
    X, E, _ = medium
    monkeypatch.setattr(linalg_module, "available_memory", lambda: 1000)
    spec, config = parse_solver_config({"name": "l3ae"})
    with pytest.raises(SolverError, match="compute.dtype=float32"):
        spec.fit(FitInputs(X, E, "float64"), config)
