"""Splitting interactions into train, validation and test sets.

Four methods, chosen by `SplitConfig.method`:

- ``random``: each user's interactions are shuffled (seeded) and split by the validation and
  test ratios, the 80/10/10 protocol of the L3AE paper and its research code;
- ``leave_one_out``: each user's latest interaction is the test item and the one before it the
  validation item;
- ``temporal``: one global time line; the latest interactions of the whole dataset form the
  test split and the ones before them the validation split;
- ``temporal_per_user``: each user's latest interactions, by the same ratios, form test and
  validation.

Cold-start items are items without training interactions. `SplitConfig.cold_item_share` creates
them on purpose: a seeded share of the items moves, with all of its interactions, to validation
and test before the other interactions are split. `SplitConfig.cold_items` chooses whether the
validation and test interactions of items without training interactions are kept or dropped.
Kept, they evaluate scores that come from item text alone, because EASE gives such items a
score of zero.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from l3ae_bench.data.preprocess import RatingLog
from l3ae_bench.errors import ConfigError, DataError

log = logging.getLogger(__name__)

SPLIT_METHODS = ("random", "leave_one_out", "temporal", "temporal_per_user")
COLD_ITEM_RULES = ("keep", "drop")
TRAIN, VAL, TEST = 0, 1, 2


@dataclass(frozen=True)
class SplitConfig:
    """Split method, ratios, seed and cold-start options."""

    method: str = "random"
    """One of random (seeded, per user), leave_one_out, temporal (global time cut) and
    temporal_per_user."""
    val_ratio: float = 0.1
    """Share of interactions held out for validation (per user, or of the whole dataset for
    temporal). leave_one_out holds out one item when the ratio is above 0."""
    test_ratio: float = 0.1
    """Share of interactions held out for test, as `val_ratio`."""
    seed: int = 2023
    """Seed of the random split and of the choice of cold-start items."""
    cold_item_share: float = 0.0
    """Share of items (0 to 1) moved with all their interactions to validation and test, so
    they have no training interactions; 0 creates none."""
    cold_items: str = "keep"
    """Rule for the validation and test interactions of items without training interactions:
    keep them (cold-start evaluation) or drop them (warm items only)."""

    def __post_init__(self) -> None:
        if self.method not in SPLIT_METHODS:
            raise ConfigError(
                f"dataset.split.method={self.method!r} is invalid; choose one of "
                f"{list(SPLIT_METHODS)}."
            )
        if self.val_ratio < 0 or self.test_ratio < 0 or self.val_ratio + self.test_ratio >= 1:
            raise ConfigError(
                f"Split ratios val={self.val_ratio}, test={self.test_ratio} are invalid: each "
                "must be ≥ 0 and their sum below 1 (dataset.split.val_ratio, "
                "dataset.split.test_ratio)."
            )
        if self.cold_items not in COLD_ITEM_RULES:
            raise ConfigError(
                f"dataset.split.cold_items={self.cold_items!r} is invalid; choose one of "
                f"{list(COLD_ITEM_RULES)}."
            )
        if not 0 <= self.cold_item_share < 1:
            raise ConfigError(
                f"dataset.split.cold_item_share={self.cold_item_share} must be in [0, 1)."
            )
        if self.cold_item_share and self.cold_items == "drop":
            raise ConfigError(
                "dataset.split.cold_item_share > 0 creates cold-start items, but "
                "dataset.split.cold_items=drop removes them again; set cold_items=keep."
            )
        if self.cold_item_share and self.val_ratio + self.test_ratio == 0:
            raise ConfigError(
                "dataset.split.cold_item_share > 0 needs a validation or test ratio above 0 to "
                "hold the cold-start items' interactions."
            )


def random_split_per_user(
    user_index: np.ndarray,
    item_index: np.ndarray,
    shape: tuple[int, int],
    val_ratio: float,
    test_ratio: float,
    seed: int,
) -> tuple[sp.csr_matrix, sp.csr_matrix, sp.csr_matrix]:
    """Split each user's interactions at random into train, validation and test.

    Each user's items are shuffled with one seeded generator, in user order, so the same inputs
    and seed give the same split. A user with n interactions gets round(n · test_ratio) test
    items and round(n · val_ratio) validation items, but always keeps at least one training item.
    """
    if val_ratio < 0 or test_ratio < 0 or val_ratio + test_ratio >= 1:
        raise ConfigError(
            f"Split ratios val={val_ratio}, test={test_ratio} are invalid: each must be ≥ 0 and "
            "their sum below 1 (dataset.split.val_ratio, dataset.split.test_ratio)."
        )
    order = np.lexsort((item_index, user_index))
    users, items = user_index[order], item_index[order]
    starts, ends = _user_runs(users)

    rng = np.random.default_rng(seed)
    part = np.zeros(len(users), dtype=np.int8)
    for start, end in zip(starts, ends, strict=True):
        n = end - start
        n_test, n_val = _holdout_counts(n, val_ratio, test_ratio)
        shuffled = start + rng.permutation(n)
        part[shuffled[:n_test]] = TEST
        part[shuffled[n_test : n_test + n_val]] = VAL
    return _matrices(users, items, part, shape)


def _holdout_counts(n: int, val_ratio: float, test_ratio: float) -> tuple[int, int]:
    """Return (test, validation) counts of a user with n interactions, leaving one for train."""
    n_test = int(round(n * test_ratio))
    n_val = int(round(n * val_ratio))
    while n_test + n_val >= n and (n_test or n_val):
        if n_val >= n_test:
            n_val -= 1
        else:
            n_test -= 1
    return n_test, n_val


def _user_runs(sorted_users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return start and end positions of each user's run in an array sorted by user."""
    if not len(sorted_users):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
    ends = np.r_[starts[1:], len(sorted_users)]
    return starts, ends


