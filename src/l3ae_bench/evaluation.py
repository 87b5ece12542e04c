"""Full-ranking top-K evaluation of item-item scores.

For each user with at least one target item, every item is scored, the excluded items (the
user's training items, and optionally validation items) are set to −∞, and the top K items are
compared with the targets:

    Recall@K = hits@K / |targets|
    DCG@K    = Σ_{r ≤ K, item at rank r is a target} 1 / log₂(r + 1)
    NDCG@K   = DCG@K / Σ_{r ≤ min(K, |targets|)} 1 / log₂(r + 1)

Recall divides by |targets| (not min(K, |targets|)), as the L3AE research code does. Users
without targets are skipped and counted. Users are scored in batches (a sparse × dense product
for item-item models), the top K of each batch found with `argpartition`, and the metrics
computed on the whole hit matrix at once. Batches run on `workers` threads, because the
sparse product and `argpartition` release the GIL, so memory is bounded by
workers × batch_size × n_items scores (and their int64 partition indices).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

log = logging.getLogger(__name__)

Scorer = Callable[[np.ndarray], np.ndarray]
"""Maps an array of user indices to a new dense (len(users) × n_items) score matrix, which the
evaluation overwrites (excluded items become −∞)."""

DEFAULT_WORKERS = min(4, os.cpu_count() or 1)
"""Threads scoring batches at once: the CPU count, at most 4."""


@dataclass(frozen=True)
class EvaluationResult:
    """Mean metrics over evaluated users, with the per-user values behind them."""

    metrics: dict[str, float]
    """Mean value per metric key, such as `recall_at_20`."""
    per_user: dict[str, np.ndarray]
    """Per-user value of each metric, aligned with `users`."""
    users: np.ndarray
    """Indices of the evaluated users (those with at least one target item)."""
    n_skipped_users: int
    """Users left out because they have no target item."""


def item_item_scorer(X: sp.csr_matrix, B: np.ndarray) -> Scorer:
    """Score users as x_u · B, from their training rows."""

    def score(users: np.ndarray) -> np.ndarray:
        return np.asarray(X[users] @ B)

    return score


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Return the column indices of the k largest scores per row, best first."""
    n = scores.shape[1]
    k = min(k, n)
    # Partitioning at n − k puts the k largest in the last k columns without negating scores.
    part = np.argpartition(scores, n - k, axis=1)[:, n - k :]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def evaluate(
    scorer: Scorer,
    targets: sp.csr_matrix,
    exclude: Sequence[sp.csr_matrix],
    k_values: Sequence[int],
    batch_size: int = 256,
    workers: int = DEFAULT_WORKERS,
) -> EvaluationResult:
    """Rank all items for every user with targets and compute Recall@K and NDCG@K.

    `exclude` lists matrices whose items are removed from each user's ranking (training
    interactions, and validation interactions when scoring test if so configured).
    """
    started = time.perf_counter()
    targets = sp.csr_matrix(targets)
    n_targets = np.diff(targets.indptr)
    users = np.flatnonzero(n_targets > 0)
    n_skipped = targets.shape[0] - len(users)
    k_values = sorted(set(int(k) for k in k_values))
    k_max = max(k_values)
    excluded = sum(
        (sp.csr_matrix(m, dtype=bool).astype(np.int8) for m in exclude),
        start=sp.csr_matrix(targets.shape, dtype=np.int8),
    ).tocsr()

    discounts = 1.0 / np.log2(np.arange(2, k_max + 2))
    ideal_cumulative = np.cumsum(discounts)
    # A catalog smaller than K ranks every item, so the lists are at most n_items long.
    width = min(k_max, targets.shape[1])
    hits_all = np.zeros((len(users), width), dtype=bool)

    def rank_batch(start: int) -> None:
        batch = users[start : start + batch_size]
        scores = np.asarray(scorer(batch))
        if scores.dtype not in (np.float32, np.float64) or not scores.flags.writeable:
            scores = scores.astype(np.float32)
        rows, columns = excluded[batch].nonzero()
        scores[rows, columns] = -np.inf
        ranked = top_k(scores, k_max)
        hits_all[start : start + len(batch)] = _is_target(targets[batch], ranked)

    starts = range(0, len(users), batch_size)
    if workers > 1 and len(starts) > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(rank_batch, starts))
    else:
        for start in starts:
            rank_batch(start)

    per_user: dict[str, np.ndarray] = {}
    counts = n_targets[users]
    for k in k_values:
        hits = hits_all[:, : min(k, width)]
        per_user[f"recall_at_{k}"] = hits.sum(axis=1) / counts
        dcg = hits @ discounts[: hits.shape[1]]
        ideal = ideal_cumulative[np.minimum(counts, k) - 1]
        per_user[f"ndcg_at_{k}"] = dcg / ideal

    metrics = {
        key: float(values.mean()) if len(values) else float("nan")
        for key, values in per_user.items()
    }
    log.debug(
        "Evaluated %d users (%d without targets skipped) in %.2fs",
        len(users),
        n_skipped,
        time.perf_counter() - started,
    )
    return EvaluationResult(metrics, per_user, users, int(n_skipped))


def _is_target(targets: sp.csr_matrix, ranked: np.ndarray) -> np.ndarray:
    """Return a boolean matrix: whether ranked[i, r] is a target item of row i."""
    rows = np.repeat(np.arange(ranked.shape[0]), ranked.shape[1])
    values = np.asarray(targets[rows, ranked.ravel()]).ravel()
    return values.reshape(ranked.shape) > 0
