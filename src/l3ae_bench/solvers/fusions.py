"""Fusions of interactions with item text, as linear autoencoders with a zero diagonal.

Word counts (the pre-LLM baselines), with F the binary word × item matrix of `words.py`:
- Collective EASE: EASE on X stacked with α·F, so G becomes XᵀX + α²·FᵀF.
- Additive EASE: (1 − α)·B_X + α·B_F with B_X = EASE(XᵀX, λ_X), B_F = EASE(FᵀF, λ_F).
LLM embeddings E:
- L3AE-Collective: EASE on X stacked with α·Eᵀ, so G becomes XᵀX + α²·EEᵀ.
- L3AE-Additive: (1 − α)·B_X + α·C, with C the semantic matrix of `semantic.py` (ridge λ_F).
α = 0 gives EASE in all four; α = 1 gives B_F or C in the additive ones.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from l3ae_bench.errors import ConfigError
from l3ae_bench.solvers.base import FitInputs, hyperparameter
from l3ae_bench.solvers.ease import ease_weights
from l3ae_bench.solvers.linalg import (
    add_gram_of_rows,
    add_product,
    add_sparse_gram,
    add_to_diagonal,
)
from l3ae_bench.solvers.semantic import semantic_matrix, use_woodbury

log = logging.getLogger(__name__)


def _check_ridge(name: str, symbol: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"solver.{name} ({symbol}) must be > 0, got {value}.")


@dataclass(frozen=True)
class CollectiveConfig:
    """Hyperparameters of Collective EASE and L3AE-Collective."""

    lambda_x: float = hyperparameter(100.0, 1.0, 1e4, log=True)
    """λ_X, ridge weight on B. Search: log-uniform over [1, 10⁴]."""
    alpha: float = hyperparameter(1.0, 1e-2, 1e2, log=True)
    """α, weight of the text rows stacked under X; 0 gives EASE. Search: log-uniform over
    [10⁻², 10²]."""

    def __post_init__(self) -> None:
        _check_ridge("lambda_x", "λ_X", self.lambda_x)
        if self.alpha < 0:
            raise ConfigError(f"solver.alpha (α) must be ≥ 0, got {self.alpha}.")


@dataclass(frozen=True)
class AdditiveConfig:
    """Hyperparameters of Additive EASE and L3AE-Additive."""

    lambda_x: float = hyperparameter(100.0, 1.0, 1e4, log=True)
    """λ_X, ridge weight of EASE on X. Search: log-uniform over [1, 10⁴]."""
    lambda_f: float = hyperparameter(1.0, 1e-2, 1e3, log=True)
    """λ_F, ridge weight of EASE on the text side. Search: log-uniform over [10⁻², 10³]."""
    alpha: float = hyperparameter(0.2, 0.0, 1.0)
    """α, weight of the text-side matrix; 0 gives EASE, 1 the text side alone. Search: uniform
    over [0, 1]."""

    def __post_init__(self) -> None:
        _check_ridge("lambda_x", "λ_X", self.lambda_x)
        _check_ridge("lambda_f", "λ_F", self.lambda_f)
        if not 0 <= self.alpha <= 1:
            raise ConfigError(f"solver.alpha (α) must be in [0, 1], got {self.alpha}.")


def _interaction_ease(inputs: FitInputs, lambda_x: float) -> np.ndarray:
    A = inputs.gram()
    add_to_diagonal(A, lambda_x)
    return ease_weights(A, "XᵀX + λ_X·I", inputs)


def fit_collective_ease(inputs: FitInputs, config: CollectiveConfig) -> np.ndarray:
    """Return EASE on [X; α·F]: B from XᵀX + α²·FᵀF + λ_X·I."""
    started = time.perf_counter()
    F = inputs.words("collective_ease")
    inputs.check_memory(1, "Collective EASE", uses_gram=True, torch_capable=True)
    A = inputs.gram()
    add_sparse_gram(A, F, config.alpha**2)
    add_to_diagonal(A, config.lambda_x)
    B = ease_weights(A, "XᵀX + α²FᵀF + λ_X·I", inputs)
    log.info(
        "Fitted Collective EASE on %d items and %d words in %.2fs",
        inputs.n_items,
        F.shape[0],
        time.perf_counter() - started,
    )
    return B


def fit_additive_ease(inputs: FitInputs, config: AdditiveConfig) -> np.ndarray:
    """Return (1 − α)·EASE(XᵀX, λ_X) + α·EASE(FᵀF, λ_F)."""
    started = time.perf_counter()
    F = inputs.words("additive_ease")
    inputs.check_memory(2, "Additive EASE", uses_gram=True, torch_capable=True)
    B = _interaction_ease(inputs, config.lambda_x)

    A = np.zeros_like(B)
    add_sparse_gram(A, F, 1.0)
    add_to_diagonal(A, config.lambda_f)
    B_words = ease_weights(A, "FᵀF + λ_F·I", inputs)
    B *= 1.0 - config.alpha
    B_words *= config.alpha
    B += B_words
    log.info(
        "Fitted Additive EASE on %d items and %d words in %.2fs",
        inputs.n_items,
        F.shape[0],
        time.perf_counter() - started,
    )
    return B


def fit_l3ae_collective(inputs: FitInputs, config: CollectiveConfig) -> np.ndarray:
    """Return EASE on [X; α·Eᵀ]: B from XᵀX + α²·EEᵀ + λ_X·I."""
    started = time.perf_counter()
    E = inputs.embeddings("l3ae_collective")
    inputs.check_memory(1, "L3AE-Collective", uses_gram=True, torch_capable=True)
    A = inputs.gram()
    add_gram_of_rows(A, E, config.alpha**2)
    add_to_diagonal(A, config.lambda_x)
    B = ease_weights(A, "XᵀX + α²EEᵀ + λ_X·I", inputs)
    log.info(
        "Fitted L3AE-Collective on %d items in %.2fs", inputs.n_items, time.perf_counter() - started
    )
    return B


def fit_l3ae_additive(inputs: FitInputs, config: AdditiveConfig) -> np.ndarray:
    """Return (1 − α)·EASE(XᵀX, λ_X) + α·C(λ_F)."""
    started = time.perf_counter()
    E = inputs.embeddings("l3ae_additive")
    woodbury = use_woodbury(E)
    # With Woodbury, α·C is added by one gemm into B; otherwise the dense C is a second buffer.
    extra = inputs.woodbury_bytes(config.lambda_f) if woodbury else 0
    inputs.check_memory(
        1 if woodbury else 2,
        "L3AE-Additive",
        uses_gram=True,
        torch_capable=True,
        extra_bytes=extra,
    )
    B = _interaction_ease(inputs, config.lambda_x)
    B *= 1.0 - config.alpha
    if woodbury:
        # α·C = α·E·V off the diagonal (see semantic.WoodburyFactors).
        factors = inputs.woodbury(config.lambda_f, "l3ae_additive")
        add_product(B, E, factors.V, config.alpha)
    else:
        C = semantic_matrix(E, config.lambda_f)
        C *= config.alpha
        B += C
        del C
    np.fill_diagonal(B, 0.0)
    log.info(
        "Fitted L3AE-Additive on %d items in %.2fs", inputs.n_items, time.perf_counter() - started
    )
    return B
