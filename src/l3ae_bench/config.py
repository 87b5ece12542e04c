"""Typed configuration: the one place where raw Hydra config turns into validated dataclasses.

Every group (dataset, encoder, solver, evaluation, ...) maps onto a frozen dataclass. Unknown
keys, missing values and values of the wrong type raise `ConfigError` naming the setting, so the
rest of the code only ever receives typed objects.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from l3ae_bench.errors import ConfigError

T = TypeVar("T")


def to_container(config: DictConfig | Mapping, where: str) -> dict[str, Any]:
    """Resolve an OmegaConf node into plain Python, reporting missing values by their key."""
    if isinstance(config, DictConfig):
        try:
            return OmegaConf.to_container(config, resolve=True, throw_on_missing=True)  # type: ignore[return-value]
        except MissingMandatoryValue as error:
            raise ConfigError(
                f"Missing value for {where}.{error.full_key}: set it in the config file or on "
                f"the command line ({where}.{error.full_key}=...)."
            ) from error
    return dict(config)


def build(cls: type[T], values: Mapping[str, Any], where: str) -> T:
    """Build dataclass `cls` from `values`, checking keys and simple types.

    `where` is the config path (such as `solver`) used in error messages.
    """
    hints = typing.get_type_hints(cls)
    known = {item.name for item in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"Unknown setting(s) {', '.join(f'{where}.{key}' for key in unknown)} for "
            f"{cls.__name__}; the known settings are {sorted(known)}."
        )
    kwargs = {}
    for key, value in values.items():
        kwargs[key] = _convert(value, hints[key], f"{where}.{key}")
    try:
        return cls(**kwargs)
    except TypeError as error:
        raise ConfigError(f"Invalid settings for {where} ({cls.__name__}): {error}.") from error


def _convert(value: Any, hint: Any, where: str) -> Any:
    """Check `value` against a type hint, converting ints to floats and dicts to dataclasses."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(value, option, where)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if errors else f"Invalid value {value!r} for {where}.")
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a mapping of settings, got {value!r}.")
        return build(hint, value, where)
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where} must be a list, got {value!r}.")
        (item_hint, *_) = typing.get_args(hint) or (Any,)
        items = [_convert(item, item_hint, f"{where}[{i}]") for i, item in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and not (
        isinstance(value, hint) and not (hint is int and isinstance(value, bool))
    ):
        raise ConfigError(
            f"{where} must be of type {hint.__name__}, got {value!r} ({type(value).__name__})."
        )
    return value


@dataclass(frozen=True)
class EvaluationConfig:
    """Full-ranking top-K evaluation."""

    k: list[int] = field(default_factory=lambda: [10, 20])
    """Cut-offs K of Recall@K and NDCG@K."""
    batch_size: int = 256
    """Users scored per batch. Each evaluation thread keeps a few batch_size × n_items score
    and index arrays. Small batches let the allocator reuse those arrays instead of
    mapping fresh pages for every batch."""
    mask_val_in_test: bool = False
    """Also exclude validation items when ranking for test. The L3AE research code excludes
    training items only, which is the default."""
    head_fraction: float | None = 0.2
    """Share of items, the most popular by training count, that form the head in the
    head/tail test metrics (`test/recall_at_20_head`, `test/ndcg_at_20_tail`); null skips
    them."""

    def __post_init__(self) -> None:
        if not self.k or any(k < 1 for k in self.k):
            raise ConfigError(f"evaluation.k must list positive cut-offs, got {self.k}.")
        if self.head_fraction is not None and not 0 < self.head_fraction < 1:
            raise ConfigError(
                f"evaluation.head_fraction must lie strictly between 0 and 1 (or be null), "
                f"got {self.head_fraction}."
            )
        if self.batch_size < 1:
            raise ConfigError(f"evaluation.batch_size must be ≥ 1, got {self.batch_size}.")


@dataclass(frozen=True)
class ComputeConfig:
    """Numerical settings shared by the solvers."""

    dtype: str = "float32"
    """Floating type of the dense item × item matrices: float32 or float64."""
    blas_threads: int | None = None
    """Threads of the BLAS library during fits; null leaves the library's default."""
    backend: str = "numpy"
    """Library of the closed forms: numpy (LAPACK) or torch. torch runs EASE, L3AE and the
    collective and additive fusions on `device`; the other solvers always use NumPy."""
    device: str = "auto"
    """torch device of the torch backend: auto (CUDA when available, else CPU), cpu, cuda or
    cuda:N."""

    def __post_init__(self) -> None:
        if self.dtype not in ("float32", "float64"):
            raise ConfigError(f"compute.dtype must be float32 or float64, got {self.dtype!r}.")
        if self.backend not in ("numpy", "torch"):
            raise ConfigError(f"compute.backend must be numpy or torch, got {self.backend!r}.")
        if self.blas_threads is not None and self.blas_threads < 1:
            raise ConfigError(f"compute.blas_threads must be ≥ 1 or null, got {self.blas_threads}.")


@dataclass(frozen=True)
class TrackingConfig:
    """MLflow destination of the runs: experiment name and tracking URI."""

    experiment: str = "l3ae-bench"
    """MLflow experiment name."""
    uri: str | None = None
    """Tracking URI; null uses the SQLite store `mlruns/mlflow.db` under the project root."""


@dataclass(frozen=True)
class PathsConfig:
    """Absolute folders the job reads and writes."""

    root: str
    """Project root; `outputs/`, `multirun/`, `mlruns/` and `cache/` sit below it by default."""
    cache: str
    """Cache of downloads, processed splits and embeddings."""
    mlruns: str
    """Folder of the MLflow SQLite store and artifacts."""
