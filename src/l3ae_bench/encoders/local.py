"""Local encoders: any sentence-transformers model, by Hugging Face id or local folder."""

from __future__ import annotations

import importlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from l3ae_bench.errors import ConfigError, EncoderError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SentenceTransformerConfig:
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
    """Text put before every item text, such as `passage: ` for e5 models."""
    normalize: bool = True
    """Scale every vector to unit length."""
    batch_size: int = 64
    """Texts per forward pass."""
    device: str = "auto"
    """`auto` (CUDA when present, else CPU), `cpu`, `cuda` or `cuda:N`."""
    max_seq_length: int | None = None
    """Token limit per text; null keeps the model's own limit."""

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"encoder.batch_size must be ≥ 1, got {self.batch_size}.")


class SentenceTransformerEncoder:
    """Encodes item texts with a sentence-transformers model loaded on first use."""

    def __init__(self, config: SentenceTransformerConfig) -> None:
        self.config = config
        self.name = config.name
        self._model: Any = None
        self._truncated = 0

    def identity(self) -> dict[str, Any]:
        config = self.config
        return {
            "backend": "sentence-transformers",
            "model": config.model,
            "revision": config.revision,
            "prefix": config.prefix,
            "normalize": config.normalize,
            "max_seq_length": config.max_seq_length,
        }

    def metrics(self) -> dict[str, float]:
        return {"truncated_texts": float(self._truncated)}

    def encode(self, texts: list[str]) -> np.ndarray:
        model = self._load()
        inputs = [self.config.prefix + text for text in texts]
        self._truncated += self._count_truncated(model, inputs)
        vectors = model.encode(
            inputs,
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
            model = SentenceTransformer(location, device=device, revision=self.config.revision)
        except (OSError, ValueError) as error:
            raise EncoderError(
                f"Cannot load sentence-transformers model {location!r} (encoder.model / "
                f"encoder.path): {error}. Download it once with network access into the Hugging "
                "Face cache (then HF_HUB_OFFLINE=1 works), or set encoder.path to a local copy."
            ) from error
        if self.config.max_seq_length is not None:
            model.max_seq_length = self.config.max_seq_length
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
