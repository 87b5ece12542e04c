"""GF-CF (Shen et al., CIKM 2021): a linear plus an ideal low-pass graph filter over items.

    B = P̃ + α·Π,   P̃ = R̃ᵀR̃,   Π = D_I^{-1/2} Vₖᵀ Vₖ D_I^{1/2}

with R̃ and Π as in `graph.py`. Scores of a user are x_u · B; the diagonal is kept, as in the
GF-CF and L3AE research code, because training items are excluded from rankings anyway.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from l3ae_bench.errors import ConfigError
from l3ae_bench.solvers.base import FitInputs, hyperparameter
from l3ae_bench.solvers.graph import ideal_filter, normalized_interactions
from l3ae_bench.solvers.linalg import add_product, add_sparse_gram

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GFCFConfig:
    """Hyperparameters of GF-CF."""

    alpha: float = hyperparameter(0.3, 0.0, 2.0)
    """α, weight of the ideal low-pass filter Π. 0 leaves the linear filter alone. Search:
    uniform over [0, 2]."""
    k: int = 256
    """Number of singular vectors of R̃ in Π (clipped to min(users, items) − 1)."""

    def __post_init__(self) -> None:
        if self.alpha < 0:
            raise ConfigError(f"solver.alpha (α) must be ≥ 0, got {self.alpha}.")
        if self.k < 1:
            raise ConfigError(f"solver.k must be ≥ 1, got {self.k}.")


def fit_gfcf(inputs: FitInputs, config: GFCFConfig) -> np.ndarray:
    """Return the GF-CF weights B = P̃ + α·Π (n_items × n_items)."""
    started = time.perf_counter()
    inputs.check_memory(1, "GF-CF")
    R, item_counts = normalized_interactions(inputs.X, inputs.dtype)

    log.debug("GF-CF: building P̃ = R̃ᵀR̃")
    B = add_sparse_gram(np.zeros((inputs.n_items, inputs.n_items), inputs.dtype), R, 1.0)
    if config.alpha > 0:
        ideal = ideal_filter(R, item_counts, config.k, inputs.dtype, "GF-CF")
        add_product(B, ideal.left, ideal.right, config.alpha)
    log.info("Fitted GF-CF on %d items in %.2fs", inputs.n_items, time.perf_counter() - started)
    return B
