"""What every closed-form solver receives and returns.

A solver is a plain function `fit(inputs, config) -> B` that maps the training interactions X
(and, for text-aware solvers, the item embeddings E) to a dense item × item weight matrix B.
Scores of a user are then x_u · B. Solvers never touch tracking, configuration files or encoders.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import scipy.sparse as sp

from l3ae_bench.errors import SolverError
from l3ae_bench.solvers.linalg import gram

log = logging.getLogger(__name__)


class FitInputs:
    """Training data of one fit, with the Gram matrix G = XᵀX built once and reused.

    Solvers that factor G in place call `gram()`, which returns a fresh copy each time, so one
    `FitInputs` can serve many fits of the same data (hyperparameter search, several solvers).
    """

    def __init__(
        self, X: sp.csr_matrix, E: np.ndarray | None = None, dtype: str | np.dtype = "float32"
    ) -> None:
        self.X = X
        self.dtype = np.dtype(dtype)
        self.E = None if E is None else np.ascontiguousarray(E, dtype=self.dtype)
        self._gram: np.ndarray | None = None
        if self.E is not None and self.E.shape[0] != X.shape[1]:
            raise SolverError(
                f"The item embeddings have {self.E.shape[0]} rows but the interaction matrix "
                f"has {X.shape[1]} items; both must index the same items."
            )

    @property
    def n_items(self) -> int:
        return self.X.shape[1]

    def gram(self, keep: bool = True) -> np.ndarray:
        """Return a writable copy of G = XᵀX in `self.dtype`.

        With keep=False, the cached matrix itself is handed over and forgotten, which saves one
        n × n copy when no further fit will need it.
        """
        if self._gram is None:
            self._gram = gram(self.X, self.dtype)
        if keep:
            return self._gram.copy()
        G, self._gram = self._gram, None
        return G

    def embeddings(self, solver: str) -> np.ndarray:
        """Return E, or raise when the solver needs embeddings and none were given."""
        if self.E is None:
            raise SolverError(f"Solver {solver} needs item embeddings, but no encoder ran.")
        return self.E


@dataclass(frozen=True)
class SearchRange:
    """Range of one hyperparameter for tuning: uniform over [low, high], or log-uniform."""

    low: float
    high: float
    log: bool = False


def hyperparameter(default: float, low: float, high: float, log: bool = False) -> Any:
    """Declare a solver config field together with its search range."""
    return field(default=default, metadata={"search": SearchRange(low, high, log)})


def search_space(config_class: type) -> dict[str, SearchRange]:
    """Return the search range of each tunable field of a solver config class."""
    return {
        item.name: item.metadata["search"]
        for item in fields(config_class)
        if "search" in item.metadata
    }


@dataclass(frozen=True)
class SolverSpec:
    """A solver's fit function and its typed config."""

    name: str
    config_class: type
    fit: Callable[[FitInputs, Any], np.ndarray]
    uses_embeddings: bool
    """Whether `fit` reads the item embeddings E (so the encoder must run first)."""
    uses_interactions: bool = True
    """Whether `fit` reads X; text-only solvers do not."""
