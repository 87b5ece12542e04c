"""On-disk embedding cache: one SQLite file, one row per (settings, item text) pair.

The namespace is a hash of every setting that changes a vector (model id and revision, prefix,
normalization, dimensions, ...). The key is a hash of the item text. So vectors of different
settings never mix, and a changed text is encoded again. Rows are committed as each batch
arrives, so an interrupted run keeps what it already paid for.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def text_key(text: str) -> str:
    """Return the cache key of one item text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class EmbeddingCache:
    """Vectors keyed by (namespace, text key), stored as float32 bytes in SQLite."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._connection = sqlite3.connect(path, timeout=60)
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute(
            "CREATE TABLE IF NOT EXISTS embeddings ("
            " namespace TEXT NOT NULL, key TEXT NOT NULL, dim INTEGER NOT NULL,"
            " vector BLOB NOT NULL, PRIMARY KEY (namespace, key))"
        )
        self._connection.commit()

    def get_many(self, namespace: str, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """Return the cached vectors among `keys`."""
        found: dict[str, np.ndarray] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._connection.execute(
                f"SELECT key, dim, vector FROM embeddings WHERE namespace = ? AND key IN ({marks})",
                [namespace, *chunk],
            )
            for key, dim, blob in rows:
                vector = np.frombuffer(blob, dtype=np.float32)
                if vector.shape[0] == dim:
                    found[key] = vector
        return found

    def put_many(self, namespace: str, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Store one vector per key and commit, so the rows survive a later crash."""
        vectors = np.asarray(vectors, dtype=np.float32)
        rows = [
            (namespace, key, int(vector.shape[0]), vector.tobytes())
            for key, vector in zip(keys, vectors, strict=True)
        ]
        with self._connection:
            self._connection.executemany(
                "INSERT OR REPLACE INTO embeddings (namespace, key, dim, vector)"
                " VALUES (?, ?, ?, ?)",
                rows,
            )

    def count(self, namespace: str) -> int:
        """Return the number of vectors stored under `namespace`."""
        (total,) = self._connection.execute(
            "SELECT COUNT(*) FROM embeddings WHERE namespace = ?", [namespace]
        ).fetchone()
        return int(total)

    def close(self) -> None:
        self._connection.close()