def _matrices(
    users: np.ndarray, items: np.ndarray, part: np.ndarray, shape: tuple[int, int]
) -> tuple[sp.csr_matrix, sp.csr_matrix, sp.csr_matrix]:
    matrices = []
    for split in (TRAIN, VAL, TEST):
        chosen = part == split
        data = np.ones(int(chosen.sum()), dtype=np.float32)
        matrices.append(sp.csr_matrix((data, (users[chosen], items[chosen])), shape=shape))
    return matrices[0], matrices[1], matrices[2]


def split_log(
    records: RatingLog, config: SplitConfig, source: str
) -> tuple[sp.csr_matrix, sp.csr_matrix, sp.csr_matrix]:
    """Split de-duplicated, compacted records into train, validation and test matrices."""
    shape = (len(records.user_ids), len(records.item_ids))
    users, items, timestamps = records.users, records.items, records.timestamps
    part = np.full(len(records), -1, dtype=np.int8)

    cold = _choose_cold_items(shape[1], config)
    if len(cold):
        on_cold = np.isin(items, cold)
        part[on_cold] = _cold_parts(int(on_cold.sum()), config)
        log.info(
            "%s: %d cold-start items (%.1f%%) with %d interactions moved to validation and test",
            source,
            len(cold),
            100 * config.cold_item_share,
            int(on_cold.sum()),
        )
    warm = part < 0

    if config.method == "random":
        train, val, test = random_split_per_user(
            users[warm], items[warm], shape, config.val_ratio, config.test_ratio, config.seed
        )
        if len(cold):
            cold_mats = _matrices(users[~warm], items[~warm], part[~warm], shape)
            train, val, test = (a + b for a, b in zip((train, val, test), cold_mats, strict=True))
    else:
        if np.isnan(timestamps[warm]).any():
            raise DataError(
                f"{source}: dataset.split.method={config.method} orders interactions by time, "
                "but some have no timestamp. Use method=random or a dataset with timestamps."
            )
        if config.method == "leave_one_out":
            part[warm] = _leave_one_out(users[warm], items[warm], timestamps[warm], config)
        elif config.method == "temporal":
            part[warm] = _temporal(timestamps[warm], items[warm], users[warm], config, source)
        else:
            part[warm] = _temporal_per_user(users[warm], items[warm], timestamps[warm], config)
        train, val, test = _matrices(users, items, part, shape)

    if config.cold_items == "drop":
        val, test = _drop_cold(train, val, test, source)
    return train, val, test


