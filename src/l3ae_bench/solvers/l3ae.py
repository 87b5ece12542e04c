"""L3AE (Moon, Park and Lee, CIKM 2025): EASE on interactions, distilled towards the semantic C.

    min_B ‖X − XB‖²_F + λ_X‖B‖²_F + λ_E‖B − C‖²_F   s.t. diag(B) = 0

with C from `semantic.semantic_matrix` (ridge λ_F). The closed form is
    P = (XᵀX + (λ_X + λ_E) I)⁻¹
    B = λ_E·P·C − P·diag(ν),   ν_j = (1 + λ_E (PC)_jj) / P_jj,   then diag(B) = 0.

λ_X may be negative as long as λ_X + λ_E > 0, which keeps XᵀX + (λ_X + λ_E)I positive definite.
When d < n, P·C is formed in O(n²d) through the Woodbury form of the semantic inverse
instead of an n × n × n product.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from l3ae_bench.errors import ConfigError
from l3ae_bench.solvers.base import FitInputs, hyperparameter
from l3ae_bench.solvers.linalg import add_to_diagonal, check_memory, spd_inverse
from l3ae_bench.solvers.semantic import semantic_matrix, use_woodbury, woodbury_factors

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class L3AEConfig:
    """Hyperparameters of L3AE."""

    lambda_x: float = hyperparameter(20.0, -100.0, 500.0)
    """λ_X, ridge weight on B from the interactions; may be negative if λ_X + λ_E > 0.
    Search: uniform over [−100, 500]."""
    lambda_f: float = hyperparameter(0.1, 1e-2, 1e2, log=True)
    """λ_F, ridge weight of the semantic EASE on item embeddings. Search: log-uniform over
    [10⁻², 10²]."""
    lambda_e: float = hyperparameter(80.0, 1.0, 1e3, log=True)
    """λ_E, weight of the distillation term ‖B − C‖². 0 gives EASE. Search: log-uniform over
    [1, 10³]."""

    def __post_init__(self) -> None:
        if not self.lambda_f > 0:
            raise ConfigError(f"solver.lambda_f (λ_F) must be > 0, got {self.lambda_f}.")
        if self.lambda_e < 0:
            raise ConfigError(f"solver.lambda_e (λ_E) must be ≥ 0, got {self.lambda_e}.")
        if not self.lambda_x + self.lambda_e > 0:
            raise ConfigError(
                f"solver.lambda_x + solver.lambda_e (λ_X + λ_E) must be > 0 so that "
                f"XᵀX + (λ_X + λ_E)I is positive definite, got {self.lambda_x} + "
                f"{self.lambda_e} = {self.lambda_x + self.lambda_e}. Raise either weight."
            )


def fit_l3ae(inputs: FitInputs, config: L3AEConfig) -> np.ndarray:
    """Return the L3AE weights B (n_items × n_items, zero diagonal)."""
    started = time.perf_counter()
    E = inputs.embeddings("l3ae")
    lambda_e = config.lambda_e
    check_memory(inputs.n_items, inputs.dtype, 2, "L3AE")

    log.debug("L3AE: inverting XᵀX + (λ_X + λ_E)·I")
    A = inputs.gram()
    add_to_diagonal(A, config.lambda_x + lambda_e)
    P = spd_inverse(A, "XᵀX + (λ_X + λ_E)·I")

    # R = P − P·C, so that P·C = P − R. Through Woodbury, P·P_F = (P − (P·E)·W) / λ_F and
    # C = I − P_F·diag(1/diag(P_F)) give R = P·P_F·diag(1/diag(P_F)).
    if use_woodbury(E):
        log.debug("L3AE: P·C by Woodbury in O(n²d), d=%d", E.shape[1])
        factors = woodbury_factors(E, config.lambda_f)
        R = (P @ E) @ factors.W
        np.subtract(P, R, out=R)
        R /= (config.lambda_f * factors.diagonal).astype(R.dtype)[np.newaxis, :]
    else:
        log.debug("L3AE: P·C by a dense product, d=%d ≥ n", E.shape[1])
        C = semantic_matrix(E, config.lambda_f)
        R = P @ C
        np.subtract(P, R, out=R)
        del C

    log.debug("L3AE: combining into B with λ_E=%g", lambda_e)
    P_diagonal = np.diag(P).astype(np.float64)
    PC_diagonal = P_diagonal - np.diag(R)
    nu = (1.0 + lambda_e * PC_diagonal) / P_diagonal
    P *= (lambda_e - nu).astype(P.dtype)[np.newaxis, :]
    R *= -lambda_e
    R += P
    del P
    np.fill_diagonal(R, 0.0)
    log.info("Fitted L3AE on %d items in %.2fs", inputs.n_items, time.perf_counter() - started)
    return R
