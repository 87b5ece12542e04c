"""L3AE (Moon, Park and Lee, CIKM 2025): EASE on interactions, distilled towards the semantic C.

    min_B ‖X − XB‖²_F + λ_X‖B‖²_F + λ_E‖B − C‖²_F   s.t. diag(B) = 0

with C from `semantic.semantic_matrix` (ridge λ_F). The closed form is
    P = (XᵀX + (λ_X + λ_E) I)⁻¹
    B = λ_E·P·C − P·diag(ν),   ν_j = (1 + λ_E (PC)_jj) / P_jj,   then diag(B) = 0.

λ_X may be negative as long as λ_X + λ_E > 0, which keeps XᵀX + (λ_X + λ_E)I positive definite.
When d < n, the Woodbury form of the semantic inverse turns B into P·diag(a) + λ_E·(P·E)·V
(see `l3ae_column_scales`): one n × n buffer, P's own, and O(n²d) work next to the inverse.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from l3ae_bench.errors import ConfigError
from l3ae_bench.solvers.base import FitInputs, hyperparameter
from l3ae_bench.solvers.linalg import (
    add_product,
    add_to_diagonal,
    matmul,
    scale_columns,
    spd_inverse,
    symmetric_matmul,
)
from l3ae_bench.solvers.semantic import WoodburyFactors, semantic_matrix, use_woodbury

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
    woodbury = use_woodbury(E)
    # The Woodbury route works in P's own buffer next to V and P·E (n × d each), and the dense
    # route also keeps C and P·C.
    extra = inputs.woodbury_bytes(config.lambda_f) + inputs.rows_bytes(1) if woodbury else 0
    inputs.check_memory(
        1 if woodbury else 3, "L3AE", uses_gram=True, torch_capable=True, extra_bytes=extra
    )

    log.debug("L3AE: building XᵀX + (λ_X + λ_E)·I")
    A = inputs.gram()
    add_to_diagonal(A, config.lambda_x + config.lambda_e)
    if woodbury:
        factors = inputs.woodbury(config.lambda_f, "l3ae")
        if inputs.uses_torch:
            from l3ae_bench.solvers.torch_backend import l3ae_weights_torch, resolve_device

            device = resolve_device(inputs.device)
            B = l3ae_weights_torch(A, E, factors, config.lambda_e, device)
        else:
            B = _l3ae_woodbury(A, E, factors, config.lambda_e)
    else:
        B = _l3ae_dense(A, semantic_matrix(E, config.lambda_f), config.lambda_e)
    log.info("Fitted L3AE on %d items in %.2fs", inputs.n_items, time.perf_counter() - started)
    return B


def l3ae_column_scales(
    P_diagonal: np.ndarray, R_diagonal: np.ndarray, factors: WoodburyFactors, lambda_e: float
) -> np.ndarray:
    """Return a of B = P·diag(a) + λ_E·R, where R = (P·E)·V (diagonals in float64, length n).

    With C = I − diag(s) + E·V (`semantic.WoodburyFactors`), P·C = P·diag(1 − s) + R, so
    B = λ_E·P·C − P·diag(ν) gives a = λ_E(1 − s) − ν, with ν_j = (1 + λ_E (PC)_jj) / P_jj and
    (PC)_jj = P_jj (1 − s_j) + R_jj.
    """
    PC_diagonal = P_diagonal * (1.0 - factors.s) + R_diagonal
    nu = (1.0 + lambda_e * PC_diagonal) / P_diagonal
    return lambda_e * (1.0 - factors.s) - nu


def _l3ae_woodbury(
    A: np.ndarray, E: np.ndarray, factors: WoodburyFactors, lambda_e: float
) -> np.ndarray:
    """Compute B in A's buffer: P = A⁻¹ scaled by columns, plus the rank-d term λ_E·(P·E)·V."""
    log.debug("L3AE: inverting XᵀX + (λ_X + λ_E)·I")
    P = spd_inverse(A, "XᵀX + (λ_X + λ_E)·I")
    log.debug("L3AE: P·C by Woodbury in O(n²d), d=%d", E.shape[1])
    PE = symmetric_matmul(P, E)
    P_diagonal = np.diag(P).astype(np.float64)
    # diag(R) = diag((P·E)·V): row i of P·E dotted with column i of V, summed in float64.
    # P·E is Fortran-ordered and V C-ordered, so einsum reads both contiguously along items.
    R_diagonal = np.einsum("ji,ij->i", PE.T, factors.V.T, dtype=np.float64)
    scale_columns(P, l3ae_column_scales(P_diagonal, R_diagonal, factors, lambda_e))
    add_product(P, PE, factors.V, lambda_e)
    np.fill_diagonal(P, 0.0)
    return P


def _l3ae_dense(A: np.ndarray, C: np.ndarray, lambda_e: float) -> np.ndarray:
    """Compute B = λ_E·P·C − P·diag(ν) with a dense C (d ≥ n), holding P, C and P·C."""
    log.debug("L3AE: inverting XᵀX + (λ_X + λ_E)·I and forming P·C densely")
    P = spd_inverse(A, "XᵀX + (λ_X + λ_E)·I")
    PC = matmul(P, C)
    del C
    P_diagonal = np.diag(P).astype(np.float64)
    nu = (1.0 + lambda_e * np.diag(PC).astype(np.float64)) / P_diagonal
    PC *= lambda_e
    P *= (-nu).astype(P.dtype)[np.newaxis, :]
    PC += P
    del P
    np.fill_diagonal(PC, 0.0)
    return PC
