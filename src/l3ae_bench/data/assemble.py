"""The last loader steps shared by every raw format: item texts, the split, `Interactions`."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from l3ae_bench.data.interactions import Interactions, validate_splits
from l3ae_bench.data.preprocess import RatingLog
from l3ae_bench.data.splits import SplitConfig, split_log
from l3ae_bench.text import TextTemplate

log = logging.getLogger(__name__)

MISSING_ITEM_RULES = ("drop", "keep", "error")


def render_texts(
    template: TextTemplate,
    item_ids: np.ndarray,
    fields_of: Callable[[str], Mapping[str, Any]],
    source: str,
    stats: dict[str, int],
) -> list[str]:
    """Render the text of each item id in order, counting the empty ones in `stats`.

    An empty text is not an error here; the encoder decides what an item without text gets.
    """
    texts = [template.render(fields_of(str(item))) for item in item_ids]
    empty = [str(item) for item, text in zip(item_ids, texts, strict=True) if not text]
    stats["empty_texts"] = len(empty)
    if empty:
        log.warning(
            "%s: %d of %d items have an empty text with template %r, for example %s",
            source,
            len(empty),
            len(texts),
            template.template,
            empty[:5],
        )
    return texts


def assemble(
    name: str,
    records: RatingLog,
    item_texts: list[str],
    split: SplitConfig,
    source: str,
) -> Interactions:
    """Split filtered, compacted records and wrap them with their ids and texts."""
    train, val, test = split_log(records, split, source)
    validate_splits(train, val, test, source)
    data = Interactions(
        name=name,
        train=train,
        val=val,
        test=test,
        user_ids=np.asarray(records.user_ids, dtype=str),
        item_ids=np.asarray(records.item_ids, dtype=str),
        item_texts=item_texts,
        stats=dict(records.stats),
    )
    data.stats.update({f"split_{key}": value for key, value in data.summary().items()})
    log.info("%s: split %s: %s", source, split.method, data.summary())
    return data
