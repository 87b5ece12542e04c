"""The solver interface: the inputs every closed-form solver receives, and its result.

A solver is a plain function `fit(inputs, config) -> B`. It maps the training interactions X
(and, for text-aware solvers, the item embeddings E or the item texts) to a dense item × item
weight matrix B, and the scores of a user are then x_u · B. The few models whose scores are no such
product (item popularity, SGFCF) return a `UserScorer` instead. Solvers never touch tracking,
configuration files or encoders.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import scipy.sparse as sp

from l3ae_bench.errors import SolverError
from l3ae_bench.solvers.linalg import check_memory, gram, zero_negligible
from l3ae_bench.solvers.semantic import WoodburyFactors, woodbury_bytes, woodbury_factors
from l3ae_bench.solvers.words import bag_of_words

log = logging.getLogger(__name__)

MAX_KEPT_FACTORS = 16
"""Woodbury factor sets (d × n each) kept per `FitInputs`; the oldest is dropped beyond this."""

UserScorer = Callable[[np.ndarray], np.ndarray]
"""Maps user indices (rows of X) to a fresh dense (len(users) × n_items) score matrix."""

Fitted = np.ndarray | UserScorer
"""The result of a fit: an item × item matrix B (scores x_u · B), or a scorer of user rows for
models whose scores are not a product with one item × item matrix."""


class FitInputs:
    """Training data of one or many fits, with the expensive shared pieces built once.

    The Gram matrix G = XᵀX, the Woodbury factors of the semantic side per λ_F, and the
    bag-of-words matrix of the item texts are computed on first use and kept, so a
    hyperparameter search re-fits without recomputing them. With `reuse=False` (one fit per
    process, as a plain job does), `gram()` hands its matrix over instead of keeping a copy,
    which saves one n × n buffer. E is copied in the compute dtype, with its negligible entries
    set to zero (`zero_negligible`).
    """

    def __init__(
        self,
        X: sp.csr_matrix,
        E: np.ndarray | None = None,
        dtype: str | np.dtype = "float32",
        item_texts: Sequence[str] | None = None,
        reuse: bool = True,
        backend: str = "numpy",
        device: str = "auto",
    ) -> None:
        self.X = sp.csr_matrix(X)
        self.dtype = np.dtype(dtype)
        self.E = None
        if E is not None:
            # A copy, so that zeroing negligible entries leaves the caller's array as it was.
            # Values beyond the dtype's range become inf and are reported below.
            with np.errstate(over="ignore"):
                self.E = zero_negligible(np.array(E, dtype=self.dtype, order="C"))
        self.item_texts = None if item_texts is None else list(item_texts)
        self.reuse = reuse
        self.backend = backend
        self.device = device
        self._gram: np.ndarray | None = None
        self._woodbury: dict[float, WoodburyFactors] = {}
        self._words: sp.csr_matrix | None = None
        if self.E is not None and self.E.shape[0] != X.shape[1]:
            raise SolverError(
                f"The item embeddings have {self.E.shape[0]} rows but the interaction matrix "
                f"has {X.shape[1]} items; both must index the same items."
            )
        if self.E is not None:
            bad_rows = np.flatnonzero(~np.isfinite(self.E).all(axis=1))
            if len(bad_rows):
                rows = "1 row" if len(bad_rows) == 1 else f"{len(bad_rows)} rows"
                verb = "contains" if len(bad_rows) == 1 else "contain"
                raise SolverError(
                    f"{rows} of the item embeddings {verb} NaN or infinite values in "
                    f"{self.dtype.name} (first item indices: {bad_rows[:5].tolist()}). Encode "
                    "those items again, or fix the embeddings given to the solver."
                )
        if self.item_texts is not None and len(self.item_texts) != X.shape[1]:
            raise SolverError(
                f"{len(self.item_texts)} item texts were given for {X.shape[1]} items; both "
                "must index the same items."
            )
        if backend not in ("numpy", "torch"):
            raise SolverError(f"compute.backend must be numpy or torch, got {backend!r}.")

    @property
    def n_items(self) -> int:
        return self.X.shape[1]

    @property
    def uses_torch(self) -> bool:
        return self.backend == "torch"

    def check_memory(
        self,
        n_matrices: int,
        what: str,
        uses_gram: bool = False,
        torch_capable: bool = False,
        extra_bytes: int = 0,
    ) -> None:
        """Check that a fit holding `n_matrices` n × n buffers at once fits in host memory.

        `n_matrices` counts the solver's own NumPy buffers, including its copy of G. When the fit
        reads G and G is neither built yet nor handed over (`reuse=True`), the kept G counts
        too. On the torch backend the Cholesky factor and the inverse are two more buffers,
        because torch writes neither over its input. `extra_bytes` covers n × d buffers.
        """
        extra = 1 if uses_gram and self.reuse and self._gram is None else 0
        if torch_capable and self.uses_torch:
            extra += 2
        check_memory(self.n_items, self.dtype, n_matrices + extra, what, extra_bytes=extra_bytes)

    def woodbury_bytes(self, lambda_f: float) -> int:
        """Return the bytes that computing the Woodbury factors of λ_F allocates (0 when kept)."""
        if lambda_f in self._woodbury or self.E is None:
            return 0
        return woodbury_bytes(*self.E.shape, self.dtype)

    def rows_bytes(self, n_buffers: int) -> int:
        """Return the bytes of `n_buffers` n × d arrays in the compute dtype."""
        return 0 if self.E is None else n_buffers * self.E.nbytes

    def gram(self) -> np.ndarray:
        """Return a writable G = XᵀX in `self.dtype` that the caller may overwrite.

        With reuse=True the kept matrix is copied; with reuse=False it is handed over and
        forgotten, so a later call builds it again.
        """
        if self._gram is None:
            G = gram(self.X, self.dtype)
            if not self.reuse:
                return G
            self._gram = G
        return self._gram.copy()

    def embeddings(self, solver: str) -> np.ndarray:
        """Return E, or raise when the solver needs embeddings and none were given."""
        if self.E is None:
            raise SolverError(f"Solver {solver} needs item embeddings, but no encoder ran.")
        return self.E

    def woodbury(self, lambda_f: float, solver: str) -> WoodburyFactors:
        """Return the Woodbury factors of (EEᵀ + λ_F I)⁻¹, computed once per λ_F."""
        factors = self._woodbury.get(lambda_f)
        if factors is None:
            factors = woodbury_factors(self.embeddings(solver), lambda_f)
            if len(self._woodbury) >= MAX_KEPT_FACTORS:
                self._woodbury.pop(next(iter(self._woodbury)))
            self._woodbury[lambda_f] = factors
        else:
            log.debug("Reusing the Woodbury factors for λ_F=%g", lambda_f)
        return factors

    def words(self, solver: str) -> sp.csr_matrix:
        """Return the binary word × item matrix F of the item texts, built once."""
        if self.item_texts is None:
            raise SolverError(f"Solver {solver} needs item texts, but none were given.")
        if self._words is None:
            self._words = bag_of_words(self.item_texts)
        return self._words


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
    fit: Callable[[FitInputs, Any], Fitted]
    uses_embeddings: bool
    """Whether `fit` reads the item embeddings E (so the encoder must run first)."""
    uses_interactions: bool = True
    """Whether `fit` reads X; text-only solvers do not."""
    uses_texts: bool = False
    """Whether `fit` reads the item texts (the bag-of-words fusions)."""
    torch_backend: bool = False
    """Whether `fit` runs on torch when `compute.backend=torch`; others always use NumPy."""
