"""Shared fixtures: a small synthetic dataset in the research code's pickle layout."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

PROJECT_ROOT = Path(__file__).resolve().parents[1]
GAMES_DATA = Path(os.environ.get("GAMES_DATA", PROJECT_ROOT.parent / "shared/data/easyrec-games"))

os.environ.setdefault("L3AE_BENCH_ROOT", str(PROJECT_ROOT))
# Models load from local files in tests; never wait on the Hugging Face Hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def make_splits(n_users: int, n_items: int, seed: int = 0) -> dict[str, sp.coo_matrix]:
    """Draw random binary interactions and split each user's items 80/10/10."""
    rng = np.random.default_rng(seed)
    dense = rng.random((n_users, n_items)) < 0.25
    dense[:, 0] = True  # every user has at least one interaction
    part = rng.random((n_users, n_items))
    splits = {
        "trn": dense & (part < 0.8),
        "val": dense & (part >= 0.8) & (part < 0.9),
        "tst": dense & (part >= 0.9),
    }
    return {name: sp.coo_matrix(mask.astype(np.float32)) for name, mask in splits.items()}


def write_paper_layout(
    folder: Path,
    splits: dict[str, sp.spmatrix],
    texts: list[str] | None = None,
) -> Path:
    """Write splits and item profiles in the trn/val/tst_mat.pkl + item_profile.json layout."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, matrix in splits.items():
        with open(folder / f"{name}_mat.pkl", "wb") as handle:
            pickle.dump(matrix, handle)
    n_items = splits["trn"].shape[1]
    texts = texts or [
        f"Item {i}: a {'red' if i % 2 else 'blue'} toy number {i}" for i in range(n_items)
    ]
    with open(folder / "item_profile.json", "w", encoding="utf-8") as handle:
        for index, text in enumerate(texts):
            handle.write(json.dumps({"item_id": index, "profile": text}) + "\n")
    return folder


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    """A 40-user × 12-item dataset folder in the L3AE research code's pickle layout."""
    return write_paper_layout(tmp_path / "tiny", make_splits(40, 12))


@pytest.fixture
def games_data() -> Path:
    """The Amazon Games data folder; skips the test when it is absent."""
    if not (GAMES_DATA / "trn_mat.pkl").is_file():
        pytest.skip(f"Games data not found at {GAMES_DATA} (set GAMES_DATA to its folder)")
    return GAMES_DATA


@pytest.fixture(scope="session")
def recbole_wheel() -> Path:
    """The RecBole 1.2.1 wheel with MovieLens-100K, fetched once into the project cache.

    Skips the test when the package index cannot be reached.
    """
    from l3ae_bench.data.movielens import fetch_recbole_wheel
    from l3ae_bench.errors import DataError

    try:
        return fetch_recbole_wheel(PROJECT_ROOT / "cache")
    except DataError as error:
        pytest.skip(f"RecBole wheel unavailable: {error}")
