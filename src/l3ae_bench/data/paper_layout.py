"""Loader for the data layout of the RLMRec, EasyRec and L3AE research code.

A folder contains `trn_mat.pkl`, `val_mat.pkl` and `tst_mat.pkl` (pickled SciPy sparse user × item
matrices, binary and disjoint) and `item_profile.json` (JSON Lines of `item_id` and `profile`,
one per item). Item indices are the matrix columns; users and items keep their indices as ids.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from l3ae_bench.data.interactions import Interactions, binary_csr, validate_splits
from l3ae_bench.data.pickles import load_array_pickle
from l3ae_bench.errors import DataError

log = logging.getLogger(__name__)

SPLIT_FILES = {"train": "trn_mat.pkl", "val": "val_mat.pkl", "test": "tst_mat.pkl"}
PROFILE_FILE = "item_profile.json"


@dataclass(frozen=True)
class PaperLayoutConfig:
    """Settings of a dataset stored in the research code's pickle layout."""

    name: str
    """Dataset name, used in run names and cache keys."""
    path: str
    """Folder that contains the three split pickles and `item_profile.json`."""
    text_field: str = "profile"
    """Field of `item_profile.json` used as the item text."""


def load_paper_layout(config: PaperLayoutConfig) -> Interactions:
    """Read and validate the three splits and the item profiles of one folder."""
    folder = Path(config.path).expanduser()
    if not folder.is_dir():
        raise DataError(
            f"Dataset folder not found: {folder} (dataset.path). Point dataset.path at a folder "
            f"holding {', '.join(SPLIT_FILES.values())} and {PROFILE_FILE}."
        )
    started = time.perf_counter()

    splits = {}
    for split, file_name in SPLIT_FILES.items():
        path = folder / file_name
        matrix = load_array_pickle(path)
        if not sp.issparse(matrix):
            raise DataError(
                f"{path}: expected a SciPy sparse user × item matrix, got {type(matrix).__name__}. "
                "Save the split as a scipy.sparse matrix."
            )
        splits[split] = binary_csr(matrix, str(path))
    validate_splits(splits["train"], splits["val"], splits["test"], str(folder))

    n_users, n_items = splits["train"].shape
    texts = _read_profiles(folder / PROFILE_FILE, n_items, config.text_field)
    log.info(
        "Loaded %s from %s: %d users, %d items, %d/%d/%d train/val/test interactions in %.1fs",
        config.name,
        folder,
        n_users,
        n_items,
        splits["train"].nnz,
        splits["val"].nnz,
        splits["test"].nnz,
        time.perf_counter() - started,
    )
    return Interactions(
        name=config.name,
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        user_ids=np.arange(n_users).astype(str),
        item_ids=np.arange(n_items).astype(str),
        item_texts=texts,
    )


def _read_profiles(path: Path, n_items: int, field: str) -> list[str]:
    """Read one text per item from a JSON Lines file keyed by integer `item_id`."""
    if not path.is_file():
        raise DataError(f"File not found: {path}. The item texts must sit beside the splits.")
    texts: list[str | None] = [None] * n_items
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                item_index = int(record["item_id"])
                text = record[field]
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
                raise DataError(
                    f"{path}, line {line_number}: expected a JSON object with integer 'item_id' "
                    f"and string '{field}' ({error})."
                ) from error
            if not 0 <= item_index < n_items:
                raise DataError(
                    f"{path}, line {line_number}: item_id {item_index} is outside the "
                    f"{n_items} items of the interaction matrices."
                )
            if not isinstance(text, str) or not text.strip():
                raise DataError(
                    f"{path}, line {line_number}: item {item_index} has an empty '{field}'. "
                    "Every item needs a text; fill it in or drop the item from all splits."
                )
            texts[item_index] = text
    missing = [index for index, text in enumerate(texts) if text is None]
    if missing:
        raise DataError(
            f"{path}: {len(missing)} of {n_items} items have no text, for example item_id "
            f"{missing[:5]}. Add a line per item or drop those items from the splits."
        )
    return texts  # type: ignore[return-value]
