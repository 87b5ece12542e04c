"""Split methods, cold-start items and k-core filtering on small hand-made rating logs."""

from __future__ import annotations

import numpy as np
import pytest

from l3ae_bench.data.preprocess import FilterConfig, RatingLog, filter_log, k_core, log_from_ids
from l3ae_bench.data.splits import SplitConfig, split_log
from l3ae_bench.errors import ConfigError, DataError
from l3ae_bench.solvers import SOLVERS, FitInputs


def grid_log(n_users: int = 10, n_items: int = 20, seed: int = 0) -> RatingLog:
    """Each user rates 12 distinct items at increasing timestamps."""
    rng = np.random.default_rng(seed)
    users, items, times = [], [], []
    for user in range(n_users):
        for step, item in enumerate(rng.choice(n_items, 12, replace=False)):
            users.append(f"u{user:02d}")
            items.append(f"i{item:02d}")
            times.append(1000 * user + 10 * step)
    records = log_from_ids(np.array(users), np.array(items), np.ones(len(users)), np.array(times))
    return filter_log(records, FilterConfig(), "grid")


def latest_items(records: RatingLog, count: int) -> set[tuple[int, int]]:
    """Return each user's `count` latest (user, item) pairs."""
    pairs = set()
    for user in np.unique(records.users):
        mine = np.flatnonzero(records.users == user)
        latest = mine[np.argsort(records.timestamps[mine])[-count:]]
        pairs |= {(int(user), int(records.items[i])) for i in latest}
    return pairs


def pairs(matrix) -> set[tuple[int, int]]:
    rows, cols = matrix.nonzero()
    return {(int(r), int(c)) for r, c in zip(rows, cols, strict=True)}


def test_leave_one_out_holds_latest():
    records = grid_log()
    train, val, test = split_log(records, SplitConfig(method="leave_one_out"), "grid")
    assert pairs(test) == latest_items(records, 1)
    assert pairs(val) == latest_items(records, 2) - latest_items(records, 1)
    np.testing.assert_array_equal(np.diff(train.indptr), 10)


def test_leave_one_out_short_user_keeps_train():
    records = log_from_ids(
        np.array(["a", "a", "b"]), np.array(["x", "y", "x"]), None, np.array([1.0, 2.0, 3.0])
    )
    train, val, test = split_log(records, SplitConfig(method="leave_one_out"), "short")
    assert pairs(train) == {(0, 0), (1, 0)}
    assert pairs(test) == {(0, 1)}
    assert val.nnz == 0


def test_temporal_per_user_holds_latest_share():
    records = grid_log()
    config = SplitConfig(method="temporal_per_user", val_ratio=0.25, test_ratio=0.25)
    train, val, test = split_log(records, config, "grid")
    assert pairs(test) == latest_items(records, 3)
    assert pairs(val) == latest_items(records, 6) - latest_items(records, 3)


def test_temporal_cuts_global_time():
    records = grid_log()
    train, val, test = split_log(records, SplitConfig(method="temporal"), "grid")
    time = {
        (int(u), int(i)): t
        for u, i, t in zip(records.users, records.items, records.timestamps, strict=True)
    }
    assert max(time[p] for p in pairs(train)) < min(time[p] for p in pairs(val))
    assert max(time[p] for p in pairs(val)) < min(time[p] for p in pairs(test))
    assert test.nnz == 12


def test_temporal_without_timestamps_is_error():
    records = log_from_ids(np.array(["a", "a"]), np.array(["x", "y"]), None, None)
    with pytest.raises(DataError, match="method=temporal orders interactions by time"):
        split_log(records, SplitConfig(method="temporal"), "no-time")


def test_random_split_is_reproducible():
    records = grid_log()
    first = split_log(records, SplitConfig(seed=5), "grid")
    second = split_log(records, SplitConfig(seed=5), "grid")
    for a, b in zip(first, second, strict=True):
        assert (a != b).nnz == 0


