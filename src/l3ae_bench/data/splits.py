"""Splitting interactions into train, validation and test sets."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from l3ae_bench.errors import ConfigError


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
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    ends = np.r_[starts[1:], len(users)]

    rng = np.random.default_rng(seed)
    part = np.zeros(len(users), dtype=np.int8)
    for start, end in zip(starts, ends, strict=True):
        n = end - start
        n_test = int(round(n * test_ratio))
        n_val = int(round(n * val_ratio))
        while n_test + n_val >= n and (n_test or n_val):
            if n_val >= n_test:
                n_val -= 1
            else:
                n_test -= 1
        shuffled = start + rng.permutation(n)
        part[shuffled[:n_test]] = 2
        part[shuffled[n_test : n_test + n_val]] = 1

    matrices = []
    for split in (0, 1, 2):
        chosen = part == split
        data = np.ones(int(chosen.sum()), dtype=np.float32)
        matrices.append(sp.csr_matrix((data, (users[chosen], items[chosen])), shape=shape))
    return matrices[0], matrices[1], matrices[2]
