"""BSPM (Choi et al., SIGIR 2023): blurring and sharpening ODEs over the item graph.

For a user row r, with P̃ = R̃ᵀR̃ and Π the ideal filter of `graph.py`:
    blurred = r·P̃                    (one Euler step of dy/dt = y·P̃ − y over [0, 1])
    ideal   = r·Π                    (one Euler step of dy/dt = y·Π − y over [0, 1])
    y(0)    = blurred + β·ideal      (early merge, EM) or blurred (late merge, LM)
    dy/dt   = −y·P̃ over [0, T_s] in K_s steps of Euler or fourth-order Runge-Kutta
    U       = mean(blurred, y(t₁), …, y(t_K)) with t-point combination, else y(T_s)
    scores  = U (EM) or U + β·ideal (LM)

Every step is linear in r, so the scores are r·B where row i of B is the response to the unit
vector eᵢ. `fit_bspm` builds B by running the ODE on blocks of unit vectors, applying P̃ as
(Y·R̃ᵀ)·R̃ through the sparse R̃: O(nnz(X)·n) work per step and one n × n buffer, B itself.
For a linear ODE every four-stage fourth-order Runge-Kutta method (the classic one, or the
3/8 rule that torchdiffeq's `rk4` uses) has the same step matrix, so the choice is immaterial.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from l3ae_bench.errors import ConfigError
from l3ae_bench.solvers.base import FitInputs, hyperparameter
from l3ae_bench.solvers.graph import IdealFilter, ideal_filter, normalized_interactions

log = logging.getLogger(__name__)

MAX_BLOCK = 512
"""Most unit vectors pushed through the ODE at once."""


@dataclass(frozen=True)
class BSPMConfig:
    """Hyperparameters of BSPM."""

    beta: float = hyperparameter(0.3, 0.0, 1.0)
    """β, weight of the ideal low-pass filter. Search: uniform over [0, 1]."""
    t_s: float = hyperparameter(1.2, 1.0, 5.0)
    """T_s, end time of the sharpening ODE. Search: uniform over [1, 5]."""
    k_s: int = 1
    """K_s, number of sharpening steps."""
    solver: str = "rk4"
    """Integrator of the sharpening ODE: `euler` or `rk4`."""
    merge: str = "EM"
    """Merge point of the ideal filter: `EM` (early, into y(0)) or `LM` (late, into the output)."""
    t_point_combination: bool = True
    """Average the blurred signal and every sharpening step instead of keeping the last state."""
    factor_dim: int = 256
    """Number of singular vectors of R̃ in the ideal filter (clipped to min(users, items) − 1)."""

    def __post_init__(self) -> None:
        if self.solver not in ("euler", "rk4"):
            raise ConfigError(f"solver.solver must be euler or rk4, got {self.solver!r}.")
        if self.merge not in ("EM", "LM"):
            raise ConfigError(f"solver.merge must be EM or LM, got {self.merge!r}.")
        if self.k_s < 1:
            raise ConfigError(f"solver.k_s (K_s) must be ≥ 1, got {self.k_s}.")
        if not self.t_s > 0:
            raise ConfigError(f"solver.t_s (T_s) must be > 0, got {self.t_s}.")
        if self.factor_dim < 1:
            raise ConfigError(f"solver.factor_dim must be ≥ 1, got {self.factor_dim}.")


class _Filters:
    """The two linear maps of BSPM applied to a block of row vectors."""

    def __init__(self, R: sp.csr_matrix, ideal: IdealFilter | None) -> None:
        self.R = R
        self.Rt = sp.csr_matrix(R.T)
        self.ideal = ideal

    def blur(self, Y: np.ndarray) -> np.ndarray:
        """Return Y·P̃ = (Y·R̃ᵀ)·R̃, computed as (R̃ᵀ·(R̃·Yᵀ))ᵀ with sparse products."""
        return np.ascontiguousarray((self.Rt @ (self.R @ Y.T)).T)

    def ideal_of(self, Y: np.ndarray) -> np.ndarray:
        """Return Y·Π through the low-rank form of Π."""
        if self.ideal is None:
            return np.zeros_like(Y)
        return (Y @ self.ideal.left) @ self.ideal.right


def _sharpen_step(filters: _Filters, y: np.ndarray, h: float, solver: str) -> np.ndarray:
    """Advance dy/dt = −y·P̃ by one step of size h."""
    if solver == "euler":
        return y - h * filters.blur(y)
    k1 = -filters.blur(y)
    k2 = -filters.blur(y + (h / 2) * k1)
    k3 = -filters.blur(y + (h / 2) * k2)
    k4 = -filters.blur(y + h * k3)
    return y + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4)


def bspm_rows(filters: _Filters, Y: np.ndarray, config: BSPMConfig) -> np.ndarray:
    """Return BSPM's output for the block of row vectors Y (the scores when Y holds users)."""
    blurred = filters.blur(Y)
    ideal = filters.ideal_of(Y) if config.beta else None
    y = blurred
    if ideal is not None and config.merge == "EM":
        y = blurred + config.beta * ideal
    h = config.t_s / config.k_s
    total = blurred.copy() if config.t_point_combination else None
    for _ in range(config.k_s):
        y = _sharpen_step(filters, y, h, config.solver)
        if total is not None:
            total += y
    out = total / (config.k_s + 1) if total is not None else y
    if ideal is not None and config.merge == "LM":
        out += config.beta * ideal
    return out


def fit_bspm(inputs: FitInputs, config: BSPMConfig) -> np.ndarray:
    """Return the BSPM weights B (n_items × n_items), row i the ODE's response to eᵢ."""
    started = time.perf_counter()
    inputs.check_memory(1, "BSPM")
    R, item_counts = normalized_interactions(inputs.X, inputs.dtype)
    ideal = None
    if config.beta:
        ideal = ideal_filter(R, item_counts, config.factor_dim, inputs.dtype, "BSPM")
    filters = _Filters(R, ideal)

    n = inputs.n_items
    # About ten block × n arrays live during an RK4 step, so n/32 rows keep them within a third
    # of one n × n matrix.
    block = max(16, min(MAX_BLOCK, n // 32))
    B = np.empty((n, n), dtype=inputs.dtype)
    for start in range(0, n, block):
        stop = min(start + block, n)
        unit = np.zeros((stop - start, n), dtype=inputs.dtype)
        unit[np.arange(stop - start), np.arange(start, stop)] = 1.0
        B[start:stop] = bspm_rows(filters, unit, config)
    log.info("Fitted BSPM on %d items in %.2fs", n, time.perf_counter() - started)
    return B
