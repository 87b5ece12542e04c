"""Amazon Reviews 2023 (McAuley Lab, UCSD) by category, from its JSON Lines files.

Each category has two files, as published at https://amazon-reviews-2023.github.io/:

- ``raw/review_categories/<Category>.jsonl.gz``, one review per line with ``rating``,
  ``title``, ``text``, ``images``, ``asin``, ``parent_asin``, ``user_id``, ``timestamp`` (in
  milliseconds), ``helpful_vote`` and ``verified_purchase``;
- ``raw/meta_categories/meta_<Category>.jsonl.gz``, one product per line with
  ``main_category``, ``title``, ``average_rating``, ``rating_number``, ``features``,
  ``description``, ``price``, ``images``, ``videos``, ``store``, ``categories``, ``details``,
  ``parent_asin`` and ``bought_together`` (Books adds ``subtitle`` and ``author``).

The files are downloaded from `base_url` or read from local paths, gzip-compressed or plain.

Items are keyed by ``parent_asin``, so the variants of one product (colors, sizes, editions,
each with its own ``asin``) are one item. The loader then removes exact duplicate review lines,
applies the rating rules and the iterative k-core (`preprocess.filter_log`), reads metadata
only for the items that survive, and renders each item's text through `text_template`.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from l3ae_bench.data.assemble import MISSING_ITEM_RULES, assemble, render_texts
from l3ae_bench.data.digests import file_digests
from l3ae_bench.data.download import DownloadConfig, check_checksum, fetch
from l3ae_bench.data.interactions import Interactions
from l3ae_bench.data.jsonl import iter_lines, parse_line
from l3ae_bench.data.preprocess import FilterConfig, RatingLog, drop_items, filter_log
from l3ae_bench.data.splits import SplitConfig
from l3ae_bench.data.store import load_or_build, split_cache_path
from l3ae_bench.errors import ConfigError, DataError
from l3ae_bench.text import TextTemplate

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_2023/raw"
META_FIELDS = (
    "main_category",
    "title",
    "subtitle",
    "author",
    "features",
    "description",
    "categories",
    "store",
    "details",
    "price",
    "average_rating",
    "rating_number",
    "parent_asin",
)
DEFAULT_TEMPLATE = (
    "[{title}.][ Features: {features:; }.][ Description: {description: }.]"
    "[ Categories: {categories: > }.][ Store: {store}.]"
)
_CATEGORY = re.compile(r"^[A-Za-z0-9_]+$")


@dataclass(frozen=True)
class AmazonReviews2023Config:
    """Settings of one Amazon Reviews 2023 category."""

    name: str
    """Dataset name, used in run names and cache keys."""
    category: str
    """Category file name, such as Video_Games, Toys_and_Games or Books."""
    base_url: str = DEFAULT_BASE_URL
    """URL of the dataset's raw folder; files are <base_url>/review_categories/<category>.jsonl.gz
    and <base_url>/meta_categories/meta_<category>.jsonl.gz."""
    reviews_path: str | None = None
    """Local review file (.jsonl or .jsonl.gz); null downloads it."""
    meta_path: str | None = None
    """Local metadata file (.jsonl or .jsonl.gz); null downloads it."""
    reviews_checksum: str | None = None
    """Checksum of the downloaded review file (sha256:<hex> or md5:<hex>); null skips the check
    and logs the SHA-256 to pin."""
    meta_checksum: str | None = None
    """Checksum of the downloaded metadata file, as `reviews_checksum`."""
    text_template: str = DEFAULT_TEMPLATE
    """Item text built from metadata fields; see `l3ae_bench.text` for the syntax."""
    items_without_metadata: str = "drop"
    """Items that have reviews but no metadata line: drop them (and restore the k-core), keep
    them with an empty text, or raise an error."""
    filter: FilterConfig = field(
        default_factory=lambda: FilterConfig(min_user_interactions=5, min_item_interactions=5)
    )
    """Rating rules and k-core minimums."""
    split: SplitConfig = field(default_factory=SplitConfig)
    """Split method, ratios, seed and cold-start options."""
    download: DownloadConfig = field(default_factory=DownloadConfig)
    """Retry, timeout and progress-bar settings of the downloads."""

    def __post_init__(self) -> None:
        if not _CATEGORY.match(self.category):
            raise ConfigError(
                f"dataset.category={self.category!r} is not a category file name; use the "
                "name as in the dataset's file list, such as Video_Games or Toys_and_Games."
            )
        if self.items_without_metadata not in MISSING_ITEM_RULES:
            raise ConfigError(
                f"dataset.items_without_metadata={self.items_without_metadata!r} is invalid; "
                f"choose one of {list(MISSING_ITEM_RULES)}."
            )
        check_checksum(self.reviews_checksum, "dataset.reviews_checksum")
        check_checksum(self.meta_checksum, "dataset.meta_checksum")
        TextTemplate(self.text_template).check_fields(list(META_FIELDS))


def load_amazon_reviews_2023(config: AmazonReviews2023Config, cache_dir: Path) -> Interactions:
    """Return the category's splits, from the processed cache when the same inputs ran before."""
    reviews = _resolve(config, cache_dir, "reviews")
    meta = _resolve(config, cache_dir, "meta")
    sources = {
        "reviews": file_digests(reviews, cache_dir)["sha256"],
        "meta": file_digests(meta, cache_dir)["sha256"],
    }
    # The file digests cover the content, so where the files came from does not matter.
    exclude = ("reviews_path", "meta_path", "base_url", "download")
    path = split_cache_path(cache_dir, config.name, sources, config, exclude)
    return load_or_build(path, lambda: _build(config, reviews, meta))


