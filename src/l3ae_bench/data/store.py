"""Saving and loading processed `Interactions` as one `.npz` file in the cache."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from l3ae_bench.cache import atomic_write
from l3ae_bench.data.interactions import Interactions

log = logging.getLogger(__name__)


def save_interactions(data: Interactions, path: Path) -> None:
    """Write the splits, id vocabularies and texts atomically to `path` (.npz)."""
    arrays = {}
    for split in ("train", "val", "test"):
        matrix: sp.csr_matrix = getattr(data, split)
        arrays[f"{split}_indptr"] = matrix.indptr
        arrays[f"{split}_indices"] = matrix.indices
    arrays["shape"] = np.array(data.train.shape, dtype=np.int64)
    arrays["user_ids"] = np.asarray(data.user_ids, dtype=str)
    arrays["item_ids"] = np.asarray(data.item_ids, dtype=str)
    arrays["meta"] = np.array(json.dumps({"name": data.name, "item_texts": data.item_texts}))
    with atomic_write(path) as handle:
        np.savez(handle, **arrays)


def load_interactions(path: Path) -> Interactions:
    """Read `Interactions` written by `save_interactions`."""
    with np.load(path, allow_pickle=False) as arrays:
        shape = tuple(int(value) for value in arrays["shape"])
        splits = {}
        for split in ("train", "val", "test"):
            indices = arrays[f"{split}_indices"]
            data = np.ones(len(indices), dtype=np.float32)
            splits[split] = sp.csr_matrix((data, indices, arrays[f"{split}_indptr"]), shape=shape)
        meta = json.loads(str(arrays["meta"]))
        return Interactions(
            name=meta["name"],
            train=splits["train"],
            val=splits["val"],
            test=splits["test"],
            user_ids=arrays["user_ids"],
            item_ids=arrays["item_ids"],
            item_texts=meta["item_texts"],
        )
