"""Item popularity: every user gets the same ranking, by training interaction count."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from l3ae_bench.solvers.base import FitInputs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PopularityConfig:
    """Item popularity has no hyperparameters."""


@dataclass(frozen=True)
class PopularityScorer:
    """Scores every user with the item counts of the training split."""

    counts: np.ndarray
    """Training interactions per item."""

    def __call__(self, users: np.ndarray) -> np.ndarray:
        return np.tile(self.counts, (len(users), 1))


def fit_popularity(inputs: FitInputs, config: PopularityConfig) -> PopularityScorer:
    """Return the popularity scorer: scores[u, i] = number of training users of item i."""
    counts = np.asarray(inputs.X.sum(axis=0), dtype=inputs.dtype).ravel()
    log.info("Counted the popularity of %d items", inputs.n_items)
    return PopularityScorer(counts)
