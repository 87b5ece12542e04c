"""Turning raw rating records into the implicit-feedback interactions that get split.

Every loader reads its files into a `RatingLog`: integer user and item codes over string id
vocabularies, with the rating and timestamp of each record. `filter_log` then applies the same
steps to every dataset, in this order, and logs the counts before and after each:

1. ratings of 0.0 follow `FilterConfig.zero_rating` (star ratings run from 1 to 5, so a 0.0
   marks a missing rating);
2. ratings below `FilterConfig.rating_threshold` are dropped;
3. repeated (user, item) pairs collapse into one interaction that keeps the earliest timestamp;
4. iterative k-core filtering removes users and items with too few interactions, pass after
   pass, until every remaining user and item meets its minimum (a fixed point).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from l3ae_bench.errors import ConfigError, DataError

log = logging.getLogger(__name__)

ZERO_RATING_RULES = ("keep", "drop", "error")


@dataclass(frozen=True)
class FilterConfig:
    """Rules that turn rating records into interactions."""

    rating_threshold: float | None = None
    """Keep ratings ≥ this value; null keeps every rating (implicit feedback)."""
    zero_rating: str = "drop"
    """Treatment of a rating of exactly 0.0: `drop` it as "no rating", `keep` it as an
    interaction, or raise an `error`. Applied before `rating_threshold`."""
    min_user_interactions: int = 0
    """k-core minimum of interactions per user; 0 or 1 keeps every user."""
    min_item_interactions: int = 0
    """k-core minimum of interactions per item; 0 or 1 keeps every item."""

    def __post_init__(self) -> None:
        if self.zero_rating not in ZERO_RATING_RULES:
            raise ConfigError(
                f"dataset.filter.zero_rating={self.zero_rating!r} is invalid; choose one of "
                f"{list(ZERO_RATING_RULES)}."
            )
        for name in ("min_user_interactions", "min_item_interactions"):
            if getattr(self, name) < 0:
                raise ConfigError(f"dataset.filter.{name} must be ≥ 0, got {getattr(self, name)}.")


@dataclass
class RatingLog:
    """Rating records as integer codes into user and item id vocabularies.

    Codes index `user_ids` and `item_ids`; not every vocabulary entry needs a record, and
    `compact` drops those that have none.
    """

    users: np.ndarray
    """User code of each record (int64)."""
    items: np.ndarray
    """Item code of each record (int64)."""
    ratings: np.ndarray
    """Rating of each record (float64); NaN where the source has none."""
    timestamps: np.ndarray
    """Timestamp of each record (float64, the source's unit); NaN where the source has none."""
    user_ids: np.ndarray
    """External user id of each user code (strings)."""
    item_ids: np.ndarray
    """External item id of each item code (strings)."""
    stats: dict[str, int] = field(default_factory=dict)
    """Counts recorded by each processing step, in order."""

    def __len__(self) -> int:
        return len(self.users)

    def select(self, mask: np.ndarray) -> RatingLog:
        """Return the records where `mask` is true, over the same vocabularies."""
        return RatingLog(
            self.users[mask],
            self.items[mask],
            self.ratings[mask],
            self.timestamps[mask],
            self.user_ids,
            self.item_ids,
            dict(self.stats),
        )

    def compact(self) -> RatingLog:
        """Renumber users and items so that codes are 0..n-1 in sorted id order, none unused."""
        user_codes, users = _recode(self.users, self.user_ids)
        item_codes, items = _recode(self.items, self.item_ids)
        return RatingLog(
            user_codes,
            item_codes,
            self.ratings,
            self.timestamps,
            users,
            items,
            dict(self.stats),
        )

    def counts(self) -> str:
        """Describe the number of records, users and items, for logs."""
        return (
            f"{len(self)} interactions, {len(np.unique(self.users))} users, "
            f"{len(np.unique(self.items))} items"
        )


def _recode(codes: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map used codes to 0..n-1 in the sort order of their ids."""
    used = np.unique(codes)
    order = np.argsort(ids[used], kind="stable")
    used = used[order]
    mapping = np.full(len(ids), -1, dtype=np.int64)
    mapping[used] = np.arange(len(used))
    return mapping[codes], np.asarray(ids[used])


def log_from_ids(
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    ratings: np.ndarray | None,
    timestamps: np.ndarray | None,
) -> RatingLog:
    """Build a `RatingLog` from per-record ids (strings or integers, kept as strings)."""
    users, user_vocab = _factorize(user_ids)
    items, item_vocab = _factorize(item_ids)
    n = len(users)
    return RatingLog(
        users,
        items,
        np.full(n, np.nan) if ratings is None else np.asarray(ratings, dtype=np.float64),
        np.full(n, np.nan) if timestamps is None else np.asarray(timestamps, dtype=np.float64),
        user_vocab,
        item_vocab,
    )


def _factorize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    codes, vocabulary = pd.factorize(np.asarray(values), sort=True)
    return codes.astype(np.int64), np.asarray(vocabulary).astype(str)


def filter_log(
    records: RatingLog, config: FilterConfig, source: str, prefix: str = "dataset.filter"
) -> RatingLog:
    """Apply the zero-rating rule, the rating threshold, pair de-duplication and the k-core.

    Raises `DataError` when a step leaves no interactions, naming the step and its setting
    (`prefix` is where the settings sit in the config, for messages).
    """
    stats = dict(records.stats)
    stats["records"] = len(records)
    log.info("%s: %s before filtering", source, records.counts())

    zero = records.ratings == 0.0
    n_zero = int(zero.sum())
    stats["zero_ratings"] = n_zero
    if n_zero and config.zero_rating == "error":
        raise DataError(
            f"{source}: {n_zero} records have a rating of 0.0. Set {prefix}.zero_rating "
            "to drop (treat 0.0 as no rating) or keep (count them as interactions)."
        )
    if n_zero and config.zero_rating == "drop":
        records = _step(records, ~zero, "zero ratings dropped", f"{prefix}.zero_rating", source)
    stats["after_zero_rating"] = len(records)

    if config.rating_threshold is not None:
        if np.isnan(records.ratings).all():
            raise ConfigError(
                f"{prefix}.rating_threshold={config.rating_threshold} needs ratings, but "
                f"{source} has none; set it to null."
            )
        keep = records.ratings >= config.rating_threshold
        setting = f"{prefix}.rating_threshold={config.rating_threshold}"
        records = _step(records, keep, f"ratings ≥ {config.rating_threshold}", setting, source)
    stats["after_rating_threshold"] = len(records)

    records = _dedupe_pairs(records)
    stats["after_pair_dedupe"] = len(records)
    log.info("%s: %s after collapsing repeated (user, item) pairs", source, records.counts())

    records, passes = k_core(
        records, config.min_user_interactions, config.min_item_interactions, source, prefix
    )
    stats["k_core_passes"] = passes
    stats["after_k_core"] = len(records)
    records = records.compact()
    stats["users"] = len(records.user_ids)
    stats["items"] = len(records.item_ids)
    records.stats = stats
    return records


def _step(records: RatingLog, keep: np.ndarray, what: str, setting: str, source: str):
    kept = records.select(keep)
    log.info("%s: %s: %d → %d records", source, what, len(records), len(kept))
    if not len(kept):
        raise DataError(
            f"{source}: no interactions are left after {what} ({setting}). Relax the setting."
        )
    return kept


def _dedupe_pairs(records: RatingLog) -> RatingLog:
    """Keep one record per (user, item) pair: the earliest, ties broken by record order."""
    timestamps = np.where(np.isnan(records.timestamps), np.inf, records.timestamps)
    order = np.lexsort((np.arange(len(records)), timestamps, records.items, records.users))
    users, items = records.users[order], records.items[order]
    first = np.r_[True, (users[1:] != users[:-1]) | (items[1:] != items[:-1])]
    keep = np.zeros(len(records), dtype=bool)
    keep[order[first]] = True
    return records.select(keep)


def k_core(
    records: RatingLog, min_user: int, min_item: int, source: str, prefix: str = "dataset.filter"
) -> tuple[RatingLog, int]:
    """Drop users and items below their minimum interaction counts until none is left.

    Each pass removes every user with fewer than `min_user` interactions and every item with
    fewer than `min_item`, counted on the records left by the previous pass. Removing an item
    can push a user below the minimum, so passes repeat until one removes nothing. Returns the
    filtered records and the number of passes. Raises `DataError` if nothing survives.
    """
    if min_user <= 1 and min_item <= 1:
        return records, 0
    users, items = records.users, records.items
    keep = np.ones(len(records), dtype=bool)
    passes = 0
    while True:
        passes += 1
        user_counts = np.bincount(users[keep], minlength=len(records.user_ids))
        item_counts = np.bincount(items[keep], minlength=len(records.item_ids))
        drop = keep & ((user_counts[users] < min_user) | (item_counts[items] < min_item))
        n_drop = int(drop.sum())
        keep &= ~drop
        log.debug("%s: k-core pass %d removed %d interactions", source, passes, n_drop)
        if not n_drop or not keep.any():
            break
    filtered = records.select(keep)
    log.info(
        "%s: k-core (users ≥ %d, items ≥ %d) reached a fixed point after %d passes: %s",
        source,
        min_user,
        min_item,
        passes,
        filtered.counts() if len(filtered) else "nothing left",
    )
    if not len(filtered):
        raise DataError(
            f"{source}: the k-core filter ({prefix}.min_user_interactions={min_user}, "
            f"{prefix}.min_item_interactions={min_item}) removes every interaction. "
            "Lower the minimums or use a larger dataset."
        )
    return filtered, passes


def drop_items(records: RatingLog, items: np.ndarray, config: FilterConfig, source: str):
    """Remove every record of the given item codes, then restore the k-core fixed point."""
    keep = ~np.isin(records.items, items)
    stats = dict(records.stats)
    records = records.select(keep)
    if not len(records):
        raise DataError(f"{source}: no interactions are left after dropping {len(items)} items.")
    records, passes = k_core(
        records, config.min_user_interactions, config.min_item_interactions, source
    )
    records = records.compact()
    stats["after_item_drop"] = len(records)
    stats["k_core_passes_after_item_drop"] = passes
    stats["users"] = len(records.user_ids)
    stats["items"] = len(records.item_ids)
    records.stats = stats
    return records
