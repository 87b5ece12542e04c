"""The encoder interface: turn item texts into an embedding matrix E (items × d, float32)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from l3ae_bench.errors import ConfigError

EMPTY_TEXT_POLICIES = ("placeholder", "exclude", "error")


@dataclass(frozen=True, kw_only=True)
class TextPolicy:
    """Policy for items whose text is empty or whitespace only, shared by text encoders."""

    empty_text: str = "placeholder"
    """`placeholder`: encode `placeholder` instead. `exclude`: leave the item out of the
    semantic side (a zero row in E and False in `EmbeddingResult.has_text`). `error`: stop."""
    placeholder: str = "Unknown item."
    """Text encoded for items without text when `empty_text` is `placeholder`."""

    def __post_init__(self) -> None:
        if self.empty_text not in EMPTY_TEXT_POLICIES:
            raise ConfigError(
                f"encoder.empty_text must be one of {list(EMPTY_TEXT_POLICIES)}, got "
                f"{self.empty_text!r}."
            )
        if self.empty_text == "placeholder" and not self.placeholder.strip():
            raise ConfigError(
                "encoder.placeholder must be a non-empty text when encoder.empty_text is "
                "placeholder."
            )


class Encoder(Protocol):
    """A text encoder whose item vectors can be cached.

    `identity()` lists every setting that changes the vectors; it keys the embedding cache.
    `plan_batches()` splits the texts to encode into batches, and `encode()` encodes one batch of
    non-empty item texts (the item prefix is added inside) and returns one float32 row per text,
    in order. For an API encoder one batch is one request, so each response can be cached as
    soon as it arrives.
    """

    name: str

    def identity(self) -> dict[str, Any]: ...

    def plan_batches(self, texts: list[str]) -> list[range]: ...

    def encode(self, texts: list[str]) -> np.ndarray: ...

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        """Encode query texts with the query prefix; never cached."""
        ...

    def metrics(self) -> dict[str, float]:
        """Counts about the `encode` calls so far (such as truncated texts or retries)."""
        ...

    def params(self) -> dict[str, Any]:
        """Settings known only at run time (such as the model's maximum sequence length)."""
        ...


def fixed_batches(n_texts: int, size: int) -> list[range]:
    """Split `n_texts` positions into consecutive batches of at most `size`."""
    return [range(start, min(start + size, n_texts)) for start in range(0, n_texts, size)]