def _resolve(config: AmazonReviews2023Config, cache_dir: Path, kind: str) -> Path:
    """Return the local review or metadata file, downloading it when no path is set."""
    local = config.reviews_path if kind == "reviews" else config.meta_path
    if local:
        path = Path(local).expanduser()
        if not path.is_file():
            raise DataError(
                f"Amazon {kind} file not found: {path} (dataset.{kind}_path). Point it at the "
                f"category's .jsonl or .jsonl.gz file, or set it to null to download it."
            )
        return path
    if kind == "reviews":
        url = f"{config.base_url.rstrip('/')}/review_categories/{config.category}.jsonl.gz"
        checksum = config.reviews_checksum
    else:
        url = f"{config.base_url.rstrip('/')}/meta_categories/meta_{config.category}.jsonl.gz"
        checksum = config.meta_checksum
    return fetch(
        url, cache_dir, "amazon-2023", checksum, config.download, f"dataset.{kind}_checksum"
    )


def _build(config: AmazonReviews2023Config, reviews: Path, meta: Path) -> Interactions:
    records = read_reviews(reviews)
    records = filter_log(records, config.filter, str(reviews))

    started = time.perf_counter()
    needed = {str(item): index for index, item in enumerate(records.item_ids)}
    metadata, meta_stats = read_metadata(meta, needed)
    records.stats.update(meta_stats)
    missing = np.array([index for item, index in needed.items() if item not in metadata])
    records.stats["items_without_metadata"] = len(missing)
    log.info(
        "%s: metadata for %d of %d items in %.1fs",
        meta,
        len(metadata),
        len(needed),
        time.perf_counter() - started,
    )
    if len(missing):
        records = _handle_missing(records, missing, config, meta)

    template = TextTemplate(config.text_template)
    texts = render_texts(
        template, records.item_ids, lambda item: metadata.get(item, {}), str(meta), records.stats
    )
    return assemble(config.name, records, texts, config.split, str(reviews))


def _handle_missing(
    records: RatingLog, missing: np.ndarray, config: AmazonReviews2023Config, meta: Path
) -> RatingLog:
    examples = [str(records.item_ids[index]) for index in missing[:5]]
    if config.items_without_metadata == "error":
        raise DataError(
            f"{meta}: {len(missing)} reviewed items have no metadata line, for example "
            f"{examples}. Set dataset.items_without_metadata to drop or keep."
        )
    log.warning(
        "%s: %d reviewed items have no metadata line (for example %s); %s them "
        "(dataset.items_without_metadata)",
        meta,
        len(missing),
        examples,
        "dropping" if config.items_without_metadata == "drop" else "keeping",
    )
    if config.items_without_metadata == "drop":
        records = drop_items(records, missing, config.filter, str(meta))
    return records


