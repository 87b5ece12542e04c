"""EASE (Steck, WWW 2019): a linear item-item autoencoder with a zero diagonal, in closed form.

min_B ‖X − XB‖²_F + λ_X‖B‖²_F   s.t. diag(B) = 0
P = (XᵀX + λ_X I)⁻¹,   B = I − P · diag(1 / diag(P))
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from l3ae_bench.errors import ConfigError
from l3ae_bench.solvers.base import FitInputs, hyperparameter
from l3ae_bench.solvers.linalg import add_to_diagonal, ease_from_inverse, spd_inverse

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EASEConfig:
    """Hyperparameters of EASE."""

    lambda_x: float = hyperparameter(100.0, 1.0, 1e4, log=True)
    """λ_X, the ridge weight on B. Search: log-uniform over [1, 10⁴]."""

    def __post_init__(self) -> None:
        if not self.lambda_x > 0:
            raise ConfigError(f"solver.lambda_x (λ_X) must be > 0 for EASE, got {self.lambda_x}.")


def ease_weights(A: np.ndarray, what: str, inputs: FitInputs) -> np.ndarray:
    """Return B = I − P·diag(1/diag(P)) for P = A⁻¹, on the backend that `inputs` names.

    A is symmetric positive definite and is overwritten (NumPy) or may be (torch on the CPU).
    """
    if inputs.uses_torch:
        from l3ae_bench.solvers.torch_backend import ease_weights_torch, resolve_device

        return ease_weights_torch(A, what, resolve_device(inputs.device))
    return ease_from_inverse(spd_inverse(A, what))


def fit_ease(inputs: FitInputs, config: EASEConfig) -> np.ndarray:
    """Return the EASE weights B (n_items × n_items, zero diagonal)."""
    started = time.perf_counter()
    inputs.check_memory(1, "EASE", uses_gram=True, torch_capable=True)

    log.debug("EASE: building G + λ_X·I with λ_X=%g", config.lambda_x)
    A = inputs.gram()
    add_to_diagonal(A, config.lambda_x)

    log.debug("EASE: inverting and scaling columns")
    B = ease_weights(A, "XᵀX + λ_X·I", inputs)
    log.info("Fitted EASE on %d items in %.2fs", inputs.n_items, time.perf_counter() - started)
    return B
