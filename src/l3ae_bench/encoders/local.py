"""Local encoders: any sentence-transformers model, by Hugging Face id or local folder.

The item prefix (such as `passage: ` for e5) is added here, and the model's own saved prompts
are switched off, so the model receives exactly `prefix + text`.
"""

from __future__ import annotations

import importlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from l3ae_bench.encoders.base import TextPolicy, fixed_batches
from l3ae_bench.errors import ConfigError, EncoderError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SentenceTransformerConfig(TextPolicy):
    """Settings of a sentence-transformers encoder."""

    name: str
    """Encoder name, used in run names."""
    model: str
    """Hugging Face model id (such as `intfloat/e5-base-v2`); part of the cache key."""
    path: str | None = None
    """Local folder of the model, loaded instead of the Hub; null loads `model`."""
    package: str | None = None
    """Python package that ships the model files (its `get_model_path()` gives the folder)."""
    revision: str | None = None
    """Model revision (branch, tag or commit) on the Hub; part of the cache key."""
    prefix: str = ""
    """Text put before every item text, such as `passage: ` for e5 models; part of the cache
    key."""
    query_prefix: str = ""
    """Text put before every query text, such as `query: ` for e5 models."""
    append_eos: bool = False
    """Append the tokenizer's end-of-sequence token to every text (NV-Embed-v2 expects it)."""
    trust_remote_code: bool = False
    """Run the model code shipped with the model (needed by NV-Embed-v2); only for trusted
    models."""
    padding_side: str | None = None
    """`left` or `right` to override the tokenizer's padding side (NV-Embed-v2 needs
    `right`); null keeps the tokenizer's setting."""
    normalize: bool = True
    """Scale every vector to unit length."""
    batch_size: int = 64
    """Texts per forward pass."""
    cache_batch_size: int = 256
    """Texts encoded between two commits to the embedding cache."""
    device: str = "auto"
    """`auto` (CUDA when present, else CPU), `cpu`, `cuda` or `cuda:N`."""
    max_seq_length: int | None = None
    """Token limit per text; null keeps the model's own limit. Longer texts are truncated
    and counted in the metric `embedding/truncated_texts`."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("batch_size", "cache_batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"encoder.{key} must be ≥ 1, got {getattr(self, key)}.")
        if self.padding_side not in (None, "left", "right"):
            raise ConfigError(
                f"encoder.padding_side must be left, right or null, got {self.padding_side!r}."
            )


class SentenceTransformerEncoder:
    """Encodes item texts with a sentence-transformers model loaded on first use."""

    def __init__(self, config: SentenceTransformerConfig) -> None:
        self.config = config
        self.name = config.name
        self._model: Any = None
        self._truncated = 0

    def identity(self) -> dict[str, Any]:
        config = self.config
        identity = {
            "backend": "sentence-transformers",
            "model": config.model,
            "revision": config.revision,
            "prefix": config.prefix,
            "normalize": config.normalize,
            "max_seq_length": config.max_seq_length,
        }
        if config.append_eos:
            identity["append_eos"] = True
        return identity

    def metrics(self) -> dict[str, float]:
        return {"truncated_texts": float(self._truncated)}

    def params(self) -> dict[str, Any]:
        if self._model is None:
            return {}
        return {
            "max_seq_length": self._model.max_seq_length,
            "dimension": _embedding_dimension(self._model),
            "device": str(self._model.device),
        }

    def plan_batches(self, texts: list[str]) -> list[range]:
        return fixed_batches(len(texts), self.config.cache_batch_size)

    def encode(self, texts: list[str]) -> np.ndarray:
        model = self._load()
        inputs = self._inputs(model, self.config.prefix, texts)
        self._truncated += self._count_truncated(model, inputs)
        return self._forward(model, inputs)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        model = self._load()
        return self._forward(model, self._inputs(model, self.config.query_prefix, texts))

    def _inputs(self, model: Any, prefix: str, texts: list[str]) -> list[str]:
        suffix = model.tokenizer.eos_token if self.config.append_eos else ""
        return [prefix + text + suffix for text in texts]

    def _forward(self, model: Any, inputs: list[str]) -> np.ndarray:
        # prompt="" keeps a default prompt saved with the model from being added to the inputs.
        vectors = model.encode(
            inputs,
            prompt="",
            batch_size=self.config.batch_size,
            normalize_embeddings=self.config.normalize,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def _load(self) -> Any:
        if self._model is not None:
            return self._model
        from sentence_transformers import SentenceTransformer

        location = self._location()
        device = self._device()
        started = time.perf_counter()
        try:
            model = SentenceTransformer(
                location,
                device=device,
                revision=self.config.revision,
                trust_remote_code=self.config.trust_remote_code,
            )
        except (OSError, ValueError) as error:
            raise EncoderError(
                f"Cannot load the sentence-transformers model {location!r} of encoder "
                f"{self.name} (encoder.model, encoder.path): {str(error).rstrip('. ')}. To "
                "load it, download it once on a machine with access to the Hugging Face Hub "
                "into the Hugging Face cache (HF_HOME, by default ~/.cache/huggingface), after "
                "which HF_HUB_OFFLINE=1 loads it from there, or set encoder.path to a folder "
                "with a saved copy of the model."
            ) from error
        if self.config.max_seq_length is not None:
            model.max_seq_length = self.config.max_seq_length
        if self.config.padding_side is not None:
            model.tokenizer.padding_side = self.config.padding_side
        log.info(
            "Loaded %s on %s in %.1fs (max sequence length %s tokens, dimension %s)",
            location,
            device,
            time.perf_counter() - started,
            model.max_seq_length,
            _embedding_dimension(model),
        )
        self._model = model
        return model

    def _location(self) -> str:
        if self.config.path:
            path = Path(self.config.path).expanduser()
            if not path.exists():
                raise EncoderError(
                    f"Model folder not found: {path} (encoder.path). Point it at a saved "
                    "sentence-transformers model or set it to null to load encoder.model."
                )
            return str(path)
        if self.config.package:
            try:
                module = importlib.import_module(self.config.package)
            except ImportError as error:
                raise EncoderError(
                    f"Package {self.config.package!r} (encoder.package) is not installed; "
                    f"install it with pip, or set encoder.package=null to load "
                    f"{self.config.model!r} from the Hugging Face Hub."
                ) from error
            return str(module.get_model_path())
        return self.config.model

    def _device(self) -> str:
        if self.config.device != "auto":
            return self.config.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    @staticmethod
    def _count_truncated(model: Any, texts: list[str]) -> int:
        limit = model.max_seq_length
        tokenizer = getattr(model, "tokenizer", None)
        if tokenizer is None or not limit:
            return 0
        lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=True)["input_ids"]]
        return int(sum(length > limit for length in lengths))


def _embedding_dimension(model: Any) -> int | None:
    """Return the output width; sentence-transformers 5.3 renamed the accessor."""
    getter = (
        getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    )
    return getter()