def read_reviews(path: Path) -> RatingLog:
    """Read a review file into a `RatingLog` keyed by parent_asin, without duplicate lines.

    A line is a duplicate when its bytes equal an earlier line's, leading and trailing white
    space aside. Duplicates are skipped and counted in the stats as `duplicate_reviews`.
    Raises `DataError` naming the file and line of a malformed review.
    """
    started = time.perf_counter()
    user_codes: dict[str, int] = {}
    item_codes: dict[str, int] = {}
    # Typed arrays hold 8 bytes per value, a fifth of a list of Python numbers.
    users, items, digests = array("q"), array("q"), array("Q")
    ratings, timestamps = array("d"), array("d")
    n_lines = 0
    for line_number, line in iter_lines(path):
        line = line.strip()
        if not line:
            continue
        n_lines += 1
        record = parse_line(line, path, line_number)
        user, item, rating, timestamp = _review_fields(record, path, line_number)
        users.append(user_codes.setdefault(user, len(user_codes)))
        items.append(item_codes.setdefault(item, len(item_codes)))
        ratings.append(rating)
        timestamps.append(timestamp)
        digests.append(int.from_bytes(hashlib.blake2b(line, digest_size=8).digest(), "little"))
    if not n_lines:
        raise DataError(f"{path}: the review file has no reviews.")

    records = RatingLog(
        np.frombuffer(users, dtype=np.int64),
        np.frombuffer(items, dtype=np.int64),
        np.frombuffer(ratings, dtype=np.float64),
        np.frombuffer(timestamps, dtype=np.float64),
        np.asarray(list(user_codes), dtype=str),
        np.asarray(list(item_codes), dtype=str),
    )
    unique = _first_occurrences(records, np.frombuffer(digests, dtype=np.uint64))
    records = records.select(unique)
    records.stats = {"review_lines": n_lines, "duplicate_reviews": n_lines - len(records)}
    log.info(
        "%s: read %d review lines in %.1fs; %d exact duplicates removed; %s",
        path,
        n_lines,
        time.perf_counter() - started,
        n_lines - len(records),
        records.counts(),
    )
    return records


def _review_fields(record: dict, path: Path, line_number: int) -> tuple[str, str, float, float]:
    """Return user id, parent_asin, rating and timestamp of one review, checking their types."""
    values = []
    for key in ("user_id", "parent_asin"):
        value = record.get(key)
        if not isinstance(value, str) or not value:
            raise DataError(
                f"{path}, line {line_number}: the review has no {key} (found {value!r}); every "
                "review of Amazon Reviews 2023 needs user_id, parent_asin, rating and timestamp."
            )
        values.append(value)
    numbers = []
    for key in ("rating", "timestamp"):
        value = record.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise DataError(f"{path}, line {line_number}: {key} must be a number, found {value!r}.")
        numbers.append(float(value))
    return values[0], values[1], numbers[0], numbers[1]


def _first_occurrences(records: RatingLog, digests: np.ndarray) -> np.ndarray:
    """Return a mask of the first record of each (user, item, line digest) triple."""
    order = np.lexsort((np.arange(len(records)), digests, records.items, records.users))
    u, i, d = records.users[order], records.items[order], digests[order]
    first = np.r_[True, (u[1:] != u[:-1]) | (i[1:] != i[:-1]) | (d[1:] != d[:-1])]
    keep = np.zeros(len(records), dtype=bool)
    keep[order[first]] = True
    return keep


_PARENT_ASIN = re.compile(rb'"parent_asin":\s*"([^"\\]+)"')


def read_metadata(path: Path, needed: dict[str, int]) -> tuple[dict[str, dict], dict[str, int]]:
    """Read the metadata lines of the `needed` parent_asins; return fields by id and counts.

    Lines of other items are skipped before JSON parsing when their parent_asin can be read
    from the raw bytes. A repeated parent_asin keeps its first line and is counted.
    """
    metadata: dict[str, dict] = {}
    n_lines = duplicates = 0
    for line_number, line in iter_lines(path):
        if not line.strip():
            continue
        n_lines += 1
        match = _PARENT_ASIN.search(line)
        if match and match.group(1).decode("utf-8", "replace") not in needed:
            continue
        record = parse_line(line, path, line_number)
        item = record.get("parent_asin")
        if not isinstance(item, str) or not item:
            raise DataError(
                f"{path}, line {line_number}: the metadata line has no parent_asin (found "
                f"{item!r}); every product line of Amazon Reviews 2023 needs one."
            )
        if item not in needed:
            continue
        if item in metadata:
            duplicates += 1
            continue
        metadata[item] = {key: record.get(key) for key in META_FIELDS}
    if not n_lines:
        raise DataError(f"{path}: the metadata file has no lines.")
    return metadata, {"meta_lines": n_lines, "duplicate_meta_lines": duplicates}