def test_cold_item_share_creates_cold_items():
    records = grid_log()
    config = SplitConfig(cold_item_share=0.2, seed=3)
    train, val, test = split_log(records, config, "grid")
    cold = np.flatnonzero(np.asarray(train.sum(axis=0)).ravel() == 0)
    held = np.asarray((val + test).sum(axis=0)).ravel()
    assert len(cold) == 4
    assert (held[cold] > 0).all()
    assert train.nnz + val.nnz + test.nnz == len(records)


def test_cold_item_share_keeps_warm_split_seeded():
    records = grid_log()
    first = split_log(records, SplitConfig(cold_item_share=0.2, seed=3), "grid")
    second = split_log(records, SplitConfig(cold_item_share=0.2, seed=3), "grid")
    for a, b in zip(first, second, strict=True):
        assert (a != b).nnz == 0


def test_cold_items_dropped():
    records = grid_log(n_users=4, n_items=40)
    train, val, test = split_log(records, SplitConfig(cold_items="drop", seed=1), "grid")
    warm = np.asarray(train.sum(axis=0)).ravel() > 0
    held = np.asarray((val + test).sum(axis=0)).ravel()
    assert (held[~warm] == 0).all()


def test_cold_share_with_drop_rejected():
    with pytest.raises(ConfigError, match="cold_items=drop removes them again"):
        SplitConfig(cold_item_share=0.1, cold_items="drop")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"method": "chronological"}, "dataset.split.method"),
        ({"val_ratio": 0.5, "test_ratio": 0.5}, "sum below 1"),
        ({"cold_item_share": 1.0}, "cold_item_share"),
        ({"cold_items": "ignore"}, "dataset.split.cold_items"),
    ],
)
def test_split_config_rejects(values, message):
    with pytest.raises(ConfigError, match=message):
        SplitConfig(**values)


def test_k_core_fixed_point_on_chain():
    # A chain where each pass removes one more link: D, then u3, then C, then u2.
    users = np.array(["u1", "u1", "u4", "u4", "u2", "u2", "u3", "u3"])
    items = np.array(["A", "B", "A", "B", "B", "C", "C", "D"])
    records = log_from_ids(users, items, None, None)
    kept, passes = k_core(records, 2, 2, "chain")
    assert passes == 5
    assert sorted({records.user_ids[u] for u in kept.users}) == ["u1", "u4"]
    assert sorted({records.item_ids[i] for i in kept.items}) == ["A", "B"]


def test_pair_dedupe_keeps_earliest():
    records = log_from_ids(
        np.array(["a", "a", "a"]), np.array(["x", "x", "y"]), None, np.array([5.0, 2.0, 9.0])
    )
    filtered = filter_log(records, FilterConfig(), "dupes")
    assert sorted(filtered.timestamps.tolist()) == [2.0, 9.0]
    assert filtered.stats["after_pair_dedupe"] == 2


def test_threshold_without_ratings_is_error():
    records = log_from_ids(np.array(["a"]), np.array(["x"]), None, None)
    with pytest.raises(ConfigError, match="rating_threshold=4.0 needs ratings"):
        filter_log(records, FilterConfig(rating_threshold=4.0), "no-ratings")


def test_filter_config_rejects_rule():
    with pytest.raises(ConfigError, match="zero_rating='ignore'"):
        FilterConfig(zero_rating="ignore")


def test_cold_items_scored_only_with_text():
    records = grid_log(n_users=30, n_items=20)
    train, _, _ = split_log(records, SplitConfig(cold_item_share=0.2, seed=3), "grid")
    cold = np.flatnonzero(np.asarray(train.sum(axis=0)).ravel() == 0)
    E = np.random.default_rng(0).standard_normal((20, 8)).astype(np.float32)
    inputs = FitInputs(train, E, "float64")
    scores = {
        name: train @ SOLVERS[name].fit(inputs, SOLVERS[name].config_class())
        for name in ("ease", "l3ae")
    }
    assert np.abs(scores["ease"][:, cold]).max() < 1e-9
    assert np.abs(scores["l3ae"][:, cold]).max() > 1e-3