def _choose_cold_items(n_items: int, config: SplitConfig) -> np.ndarray:
    n_cold = int(round(n_items * config.cold_item_share))
    if not n_cold:
        return np.zeros(0, dtype=np.int64)
    # A generator of its own, so that the warm split stays the same for a given seed.
    rng = np.random.default_rng([config.seed, 1])
    return np.sort(rng.permutation(n_items)[:n_cold])


def _cold_parts(n: int, config: SplitConfig) -> np.ndarray:
    """Assign each cold-start interaction to validation or test, in the ratio val : test."""
    rng = np.random.default_rng([config.seed, 2])
    p_val = config.val_ratio / (config.val_ratio + config.test_ratio)
    return np.where(rng.random(n) < p_val, VAL, TEST).astype(np.int8)


def _leave_one_out(
    users: np.ndarray, items: np.ndarray, timestamps: np.ndarray, config: SplitConfig
) -> np.ndarray:
    """Mark each user's latest interaction as test and the one before it as validation.

    Ties in time are broken by item code. A user needs one training interaction left, so a
    user with two interactions gets no validation item and a user with one stays in train.
    """
    order = np.lexsort((items, timestamps, users))
    part_sorted = np.full(len(users), TRAIN, dtype=np.int8)
    starts, ends = _user_runs(users[order])
    want_test, want_val = int(config.test_ratio > 0), int(config.val_ratio > 0)
    for start, end in zip(starts, ends, strict=True):
        n_test = min(want_test, end - start - 1)
        n_val = min(want_val, end - start - 1 - n_test)
        part_sorted[end - n_test : end] = TEST
        part_sorted[end - n_test - n_val : end - n_test] = VAL
    part = np.empty_like(part_sorted)
    part[order] = part_sorted
    return part


def _temporal_per_user(
    users: np.ndarray, items: np.ndarray, timestamps: np.ndarray, config: SplitConfig
) -> np.ndarray:
    """Mark each user's latest interactions as test and the ones before them as validation."""
    order = np.lexsort((items, timestamps, users))
    part_sorted = np.full(len(users), TRAIN, dtype=np.int8)
    starts, ends = _user_runs(users[order])
    for start, end in zip(starts, ends, strict=True):
        n_test, n_val = _holdout_counts(end - start, config.val_ratio, config.test_ratio)
        part_sorted[end - n_test : end] = TEST
        part_sorted[end - n_test - n_val : end - n_test] = VAL
    part = np.empty_like(part_sorted)
    part[order] = part_sorted
    return part


def _temporal(
    timestamps: np.ndarray,
    items: np.ndarray,
    users: np.ndarray,
    config: SplitConfig,
    source: str,
) -> np.ndarray:
    """Cut one global time line: the latest interactions go to test, those before to validation.

    The cut points are the timestamps at the ratio positions. Interactions at the same time
    always share a split, so the split sizes can differ slightly from the ratios.
    """
    n = len(timestamps)
    ordered = np.sort(timestamps)
    n_test = int(round(n * config.test_ratio))
    n_val = int(round(n * config.val_ratio))
    test_from = ordered[n - n_test] if n_test else np.inf
    val_from = ordered[n - n_test - n_val] if n_val else test_from
    part = np.full(n, TRAIN, dtype=np.int8)
    part[timestamps >= val_from] = VAL
    part[timestamps >= test_from] = TEST
    log.info(
        "%s: temporal split at timestamps %s (validation) and %s (test): %d/%d/%d interactions",
        source,
        val_from,
        test_from,
        int((part == TRAIN).sum()),
        int((part == VAL).sum()),
        int((part == TEST).sum()),
    )
    return part


def _drop_cold(
    train: sp.csr_matrix, val: sp.csr_matrix, test: sp.csr_matrix, source: str
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Remove validation and test interactions on items that have no training interaction."""
    warm = np.asarray(train.sum(axis=0)).ravel() > 0
    keep = sp.diags(warm.astype(np.float32))
    kept_val, kept_test = (matrix @ keep for matrix in (val, test))
    kept_val.eliminate_zeros()
    kept_test.eliminate_zeros()
    log.info(
        "%s: dropped %d validation and %d test interactions on %d items without training "
        "interactions (dataset.split.cold_items=drop)",
        source,
        val.nnz - kept_val.nnz,
        test.nnz - kept_test.nnz,
        int((~warm).sum()),
    )
    return kept_val.tocsr(), kept_test.tocsr()
