"""Encoders by kind, and the cached embedding of item texts.

The `kind` key of a `conf/encoder/*.yaml` file picks the backend: `sentence-transformers` for
local models, `precomputed` for a stored matrix. Texts of cacheable encoders go through the
embedding cache, so only items never encoded with the same settings reach the model.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from l3ae_bench.cache import stable_hash
from l3ae_bench.config import build
from l3ae_bench.encoders.base import Encoder
from l3ae_bench.encoders.cache import EmbeddingCache, text_key
from l3ae_bench.encoders.local import SentenceTransformerConfig, SentenceTransformerEncoder
from l3ae_bench.encoders.precomputed import PrecomputedConfig, load_precomputed
from l3ae_bench.errors import ConfigError, EncoderError

log = logging.getLogger(__name__)

CONFIG_CLASSES: dict[str, type] = {
    "sentence-transformers": SentenceTransformerConfig,
    "precomputed": PrecomputedConfig,
}


@dataclass
class EmbeddingResult:
    """Item embeddings with counts of how they were obtained."""

    E: np.ndarray
    """Item embeddings, items × d, float32, row i = item index i."""
    stats: dict[str, float] = field(default_factory=dict)
    """Cache hits and misses, encoder requests, and encoder-specific counts."""


def parse_encoder_config(values: dict[str, Any]) -> tuple[str, Any]:
    """Split the `kind` key off the encoder settings and build the backend's typed config."""
    values = dict(values)
    kind = values.pop("kind", None)
    if kind not in CONFIG_CLASSES:
        raise ConfigError(
            f"encoder.kind={kind!r} is not a known encoder kind; choose one of "
            f"{sorted(CONFIG_CLASSES)}."
        )
    return kind, build(CONFIG_CLASSES[kind], values, "encoder")


def make_encoder(kind: str, config: Any) -> Encoder:
    """Create the encoder object of a cacheable kind."""
    if kind == "sentence-transformers":
        return SentenceTransformerEncoder(config)
    raise ConfigError(f"encoder.kind={kind!r} has no text encoder.")


def embed_items(
    kind: str,
    config: Any,
    texts: list[str],
    cache_dir: Path,
    progress: bool = True,
    chunk_size: int = 256,
) -> EmbeddingResult:
    """Return E for `texts`, encoding only the texts missing from the embedding cache."""
    started = time.perf_counter()
    if kind == "precomputed":
        E = load_precomputed(config, len(texts))
        return EmbeddingResult(E, {"cache_hits": 0.0, "cache_misses": 0.0, "requests": 0.0})

    empty = [index for index, text in enumerate(texts) if not text.strip()]
    if empty:
        raise EncoderError(
            f"{len(empty)} items have empty text, for example item indices {empty[:5]}; fix "
            "the dataset's text template or fields."
        )
    encoder = make_encoder(kind, config)
    namespace = stable_hash(encoder.identity(), length=32)
    keys = [text_key(text) for text in texts]
    cache = EmbeddingCache(cache_dir / "embeddings.sqlite")
    try:
        vectors = cache.get_many(namespace, keys)
        hits = sum(key in vectors for key in keys)
        missing = [index for index, key in enumerate(keys) if key not in vectors]
        unique_missing = list({keys[index]: index for index in missing}.values())
        log.info(
            "Embedding cache %s: %d of %d items cached, %d texts to encode",
            cache.path,
            hits,
            len(texts),
            len(unique_missing),
        )

        requests = 0
        bar = tqdm(
            total=len(unique_missing),
            desc=f"Encoding with {encoder.name}",
            unit="item",
            disable=not progress or not unique_missing,
        )
        for start in range(0, len(unique_missing), chunk_size):
            chunk = unique_missing[start : start + chunk_size]
            new = encoder.encode([texts[index] for index in chunk])
            requests += 1
            chunk_keys = [keys[index] for index in chunk]
            cache.put_many(namespace, chunk_keys, new)
            vectors.update(zip(chunk_keys, np.asarray(new, dtype=np.float32), strict=True))
            bar.update(len(chunk))
        bar.close()
    finally:
        cache.close()

    widths = {vector.shape[0] for vector in vectors.values()}
    if len(widths) != 1:
        raise EncoderError(
            f"Cached vectors for encoder {encoder.name} have several widths {sorted(widths)}; "
            f"delete namespace {namespace} from {cache_dir / 'embeddings.sqlite'}."
        )
    E = np.stack([vectors[key] for key in keys])
    stats = {
        "cache_hits": float(hits),
        "cache_misses": float(len(missing)),
        "requests": float(requests),
        **encoder.metrics(),
    }
    log.info(
        "Embedded %d items with %s (%d dims) in %.1fs",
        len(texts),
        encoder.name,
        E.shape[1],
        time.perf_counter() - started,
    )
    return EmbeddingResult(E, stats)
