"""Encoders behind an OpenAI-compatible embeddings endpoint: OpenAI, vLLM, Ollama, TEI.

Requests go through the official `openai` client with its own retries switched off
(`max_retries=0`). This module retries 429, 408, 409, 5xx, timeouts and connection errors
itself, with exponential backoff, jitter and the server's `Retry-After`, because the client's
backoff constants (0.5 s doubling to 8 s in openai 3.60) cannot be set per client.

Every request sends `encoding_format="float"`, and every response is checked: one vector per
input, indices 0..n-1, finite values and the expected width. A server that ignores the
`dimensions` parameter or changes width stops the job instead of being reshaped. A base64
response to a float request is decoded as the protocol defines base64 (little-endian float32).
"""

from __future__ import annotations

import base64
import email.utils
import logging
import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from l3ae_bench.encoders.base import TextPolicy
from l3ae_bench.errors import ConfigError, EncoderError
from l3ae_bench.redaction import ENV_NAME, redact_text

log = logging.getLogger(__name__)

TRUNCATION_UNITS = ("chars", "tokens", "none")
RETRY_STATUSES = frozenset({408, 409, 429})
# Sent as the key to servers that need none (local vLLM or Ollama); the client needs a value.
NO_KEY = "no-key"


@dataclass(frozen=True)
class OpenAIEmbeddingsConfig(TextPolicy):
    """Settings of an encoder served over the OpenAI embeddings protocol."""

    name: str
    """Encoder name, used in run names."""
    model: str
    """Model id at the endpoint (such as `text-embedding-3-small`); part of the cache key."""
    model_env: str | None = None
    """Environment variable that replaces `model` when it is set (such as LLAMA_MODEL)."""
    base_url: str | None = None
    """Endpoint URL up to `/v1`; null uses the client's default, https://api.openai.com/v1.
    Not part of the cache key, so moving a model to another server keeps its vectors."""
    base_url_env: str | None = None
    """Environment variable that replaces `base_url` when it is set (such as LLAMA_BASE_URL)."""
    api_key_env: str | None = "OPENAI_API_KEY"
    """Environment variable holding the API key. The key itself never appears in the config."""
    api_key_required: bool = True
    """Stop before the first request when the key variable is unset; false for local servers."""
    revision: str | None = None
    """Label of the model version behind `model`, for servers whose model ids do not change
    with the weights; part of the cache key."""
    prefix: str = ""
    """Text put before every item text; part of the cache key."""
    query_prefix: str = ""
    """Text put before every query text."""
    dimensions: int | None = None
    """Width requested with the `dimensions` parameter (text-embedding-3 models shorten their
    vectors); null sends none. Part of the cache key."""
    expected_dimension: int | None = None
    """Width every returned vector must have; null takes `dimensions`, else the width of the
    first response."""
    normalize: bool = True
    """Scale every vector to unit length on the client."""
    batch_size: int = 256
    """Inputs per request, at most `max_inputs_per_request`."""
    max_inputs_per_request: int = 2048
    """The provider's cap on inputs per request (2,048 for OpenAI)."""
    max_request_chars: int | None = None
    """Characters per request, summed over its inputs; null sets no limit. Keeps a request
    under a provider's token cap per request (300,000 tokens for OpenAI)."""
    truncate: str = "chars"
    """Client-side truncation of each input: `chars` (to `max_input_chars`), `tokens` (to
    `max_input_tokens` of `tokenizer`) or `none`. Part of the cache key."""
    max_input_chars: int | None = None
    """Character budget per input when `truncate` is `chars`."""
    max_input_tokens: int | None = None
    """Token budget per input when `truncate` is `tokens`."""
    tokenizer: str | None = None
    """Hugging Face tokenizer (id or local folder) that counts tokens when `truncate` is
    `tokens`; it must be a fast tokenizer."""
    timeout_s: float = 60.0
    """Seconds to wait for one response before the request counts as timed out."""
    max_retries: int = 6
    """Retries of one request after 429, 408, 409, 5xx, timeouts and connection errors."""
    backoff_base_s: float = 1.0
    """Wait in seconds before the first retry when the server sends no Retry-After. The wait
    doubles with each retry, and a random jitter takes up to half of it off."""
    backoff_max_s: float = 60.0
    """Maximum wait in seconds between two retries without Retry-After."""
    max_retry_after_s: float = 300.0
    """Maximum Retry-After in seconds that is honoured. A longer Retry-After stops the job."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("batch_size", "max_inputs_per_request"):
            if getattr(self, key) < 1:
                raise ConfigError(f"encoder.{key} must be ≥ 1, got {getattr(self, key)}.")
        for key in ("dimensions", "expected_dimension", "max_request_chars"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ConfigError(f"encoder.{key} must be ≥ 1 or null, got {value}.")
        for key in ("timeout_s", "backoff_base_s", "backoff_max_s", "max_retry_after_s"):
            if getattr(self, key) < 0:
                raise ConfigError(f"encoder.{key} must be ≥ 0, got {getattr(self, key)}.")
        if self.max_retries < 0:
            raise ConfigError(f"encoder.max_retries must be ≥ 0, got {self.max_retries}.")
        for key in ("model_env", "base_url_env", "api_key_env"):
            value = getattr(self, key)
            if value is not None and not ENV_NAME.match(value):
                raise ConfigError(
                    f"encoder.{key} must name an environment variable (letters, digits and "
                    "underscores), and its value is not a variable name. Put the value itself "
                    "in that environment variable."
                )
        self._check_truncation()

    def _check_truncation(self) -> None:
        if self.truncate not in TRUNCATION_UNITS:
            raise ConfigError(
                f"encoder.truncate must be one of {list(TRUNCATION_UNITS)}, got {self.truncate!r}."
            )
        if self.truncate == "chars" and (self.max_input_chars or 0) < 1:
            raise ConfigError(
                "encoder.truncate=chars needs encoder.max_input_chars ≥ 1, got "
                f"{self.max_input_chars}."
            )
        if self.truncate == "tokens" and ((self.max_input_tokens or 0) < 1 or not self.tokenizer):
            raise ConfigError(
                "encoder.truncate=tokens needs encoder.max_input_tokens ≥ 1 and "
                "encoder.tokenizer (a Hugging Face tokenizer id or folder)."
            )


@dataclass(frozen=True)
class Endpoint:
    """The model, URL and key in effect after the environment overrides."""

    model: str
    base_url: str | None
    api_key: str | None
    where: str
    """How to change the URL, for error messages."""

    def describe(self) -> str:
        url = redact_text(self.base_url or "https://api.openai.com/v1 (client default)")
        return f"{url}, model {self.model}"


def resolve_endpoint(
    config: OpenAIEmbeddingsConfig, environ: Mapping[str, str] | None = None
) -> Endpoint:
    """Apply `model_env`, `base_url_env` and `api_key_env` from the environment."""
    environ = os.environ if environ is None else environ
    model = environ.get(config.model_env or "", "").strip() or config.model
    base_url = environ.get(config.base_url_env or "", "").strip() or config.base_url
    api_key = environ.get(config.api_key_env or "", "").strip() or None
    where = "encoder.base_url"
    if config.base_url_env:
        where = f"the environment variable {config.base_url_env} (or encoder.base_url)"
    return Endpoint(model=model, base_url=base_url, api_key=api_key, where=where)


class OpenAIEmbeddingsEncoder:
    """Encodes texts through `POST {base_url}/embeddings`, one request per batch."""

    def __init__(
        self, config: OpenAIEmbeddingsConfig, environ: Mapping[str, str] | None = None
    ) -> None:
        self.config = config
        self.name = config.name
        self.endpoint = resolve_endpoint(config, environ)
        self._client: Any = None
        self._tokenizer: Any = None
        self._dimension = config.expected_dimension or config.dimensions
        self._counts = {"api_requests": 0, "api_retries": 0, "truncated_texts": 0}
        self._warned_base64 = False

    def identity(self) -> dict[str, Any]:
        config = self.config
        return {
            "backend": "openai-embeddings",
            "model": self.endpoint.model,
            "revision": config.revision,
            "prefix": config.prefix,
            "dimensions": config.dimensions,
            "normalize": config.normalize,
            "truncate": config.truncate,
            "max_input_chars": config.max_input_chars if config.truncate == "chars" else None,
            "max_input_tokens": config.max_input_tokens if config.truncate == "tokens" else None,
            "tokenizer": config.tokenizer if config.truncate == "tokens" else None,
        }

    def metrics(self) -> dict[str, float]:
        return {key: float(value) for key, value in self._counts.items()}

    def params(self) -> dict[str, Any]:
        return {
            "model": self.endpoint.model,
            "base_url": redact_text(self.endpoint.base_url or "https://api.openai.com/v1"),
            "dimension": self._dimension,
        }

    def plan_batches(self, texts: list[str]) -> list[range]:
        """Split into requests of at most `batch_size`, the provider cap and the char budget."""
        config = self.config
        size = min(config.batch_size, config.max_inputs_per_request)
        budget = config.max_request_chars
        batches: list[range] = []
        start, chars = 0, 0
        for position, text in enumerate(texts):
            length = len(config.prefix) + len(text)
            if config.truncate == "chars":
                length = min(length, config.max_input_chars or length)
            full = position - start >= size
            over_budget = budget is not None and position > start and chars + length > budget
            if full or over_budget:
                batches.append(range(start, position))
                start, chars = position, 0
            chars += length
        if start < len(texts):
            batches.append(range(start, len(texts)))
        return batches

    def encode(self, texts: list[str]) -> np.ndarray:
        return self._embed([self._prepare(self.config.prefix + text) for text in texts])

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self._embed([self._prepare(self.config.query_prefix + text) for text in texts])

    def _embed(self, inputs: list[str]) -> np.ndarray:
        blank = [index for index, text in enumerate(inputs) if not text.strip()]
        if blank:
            raise EncoderError(
                f"Encoder {self.name} received {len(blank)} empty texts; set "
                "encoder.empty_text to placeholder or exclude."
            )
        response = self._request(inputs)
        return self._vectors(response, len(inputs))

    def _prepare(self, text: str) -> str:
        """Cut `text` to the configured character or token budget."""
        config = self.config
        if config.truncate == "chars" and len(text) > (config.max_input_chars or 0):
            self._counts["truncated_texts"] += 1
            return text[: config.max_input_chars]
        if config.truncate == "tokens":
            offsets = self._load_tokenizer()(
                text, add_special_tokens=False, return_offsets_mapping=True, verbose=False
            )["offset_mapping"]
            if len(offsets) > (config.max_input_tokens or 0):
                self._counts["truncated_texts"] += 1
                # Cut the original string after the last kept token, so the text keeps its case
                # and spacing whatever the tokenizer normalizes.
                return text[: offsets[config.max_input_tokens - 1][1]]
        return text

    def _load_tokenizer(self) -> Any:
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            try:
                tokenizer = AutoTokenizer.from_pretrained(self.config.tokenizer)
            except (OSError, ValueError) as error:
                raise EncoderError(
                    f"Cannot load the tokenizer {self.config.tokenizer!r} (encoder.tokenizer) "
                    f"that counts tokens for encoder {self.name}: {str(error).rstrip('. ')}. "
                    "Download it once into the Hugging Face cache (then HF_HUB_OFFLINE=1 "
                    "loads it from there), set encoder.tokenizer to a local folder, or use "
                    "encoder.truncate=chars."
                ) from error
            if not tokenizer.is_fast:
                raise EncoderError(
                    f"The tokenizer {self.config.tokenizer!r} (encoder.tokenizer) is not a fast "
                    "tokenizer, so it cannot map tokens back to characters; use a fast one or "
                    "encoder.truncate=chars."
                )
            self._tokenizer = tokenizer
        return self._tokenizer

    def _get_client(self) -> Any:
        if self._client is not None:
            return self._client
        import openai

        endpoint = self.endpoint
        if endpoint.api_key is None and self.config.api_key_required:
            raise EncoderError(
                f"The environment variable {self.config.api_key_env} (encoder.api_key_env) is "
                f"not set, and encoder {self.name} needs an API key for {endpoint.describe()}. "
                f"Export the key in {self.config.api_key_env}; keys are read from the "
                "environment only, never from the config or the command line."
            )
        self._client = openai.OpenAI(
            api_key=endpoint.api_key or NO_KEY,
            base_url=endpoint.base_url,
            max_retries=0,
            timeout=self.config.timeout_s,
        )
        log.info(
            "Embeddings endpoint %s (dimensions requested: %s, expected: %s)",
            endpoint.describe(),
            self.config.dimensions,
            self._dimension or "probed from the first response",
        )
        return self._client

    def _request(self, inputs: list[str]) -> Any:
        """Send one embeddings request, retrying transient failures."""
        import openai

        client = self._get_client()
        arguments: dict[str, Any] = {
            "model": self.endpoint.model,
            "input": inputs,
            "encoding_format": "float",
        }
        if self.config.dimensions is not None:
            arguments["dimensions"] = self.config.dimensions
        attempts = self.config.max_retries + 1
        for attempt in range(attempts):
            self._counts["api_requests"] += 1
            retry_after = None
            try:
                return client.embeddings.create(**arguments)
            except openai.APITimeoutError:
                reason = f"timed out after {self.config.timeout_s:g}s"
            except openai.APIConnectionError as error:
                reason = f"connection failed ({self._clean(str(error.__cause__ or error))})"
            except openai.APIStatusError as error:
                if not _is_retryable(error.status_code):
                    raise self._status_error(error, len(inputs)) from None
                reason = f"HTTP {error.status_code}"
                retry_after = parse_retry_after(error.response.headers)
            except openai.APIError as error:
                raise EncoderError(
                    f"The embeddings endpoint {self.endpoint.describe()} sent a response "
                    f"that cannot be read: {self._clean(str(error))}."
                ) from None
            if attempt + 1 == attempts:
                raise self._gave_up_error(reason, attempts)
            delay = self._retry_delay(attempt, retry_after, reason)
            log.warning(
                "Embeddings request of %d inputs to %s: %s; retry %d of %d in %.2fs",
                len(inputs),
                self.endpoint.describe(),
                reason,
                attempt + 1,
                self.config.max_retries,
                delay,
            )
            self._counts["api_retries"] += 1
            time.sleep(delay)
        raise AssertionError("unreachable: the loop returns or raises")

    def _retry_delay(self, attempt: int, retry_after: float | None, reason: str) -> float:
        """Return the server's Retry-After, or exponential backoff with jitter."""
        config = self.config
        if retry_after is not None:
            if retry_after > config.max_retry_after_s:
                raise EncoderError(
                    f"The embeddings endpoint {self.endpoint.describe()} returned {reason} with "
                    f"a request to retry after {retry_after:.0f}s, longer than "
                    f"encoder.max_retry_after_s={config.max_retry_after_s:g}. Rerun later (the "
                    "embeddings received so far are cached) or raise that limit."
                )
            return max(retry_after, 0.0)
        ceiling = min(config.backoff_max_s, config.backoff_base_s * 2.0**attempt)
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def _vectors(self, response: Any, n_inputs: int) -> np.ndarray:
        """Check one response and return its vectors in input order."""
        data = list(getattr(response, "data", None) or [])
        where = f"The embeddings endpoint {self.endpoint.describe()}"
        if len(data) != n_inputs:
            raise EncoderError(f"{where} returned {len(data)} vectors for {n_inputs} inputs.")
        indices = sorted(item.index for item in data)
        if indices != list(range(n_inputs)):
            raise EncoderError(
                f"{where} returned vector indices {indices[:10]}..., not 0..{n_inputs - 1}."
            )
        rows: list[np.ndarray] = [np.empty(0, np.float32)] * n_inputs
        for item in data:
            rows[item.index] = self._vector(item.embedding, where)
        vectors = np.stack(rows)
        if not np.isfinite(vectors).all():
            raise EncoderError(f"{where} returned vectors with NaN or infinite values.")
        if self.config.normalize:
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            if (norms == 0).any():
                raise EncoderError(
                    f"{where} returned all-zero vectors, which cannot be normalized; set "
                    "encoder.normalize=false or check the server."
                )
            vectors = vectors / norms
        return vectors.astype(np.float32, copy=False)

    def _vector(self, embedding: Any, where: str) -> np.ndarray:
        if isinstance(embedding, str):
            if not self._warned_base64:
                log.warning("%s returned base64 although float was requested", where)
                self._warned_base64 = True
            vector = np.frombuffer(base64.b64decode(embedding), dtype="<f4").astype(np.float32)
        else:
            vector = np.asarray(embedding, dtype=np.float32)
        if vector.ndim != 1 or vector.size == 0:
            raise EncoderError(f"{where} returned an embedding that is not a vector of numbers.")
        self._check_width(vector.shape[0], where)
        return vector

    def _check_width(self, width: int, where: str) -> None:
        config = self.config
        if self._dimension is None:
            self._dimension = width
            log.info("%s returns %d-dimensional vectors", where, width)
            return
        if width == self._dimension:
            return
        if config.dimensions is not None and width != config.dimensions:
            raise EncoderError(
                f"{where} returned {width}-dimensional vectors although dimensions="
                f"{config.dimensions} was requested (encoder.dimensions): the server ignores "
                "the dimensions parameter. Set encoder.dimensions=null and "
                f"encoder.expected_dimension={width}, or use a model that supports it."
            )
        raise EncoderError(
            f"{where} returned {width}-dimensional vectors, expected {self._dimension} "
            "(encoder.expected_dimension, encoder.dimensions or the first response). Vectors "
            "of different widths cannot form one E; check which model the server runs."
        )

    def _status_error(self, error: Any, n_inputs: int) -> EncoderError:
        """Explain an HTTP error that retrying cannot fix."""
        status = error.status_code
        message = self._clean(getattr(error, "message", str(error)))
        where = f"The embeddings endpoint {self.endpoint.describe()}"
        if status in (401, 403):
            return EncoderError(
                f"{where} rejected the API key (HTTP {status}: {message}). Check the key in "
                f"the environment variable {self.config.api_key_env} (encoder.api_key_env)."
            )
        if status == 404:
            model_hint = f"{self.config.model_env} or " if self.config.model_env else ""
            return EncoderError(
                f"{where} returned HTTP 404 ({message}). Set {model_hint}encoder.model to a "
                f"model the server serves, and {self.endpoint.where} to the server's URL "
                "ending in /v1."
            )
        hints = [
            "if the server caps the inputs per request, set encoder.max_inputs_per_request to "
            f"that cap (this request had {n_inputs})",
            "if an input is too long, lower encoder.max_input_chars or encoder.max_input_tokens",
        ]
        if self.config.dimensions is not None:
            hints.append("if the model has a fixed width, set encoder.dimensions=null")
        return EncoderError(
            f"{where} rejected a request of {n_inputs} inputs (HTTP {status}: {message}). "
            + " ".join(hint[0].upper() + hint[1:] + "." for hint in hints)
        )

    def _gave_up_error(self, reason: str, attempts: int) -> EncoderError:
        advice = (
            f"Start the server, or set {self.endpoint.where} to its URL (such as "
            "http://localhost:11434/v1 for Ollama or http://localhost:8000/v1 for vLLM)."
        )
        if reason.startswith("timed out"):
            advice = "Raise encoder.timeout_s or lower encoder.batch_size."
        elif reason.startswith("HTTP"):
            advice = "Rerun later; the embeddings received so far are cached."
        return EncoderError(
            f"The embeddings endpoint {self.endpoint.describe()} failed {attempts} times, last "
            f"with: {reason}. {advice}"
        )

    def _clean(self, text: str) -> str:
        """Remove the API key and other secrets from a server or client message."""
        secrets = [self.endpoint.api_key] if self.endpoint.api_key else []
        return redact_text(redact_text(text, secrets))


def _is_retryable(status: int) -> bool:
    return status in RETRY_STATUSES or status >= 500


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Return the wait in seconds from `retry-after-ms` or `retry-after` (seconds or a date)."""
    if not headers:
        return None
    milliseconds = headers.get("retry-after-ms")
    if milliseconds:
        try:
            return float(milliseconds) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return email.utils.parsedate_to_datetime(value).timestamp() - time.time()
    except (TypeError, ValueError):
        return None
