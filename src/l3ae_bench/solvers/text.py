"""Text-only item-item models built from the item embeddings E alone.

- EASE on embeddings: B = C, the semantic matrix of `semantic.py` (EASE with EEᵀ in place of
  XᵀX, ridge λ_F), computed through the Woodbury identity when d < n.
- Cosine similarity: B = ÊÊᵀ with Ê the rows of E scaled to unit length, diag(B) = 0.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from l3ae_bench.errors import ConfigError
from l3ae_bench.solvers.base import FitInputs, hyperparameter
from l3ae_bench.solvers.linalg import matmul
from l3ae_bench.solvers.semantic import semantic_from_factors, semantic_matrix, use_woodbury

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EASETextConfig:
    """Hyperparameters of EASE on item embeddings."""

    lambda_f: float = hyperparameter(1.0, 1e-2, 1e2, log=True)
    """λ_F, ridge weight of EASE on E. Search: log-uniform over [10⁻², 10²]."""

    def __post_init__(self) -> None:
        if not self.lambda_f > 0:
            raise ConfigError(f"solver.lambda_f (λ_F) must be > 0, got {self.lambda_f}.")


@dataclass(frozen=True)
class CosineConfig:
    """Cosine similarity has no hyperparameters."""


def fit_ease_text(inputs: FitInputs, config: EASETextConfig) -> np.ndarray:
    """Return B = C, EASE on the item embeddings (n_items × n_items, zero diagonal)."""
    started = time.perf_counter()
    E = inputs.embeddings("ease_text")
    woodbury = use_woodbury(E)
    extra = inputs.woodbury_bytes(config.lambda_f) if woodbury else 0
    inputs.check_memory(1, "EASE on embeddings", extra_bytes=extra)
    if woodbury:
        B = semantic_from_factors(E, inputs.woodbury(config.lambda_f, "ease_text"))
    else:
        B = semantic_matrix(E, config.lambda_f)
    log.info(
        "Fitted EASE on embeddings (%d items, d=%d) in %.2fs",
        *E.shape,
        time.perf_counter() - started,
    )
    return B


def fit_cosine(inputs: FitInputs, config: CosineConfig) -> np.ndarray:
    """Return the cosine similarities of the item embeddings with a zero diagonal."""
    started = time.perf_counter()
    E = inputs.embeddings("cosine")
    # The unit-length copy of E is the only n × d buffer, because the norms are summed in
    # float64 without a float64 copy of E.
    inputs.check_memory(1, "cosine similarity", extra_bytes=inputs.rows_bytes(1))
    norms = np.sqrt(np.einsum("ij,ij->i", E, E, dtype=np.float64))
    scale = np.zeros_like(norms)
    np.divide(1.0, norms, out=scale, where=norms > 0)
    unit = E * scale.astype(E.dtype)[:, np.newaxis]
    B = matmul(unit, unit.T)
    np.fill_diagonal(B, 0.0)
    log.info("Cosine similarity of %d items in %.2fs", E.shape[0], time.perf_counter() - started)
    return B
