"""Recall@K and NDCG@K on cases small enough to check by hand."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from l3ae_bench.evaluation import evaluate, item_item_scorer, top_k


def fixed_scorer(scores: np.ndarray):
    return lambda users: scores[users]


def test_recall_two_hits_of_five():
    # Items 0..9; the user's test items are 0-4, the top 2 by score are items 0 and 1.
    scores = np.array([[9, 8, 0, 0, 0, 7, 6, 0, 0, 0]], dtype=float)
    targets = sp.csr_matrix(np.array([[1, 1, 1, 1, 1, 0, 0, 0, 0, 0]]))
    result = evaluate(fixed_scorer(scores), targets, [], [2])
    assert result.metrics["recall_at_2"] == pytest.approx(0.4)


def test_ndcg_one_hit_at_rank_one_of_three():
    scores = np.array([[5, 4, 3, 2, 1, 0]], dtype=float)
    targets = sp.csr_matrix(np.array([[1, 0, 0, 0, 1, 1]]))
    result = evaluate(fixed_scorer(scores), targets, [], [3])
    expected = 1.0 / (1.0 + 1.0 / np.log2(3) + 1.0 / np.log2(4))
    assert expected == pytest.approx(0.4693, abs=1e-4)
    assert result.metrics["ndcg_at_3"] == pytest.approx(expected)


def test_user_without_targets_is_skipped():
    scores = np.array([[3, 2, 1], [3, 2, 1]], dtype=float)
    targets = sp.csr_matrix(np.array([[1, 0, 0], [0, 0, 0]]))
    result = evaluate(fixed_scorer(scores), targets, [], [1])
    assert result.n_skipped_users == 1
    assert result.users.tolist() == [0]
    assert result.metrics["recall_at_1"] == pytest.approx(1.0)


def test_training_items_absent_from_top_k_lists():
    """Training items get the highest raw scores but must not appear in any top-K list."""
    X = sp.csr_matrix(np.array([[1, 1, 0, 0, 0], [0, 1, 1, 0, 0]], dtype=np.float32))
    B = np.eye(5) * 100 + 0.01  # every training item scores highest before masking
    targets = sp.csr_matrix(np.array([[0, 0, 1, 0, 0], [1, 0, 0, 0, 0]], dtype=np.float32))
    seen = []

    def scorer(users):
        seen.append(users.copy())
        return np.asarray(X[users] @ B)

    result = evaluate(scorer, targets, [X], [3])
    # Both users have 3 non-training items, so each top-3 contains exactly those items.
    assert result.metrics["recall_at_3"] == pytest.approx(1.0)
    assert np.concatenate(seen).tolist() == [0, 1]


def test_batches_do_not_change_metrics():
    rng = np.random.default_rng(1)
    X = sp.csr_matrix((rng.random((64, 20)) < 0.3).astype(np.float32))
    targets = sp.csr_matrix((rng.random((64, 20)) < 0.15).astype(np.float32))
    targets = targets - targets.multiply(X)
    targets.eliminate_zeros()
    B = rng.random((20, 20))
    one = evaluate(item_item_scorer(X, B), targets, [X], [5, 10], batch_size=1000)
    many = evaluate(item_item_scorer(X, B), targets, [X], [5, 10], batch_size=3)
    assert one.metrics == pytest.approx(many.metrics)


def test_metrics_match_per_user_loop():
    """The vectorized metrics equal a plain per-user loop over sorted scores."""
    rng = np.random.default_rng(2)
    n_users, n_items, k = 30, 25, 7
    X = sp.csr_matrix((rng.random((n_users, n_items)) < 0.3).astype(np.float32))
    targets = sp.csr_matrix((rng.random((n_users, n_items)) < 0.2).astype(np.float32))
    targets = targets - targets.multiply(X)
    targets.eliminate_zeros()
    B = rng.random((n_items, n_items))
    result = evaluate(item_item_scorer(X, B), targets, [X], [k])

    recalls, ndcgs = [], []
    for user in range(n_users):
        truth = set(targets[user].indices)
        if not truth:
            continue
        scores = np.asarray(X[user] @ B).ravel()
        scores[X[user].indices] = -np.inf
        ranked = np.argsort(-scores, kind="stable")[:k]
        hits = [item in truth for item in ranked]
        recalls.append(sum(hits) / len(truth))
        dcg = sum(1 / np.log2(rank + 2) for rank, hit in enumerate(hits) if hit)
        idcg = sum(1 / np.log2(rank + 2) for rank in range(min(k, len(truth))))
        ndcgs.append(dcg / idcg)
    assert result.metrics[f"recall_at_{k}"] == pytest.approx(np.mean(recalls))
    assert result.metrics[f"ndcg_at_{k}"] == pytest.approx(np.mean(ndcgs))


def test_k_larger_than_catalog():
    scores = np.array([[3, 2, 1]], dtype=float)
    targets = sp.csr_matrix(np.array([[0, 1, 1]]))
    result = evaluate(fixed_scorer(scores), targets, [], [2, 5])
    assert result.metrics["recall_at_5"] == pytest.approx(1.0)
    expected = (1 / np.log2(3) + 1 / np.log2(4)) / (1 + 1 / np.log2(3))
    assert result.metrics["ndcg_at_5"] == pytest.approx(expected)


def test_threads_do_not_change_metrics():
    rng = np.random.default_rng(5)
    X = sp.csr_matrix((rng.random((90, 30)) < 0.3).astype(np.float32))
    targets = sp.csr_matrix((rng.random((90, 30)) < 0.15).astype(np.float32))
    targets = targets - targets.multiply(X)
    targets.eliminate_zeros()
    B = rng.random((30, 30)).astype(np.float32)
    serial = evaluate(item_item_scorer(X, B), targets, [X], [5], batch_size=7, workers=1)
    threaded = evaluate(item_item_scorer(X, B), targets, [X], [5], batch_size=7, workers=3)
    np.testing.assert_array_equal(serial.users, threaded.users)
    for key, values in serial.per_user.items():
        np.testing.assert_array_equal(threaded.per_user[key], values)


def test_top_k_orders_best_first():
    scores = np.array([[0.1, 0.9, 0.5, -np.inf, 0.7], [3.0, 1.0, 2.0, 5.0, 4.0]])
    assert top_k(scores, 3).tolist() == [[1, 4, 2], [3, 4, 0]]
    assert top_k(scores, 9).shape == (2, 5)


def test_read_only_scores_are_copied():
    scores = np.array([[3.0, 2.0, 1.0]], dtype=np.float32)
    scores.flags.writeable = False
    targets = sp.csr_matrix(np.array([[0, 1, 0]]))
    excluded = sp.csr_matrix(np.array([[1, 0, 0]]))
    result = evaluate(lambda users: scores, targets, [excluded], [1])
    assert result.metrics["recall_at_1"] == pytest.approx(1.0)
    assert scores[0, 0] == 3.0
