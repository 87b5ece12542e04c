"""Precomputed item embeddings, read from `.npy` or the research code's `<name>_items.pkl`."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from l3ae_bench.data.pickles import load_array_pickle
from l3ae_bench.errors import ConfigError, EncoderError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PrecomputedConfig:
    """Settings of an embedding matrix computed elsewhere."""

    name: str
    """Encoder name, used in run names."""
    path: str
    """`.npy` file or pickle holding an items × d array, row i = item index i."""

    def __post_init__(self) -> None:
        if not self.path:
            raise ConfigError("encoder.path must name the embedding file (.npy or .pkl).")


def load_precomputed(config: PrecomputedConfig, n_items: int) -> np.ndarray:
    """Load E and check that it has one finite row per item."""
    path = Path(config.path).expanduser()
    if not path.is_file():
        raise EncoderError(
            f"Embedding file not found: {path} (encoder.path). Give a .npy or .pkl file with "
            "one row per item."
        )
    if path.suffix == ".npy":
        try:
            E = np.load(path, allow_pickle=False)
        except (ValueError, EOFError, OSError) as error:
            raise EncoderError(
                f"{path}: cannot be read as a NumPy .npy array ({error}) (encoder.path). "
                "Save the embeddings with numpy.save(path, E) as a float array, items × d."
            ) from error
    else:
        E = load_array_pickle(path)
    if not isinstance(E, np.ndarray) or E.ndim != 2:
        raise EncoderError(
            f"{path}: expected a 2-D array (items × d), got {type(E).__name__} with shape "
            f"{getattr(E, 'shape', None)}."
        )
    if E.shape[0] != n_items:
        raise EncoderError(
            f"{path}: the embedding matrix has {E.shape[0]} rows but the dataset has {n_items} "
            "items. Use the embeddings computed for this dataset (row i = item index i)."
        )
    if not np.issubdtype(E.dtype, np.number) or np.issubdtype(E.dtype, np.complexfloating):
        raise EncoderError(
            f"{path}: the embedding matrix has dtype {E.dtype}, but it must hold real numbers "
            "(encoder.path). Save it as a float32 or float64 array."
        )
    bad_rows = np.flatnonzero(~np.isfinite(E).all(axis=1))
    if len(bad_rows):
        raise EncoderError(
            f"{path}: {len(bad_rows)} rows contain NaN or infinite values, for example rows "
            f"{bad_rows[:5].tolist()}. Recompute the embeddings of those items."
        )
    log.info("Loaded precomputed embeddings %s: %d items × %d dims", path, *E.shape)
    return E.astype(np.float32, copy=False)
