"""Bag-of-words item features for the word-count fusions (Collective and Additive EASE).

Each item text becomes a binary (multi-hot) column over a vocabulary. Its words are lowercase
runs of letters and digits, at least two characters long, other than English stop words. A
word is kept when it occurs in at least `min_items` items and in at most `max_item_fraction`
of them. Words of a single item link it to no other item, and words in most items link all of
them, so both are dropped.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from l3ae_bench.errors import SolverError

log = logging.getLogger(__name__)

TOKEN = re.compile(r"[a-z0-9]{2,}")

STOP_WORDS = frozenset(
    """
    about above after again against all also am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how if in into is it
    its itself just me more most my myself no nor not now of off on once only or other our
    ours ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we
    were what when where which while who whom why will with would you your yours yourself
    yourselves
    """.split()
)


def tokenize(text: str) -> set[str]:
    """Return the distinct words of `text`: lowercase letter-digit runs minus stop words."""
    return {token for token in TOKEN.findall(text.lower()) if token not in STOP_WORDS}


def bag_of_words(
    texts: Sequence[str], min_items: int = 2, max_item_fraction: float = 0.5
) -> sp.csr_matrix:
    """Return the binary word × item matrix F (float32 CSR) of the item texts."""
    started = time.perf_counter()
    vocabulary: dict[str, int] = {}
    rows: list[int] = []
    columns: list[int] = []
    for item, text in enumerate(texts):
        for word in tokenize(text):
            rows.append(vocabulary.setdefault(word, len(vocabulary)))
            columns.append(item)
    counts = np.bincount(np.asarray(rows, dtype=np.int64), minlength=len(vocabulary))
    keep = (counts >= min_items) & (counts <= max_item_fraction * len(texts))
    if not keep.any():
        raise SolverError(
            f"The {len(texts)} item texts share no word that occurs in at least {min_items} "
            f"items and in at most {max_item_fraction:.0%} of them, so the bag-of-words "
            "matrix would be empty. Check the dataset's item texts."
        )
    new_row = np.cumsum(keep) - 1
    rows_array = np.asarray(rows, dtype=np.int64)
    kept = keep[rows_array]
    F = sp.csr_matrix(
        (
            np.ones(int(kept.sum()), dtype=np.float32),
            (new_row[rows_array[kept]], np.asarray(columns, dtype=np.int64)[kept]),
        ),
        shape=(int(keep.sum()), len(texts)),
    )
    log.info(
        "Bag of words: %d words over %d items (%d entries) in %.2fs",
        F.shape[0],
        F.shape[1],
        F.nnz,
        time.perf_counter() - started,
    )
    return F
