"""The processed-split cache: `Interactions` saved as one `.npz` file under a fingerprint.

The file name contains a hash of the source files' contents, the dataset settings and
`PROCESSING_VERSION`, so a change to any of them builds the splits again. The archive entries
carry a fixed date, so the same inputs and seed give the same file byte for byte.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import time
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from l3ae_bench.cache import atomic_write, stable_hash
from l3ae_bench.data.interactions import Interactions

log = logging.getLogger(__name__)

PROCESSING_VERSION = 2
"""Bump when a change to the loaders alters the splits they produce for the same settings."""
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def save_interactions(data: Interactions, path: Path) -> None:
    """Write the splits, id vocabularies, texts and stats atomically to `path` (.npz)."""
    arrays = {}
    for split in ("train", "val", "test"):
        matrix: sp.csr_matrix = getattr(data, split)
        matrix = matrix.tocsr()
        matrix.sort_indices()
        arrays[f"{split}_indptr"] = matrix.indptr
        arrays[f"{split}_indices"] = matrix.indices
    arrays["shape"] = np.array(data.train.shape, dtype=np.int64)
    arrays["user_ids"] = np.asarray(data.user_ids, dtype=str)
    arrays["item_ids"] = np.asarray(data.item_ids, dtype=str)
    meta = {"name": data.name, "item_texts": data.item_texts, "stats": data.stats}
    arrays["meta"] = np.array(json.dumps(meta))
    with atomic_write(path) as handle:
        _write_npz(handle, arrays)


def _write_npz(handle: Any, arrays: Mapping[str, np.ndarray]) -> None:
    """Write arrays in NumPy's .npz layout with fixed entry dates, for reproducible bytes."""
    with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asarray(array), allow_pickle=False)
            archive.writestr(info, buffer.getvalue())


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
            stats=meta.get("stats", {}),
        )


def split_cache_path(
    cache_dir: Path, name: str, sources: Any, config: Any, exclude: tuple[str, ...] = ()
) -> Path:
    """Return the cache file of a dataset built from `sources` (content digests) and `config`.

    `exclude` names settings that do not change the result, such as local paths whose content
    `sources` already covers.
    """
    settings = dataclasses.asdict(config)
    for key in exclude:
        settings.pop(key, None)
    fingerprint = stable_hash(
        {"version": PROCESSING_VERSION, "sources": sources, "config": settings}
    )
    return cache_dir / "splits" / f"{name}-{fingerprint}.npz"


def load_or_build(path: Path, build: Callable[[], Interactions]) -> Interactions:
    """Return the cached splits at `path`, or build, save and return them."""
    if path.is_file():
        data = load_interactions(path)
        log.info("Loaded cached splits of %s from %s: %s", data.name, path, data.summary())
        return data
    started = time.perf_counter()
    data = build()
    save_interactions(data, path)
    log.info(
        "Built %s splits in %.1fs: %s; cached at %s",
        data.name,
        time.perf_counter() - started,
        data.summary(),
        path,
    )
    return data
