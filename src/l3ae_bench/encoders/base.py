"""The encoder interface: turn item texts into an embedding matrix E (items × d, float32)."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class Encoder(Protocol):
    """A text encoder whose vectors can be cached.

    `identity()` lists every setting that changes the vectors; it keys the embedding cache.
    `encode()` receives non-empty texts and returns one float32 row per text, in order.
    """

    name: str

    def identity(self) -> dict[str, Any]: ...

    def encode(self, texts: list[str]) -> np.ndarray: ...

    def metrics(self) -> dict[str, float]:
        """Numbers worth logging about the last `encode` calls (such as truncated texts)."""
        ...
