"""Dataset formats by name: the `format` key of a `conf/dataset/*.yaml` file picks the loader."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from l3ae_bench.config import build
from l3ae_bench.data.amazon import AmazonReviews2023Config, load_amazon_reviews_2023
from l3ae_bench.data.atomic import AtomicConfig, load_atomic
from l3ae_bench.data.grouplens import MovieLensConfig, load_movielens
from l3ae_bench.data.interactions import Interactions
from l3ae_bench.data.movielens import MovieLensRecBoleConfig, load_movielens_recbole
from l3ae_bench.data.paper_layout import PaperLayoutConfig, load_paper_layout
from l3ae_bench.errors import ConfigError


@dataclass(frozen=True)
class DatasetFormat:
    """A loader and the typed config it takes."""

    config_class: type
    load: Callable[[Any, Path], Interactions]


FORMATS: dict[str, DatasetFormat] = {
    "recbole-ml-100k": DatasetFormat(MovieLensRecBoleConfig, load_movielens_recbole),
    "paper": DatasetFormat(PaperLayoutConfig, lambda config, _cache: load_paper_layout(config)),
    "amazon-reviews-2023": DatasetFormat(AmazonReviews2023Config, load_amazon_reviews_2023),
    "movielens": DatasetFormat(MovieLensConfig, load_movielens),
    "atomic": DatasetFormat(AtomicConfig, load_atomic),
}


def parse_dataset_config(values: dict[str, Any]) -> tuple[str, Any]:
    """Split the `format` key off the dataset settings and build the loader's typed config."""
    values = dict(values)
    name = values.pop("format", None)
    if name not in FORMATS:
        raise ConfigError(
            f"dataset.format={name!r} is not a known format; choose one of {sorted(FORMATS)}."
        )
    return name, build(FORMATS[name].config_class, values, "dataset")


def load_dataset(format_name: str, config: Any, cache_dir: Path) -> Interactions:
    """Load the dataset described by a typed config."""
    return FORMATS[format_name].load(config, cache_dir)
