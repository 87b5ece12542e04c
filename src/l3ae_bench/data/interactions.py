"""The validated dataset every later stage receives: splits over matrix indices plus item texts."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from l3ae_bench.errors import DataError


@dataclass(frozen=True)
class Interactions:
    """Binary user × item train, validation and test splits with their id vocabularies.

    Rows are `user_index` and columns `item_index`; `user_ids` and `item_ids` map those positions
    back to the dataset's external ids. The three matrices share one shape, hold only ones, and
    have no (user, item) pair in common.
    """

    name: str
    """Dataset name, as in the config group."""
    train: sp.csr_matrix
    """X: training interactions (users × items), float32 ones."""
    val: sp.csr_matrix
    """Validation interactions, same shape as `train`."""
    test: sp.csr_matrix
    """Test interactions, same shape as `train`."""
    user_ids: np.ndarray
    """External user id of each row (strings)."""
    item_ids: np.ndarray
    """External item id of each column (strings)."""
    item_texts: list[str]
    """Text of each item, in column order; the encoder input."""
    stats: dict[str, int] = field(default_factory=dict)
    """Counts before and after each preprocessing step (records, duplicates, k-core, ...)."""

    @property
    def n_users(self) -> int:
        return self.train.shape[0]

    @property
    def n_items(self) -> int:
        return self.train.shape[1]

    def cold_items(self) -> np.ndarray:
        """Return the item indices without training interactions (cold-start items).

        EASE scores these items zero for every user; only scores that use item text can rank
        them. Their validation and test interactions are present unless the split dropped them.
        """
        return np.flatnonzero(np.diff(self.train.tocsc().indptr) == 0)

    def summary(self) -> dict[str, int]:
        """Count users, items and interactions per split, for logs and MLflow params."""
        return {
            "n_users": self.n_users,
            "n_items": self.n_items,
            "n_train": int(self.train.nnz),
            "n_val": int(self.val.nnz),
            "n_test": int(self.test.nnz),
            "n_cold_items": len(self.cold_items()),
        }


def binary_csr(matrix: sp.spmatrix, source: str) -> sp.csr_matrix:
    """Convert a sparse matrix to canonical float32 CSR, rejecting values other than 1.

    `source` names the file or split in the error message.
    """
    csr = sp.csr_matrix(matrix, dtype=np.float32)
    csr.sum_duplicates()
    csr.eliminate_zeros()
    bad = csr.data != 1.0
    if bad.any():
        values = np.unique(csr.data[bad])[:5].tolist()
        raise DataError(
            f"{source}: interaction values must be binary (1), found {int(bad.sum())} entries "
            f"with other values such as {values}. Binarize the matrix before saving it, for "
            "example with (X != 0).astype('float32')."
        )
    return csr


def validate_splits(
    train: sp.csr_matrix, val: sp.csr_matrix, test: sp.csr_matrix, source: str
) -> None:
    """Check that the splits share a shape and are pairwise disjoint."""
    shapes = {"train": train.shape, "val": val.shape, "test": test.shape}
    if len(set(shapes.values())) != 1:
        raise DataError(
            f"{source}: the splits must have one shape (users × items), got {shapes}. "
            "Rebuild them over the same user and item index."
        )
    for name_a, a, name_b, b in (
        ("train", train, "val", val),
        ("train", train, "test", test),
        ("val", val, "test", test),
    ):
        overlap = int(a.multiply(b).nnz)
        if overlap:
            raise DataError(
                f"{source}: the {name_a} and {name_b} splits share {overlap} (user, item) "
                "pairs, but splits must be disjoint. Remove the shared pairs from one split."
            )
