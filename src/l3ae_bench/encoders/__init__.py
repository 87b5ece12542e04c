"""Encoders by kind, and the cached embedding of item texts.

The `kind` key of a `conf/encoder/*.yaml` file picks the backend: `sentence-transformers` for
local models, `openai-api` for any endpoint that speaks the OpenAI embeddings protocol, and
`precomputed` for a stored matrix. Texts of text encoders go through the embedding cache, so
only items never encoded with the same settings reach the model, and each batch (one API
request) is committed to the cache as soon as it arrives.
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
from l3ae_bench.encoders.api import OpenAIEmbeddingsConfig, OpenAIEmbeddingsEncoder
from l3ae_bench.encoders.base import Encoder, TextPolicy
from l3ae_bench.encoders.cache import EmbeddingCache, text_key
from l3ae_bench.encoders.local import SentenceTransformerConfig, SentenceTransformerEncoder
from l3ae_bench.encoders.precomputed import PrecomputedConfig, load_precomputed
from l3ae_bench.errors import ConfigError, EncoderError

log = logging.getLogger(__name__)

CONFIG_CLASSES: dict[str, type] = {
    "sentence-transformers": SentenceTransformerConfig,
    "openai-api": OpenAIEmbeddingsConfig,
    "precomputed": PrecomputedConfig,
}


@dataclass
class EmbeddingResult:
    """Item embeddings with a mask of the items they cover and counts of how they were made."""

    E: np.ndarray
    """Item embeddings, items × d, float32, row i = item index i."""
    has_text: np.ndarray
    """Boolean mask over items. False marks items left out of the semantic side, because
    their text was empty and `encoder.empty_text` is `exclude`. Their rows of E are zero. A
    solver that honours the mask treats them as items without semantic neighbours."""
    stats: dict[str, float] = field(default_factory=dict)
    """Cache hits and misses, requests, empty texts, and encoder-specific counts."""
    params: dict[str, Any] = field(default_factory=dict)
    """Settings known only at run time, such as the model's maximum sequence length."""


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
    """Create the encoder object of a text-encoder kind."""
    if kind == "sentence-transformers":
        return SentenceTransformerEncoder(config)
    if kind == "openai-api":
        return OpenAIEmbeddingsEncoder(config)
    raise ConfigError(f"encoder.kind={kind!r} has no text encoder.")


def apply_empty_text_policy(
    texts: list[str], policy: TextPolicy, encoder_name: str
) -> tuple[list[str], np.ndarray]:
    """Return the texts to encode and the `has_text` mask, after the empty-text policy.

    Texts that are empty or whitespace only are replaced by the placeholder, or dropped from
    the texts to encode (and marked False in the mask), or stop the job, as configured.
    """
    empty = [index for index, text in enumerate(texts) if not text.strip()]
    has_text = np.ones(len(texts), dtype=bool)
    if not empty:
        return list(texts), has_text
    examples = empty[:5]
    if policy.empty_text == "error":
        raise EncoderError(
            f"{len(empty)} items have empty text, for example item indices {examples}; fix "
            "the dataset's text template or fields, or set encoder.empty_text to placeholder "
            "or exclude."
        )
    if policy.empty_text == "placeholder":
        log.warning(
            "%d of %d items have empty text (for example item indices %s); encoding the "
            "placeholder %r for them (encoder.empty_text=placeholder)",
            len(empty),
            len(texts),
            examples,
            policy.placeholder,
        )
        replaced = list(texts)
        for index in empty:
            replaced[index] = policy.placeholder
        return replaced, has_text
    if len(empty) == len(texts):
        raise EncoderError(
            f"All {len(texts)} items have empty text, so encoder {encoder_name} has nothing to "
            "encode; fix the dataset's text template or fields."
        )
    log.warning(
        "%d of %d items have empty text (for example item indices %s); they get zero rows in E "
        "and are left out of the semantic side (encoder.empty_text=exclude)",
        len(empty),
        len(texts),
        examples,
    )
    has_text[empty] = False
    return [text for index, text in enumerate(texts) if has_text[index]], has_text


def embed_items(
    kind: str,
    config: Any,
    texts: list[str],
    cache_dir: Path,
    progress: bool = True,
) -> EmbeddingResult:
    """Return E for `texts`, encoding only the texts missing from the embedding cache."""
    started = time.perf_counter()
    if kind == "precomputed":
        E = load_precomputed(config, len(texts))
        stats = {"cache_hits": 0.0, "cache_misses": 0.0, "requests": 0.0}
        return EmbeddingResult(E, np.ones(len(texts), dtype=bool), stats)

    encoder = make_encoder(kind, config)
    inputs, has_text = apply_empty_text_policy(texts, config, encoder.name)
    vectors, stats = _encode_through_cache(
        encoder, inputs, cache_dir / "embeddings.sqlite", progress
    )
    E = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
    E[has_text] = vectors
    n_empty = sum(not text.strip() for text in texts)
    stats.update(
        {
            "empty_texts": float(n_empty),
            "excluded_items": float((~has_text).sum()),
            "dimension": float(E.shape[1]),
            **encoder.metrics(),
        }
    )
    log.info(
        "Embedded %d items with %s (%d dims) in %.2fs",
        len(texts),
        encoder.name,
        E.shape[1],
        time.perf_counter() - started,
    )
    return EmbeddingResult(E, has_text, stats, encoder.params())


def _encode_through_cache(
    encoder: Encoder, texts: list[str], cache_path: Path, progress: bool
) -> tuple[np.ndarray, dict[str, float]]:
    """Encode `texts` in order, reading and writing the embedding cache."""
    namespace = stable_hash(encoder.identity(), length=32)
    keys = [text_key(text) for text in texts]
    cache = EmbeddingCache(cache_path)
    try:
        vectors = cache.get_many(namespace, keys)
        hits = sum(key in vectors for key in keys)
        # One position per distinct missing text, so duplicates are encoded once.
        missing = list(
            {key: index for index, key in enumerate(keys) if key not in vectors}.values()
        )
        log.info(
            "Embedding cache %s: %d of %d items cached, %d texts to encode",
            cache.path,
            hits,
            len(texts),
            len(missing),
        )
        batches = encoder.plan_batches([texts[index] for index in missing])
        bar = tqdm(
            total=len(missing),
            desc=f"Encoding with {encoder.name}",
            unit="item",
            disable=not progress or not missing,
        )
        for batch in batches:
            chunk = [missing[position] for position in batch]
            new = encoder.encode([texts[index] for index in chunk])
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
            f"delete namespace {namespace} from {cache_path}."
        )
    stats = {
        "cache_hits": float(hits),
        "cache_misses": float(len(texts) - hits),
        "requests": float(len(batches)),
    }
    return np.stack([vectors[key] for key in keys]), stats
