"""RecBole atomic files (`.inter`, `.item`, `.user`): a reader and a dataset loader.

An atomic file is tab-separated text whose header names each column as `name:type`, with type
one of `token`, `token_seq`, `float` and `float_seq`. Ids stay strings; `token_seq` and
`float_seq` values are space-separated lists and are kept as the raw string by `read_atomic`.

`load_atomic` reads any dataset folder in RecBole's layout, ``<folder>/<dataset>.inter`` and
``<folder>/<dataset>.item``: interactions from the first, item texts from the fields of the
second (a `token_seq` field renders as its tokens joined by spaces).
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from l3ae_bench.data.assemble import MISSING_ITEM_RULES, assemble, render_texts
from l3ae_bench.data.digests import file_digests
from l3ae_bench.data.interactions import Interactions
from l3ae_bench.data.preprocess import (
    FilterConfig,
    RatingLog,
    drop_items,
    filter_log,
    log_from_ids,
)
from l3ae_bench.data.splits import SplitConfig
from l3ae_bench.data.store import load_or_build, split_cache_path
from l3ae_bench.errors import ConfigError, DataError
from l3ae_bench.text import TextTemplate, TokenSeq

log = logging.getLogger(__name__)

FIELD_TYPES = {"token", "token_seq", "float", "float_seq"}


def read_atomic(text: str, source: str) -> pd.DataFrame:
    """Parse an atomic file's text into a DataFrame with plain column names.

    `source` names the file in error messages. Token columns are strings and float columns are
    float64; a value that does not parse names its line and column.
    """
    return read_atomic_typed(text, source)[0]


def read_atomic_typed(text: str, source: str) -> tuple[pd.DataFrame, dict[str, str]]:
    """Parse an atomic file like `read_atomic` and also return each column's declared type."""
    lines = text.splitlines()
    if not lines:
        raise DataError(f"{source}: the file is empty; an atomic file needs a header line.")
    header = lines[0].split("\t")
    names, types = [], []
    for column, header_field in enumerate(header, start=1):
        name, separator, field_type = header_field.strip().rpartition(":")
        if not separator or not name or field_type not in FIELD_TYPES:
            raise DataError(
                f"{source}, line 1, column {column}: invalid header field {header_field!r} in "
                f"header {lines[0]!r}. Each field must read name:type with type one of "
                f"{sorted(FIELD_TYPES)}, separated by tabs."
            )
        if name in names:
            raise DataError(
                f"{source}, line 1, column {column}: the field name {name!r} repeats in header "
                f"{lines[0]!r}; each column needs its own name."
            )
        names.append(name)
        types.append(field_type)

    rows = csv.reader(io.StringIO("\n".join(lines[1:])), delimiter="\t", quoting=csv.QUOTE_NONE)
    columns: list[list] = [[] for _ in names]
    for line_number, row in enumerate(rows, start=2):
        if not row:
            continue
        if len(row) != len(names):
            raise DataError(
                f"{source}, line {line_number}: expected {len(names)} tab-separated fields "
                f"({', '.join(header)}), found {len(row)}."
            )
        for column, (value, field_type) in enumerate(zip(row, types, strict=True)):
            if field_type == "float":
                try:
                    columns[column].append(float(value) if value != "" else float("nan"))
                except ValueError as error:
                    raise DataError(
                        f"{source}, line {line_number}, column {column + 1} "
                        f"({names[column]}): {value!r} is not a number."
                    ) from error
            else:
                columns[column].append(value)
    frame = pd.DataFrame(
        {
            name: pd.Series(values, dtype=object if kind != "float" else float)
            for name, values, kind in zip(names, columns, types, strict=True)
        }
    )
    return frame, dict(zip(names, types, strict=True))


@dataclass(frozen=True)
class AtomicConfig:
    """Settings of a dataset folder in RecBole's atomic-file layout."""

    name: str
    """Dataset name, used in run names and cache keys."""
    path: str
    """Folder that contains <dataset>.inter and <dataset>.item."""
    dataset: str | None = None
    """Base name of the atomic files; null uses the folder's name, as RecBole does."""
    user_field: str = "user_id"
    """Column of the .inter file with the user id."""
    item_field: str = "item_id"
    """Column of the .inter and .item files with the item id."""
    rating_field: str | None = "rating"
    """Column of the .inter file with the rating; null when the file has none."""
    timestamp_field: str | None = "timestamp"
    """Column of the .inter file with the timestamp; null when the file has none."""
    text_template: str | None = None
    """Item text built from .item fields (see `l3ae_bench.text`); null lists every field as
    "name: value."."""
    items_without_metadata: str = "error"
    """Items of the .inter file without a .item row: raise an error, drop them (and restore
    the k-core), or keep them with an empty text."""
    filter: FilterConfig = field(default_factory=FilterConfig)
    """Rating rules and k-core minimums."""
    split: SplitConfig = field(default_factory=SplitConfig)
    """Split method, ratios, seed and cold-start options."""

    def __post_init__(self) -> None:
        if self.items_without_metadata not in MISSING_ITEM_RULES:
            raise ConfigError(
                f"dataset.items_without_metadata={self.items_without_metadata!r} is invalid; "
                f"choose one of {list(MISSING_ITEM_RULES)}."
            )
        if self.text_template is not None:
            TextTemplate(self.text_template)


def load_atomic(config: AtomicConfig, cache_dir: Path) -> Interactions:
    """Return the folder's splits, from the processed cache when the same inputs ran before."""
    folder = Path(config.path).expanduser()
    if not folder.is_dir():
        raise DataError(
            f"Dataset folder not found: {folder} (dataset.path). Point it at a folder with the "
            "RecBole atomic files <dataset>.inter and <dataset>.item."
        )
    base = config.dataset or folder.name
    inter_path, item_path = folder / f"{base}.inter", folder / f"{base}.item"
    for path in (inter_path, item_path):
        if not path.is_file():
            raise DataError(
                f"File not found: {path}. Set dataset.dataset to the base name of the atomic "
                "files in dataset.path; the .inter file contains the interactions and the .item "
                "file the item fields for the texts."
            )
    sources = {p.name: file_digests(p, cache_dir)["sha256"] for p in (inter_path, item_path)}
    path = split_cache_path(cache_dir, config.name, sources, config, ("path",))
    return load_or_build(path, lambda: _build(config, inter_path, item_path))


def _read_file(path: Path) -> tuple[pd.DataFrame, dict[str, str]]:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise DataError(
            f"{path}, line {line}: invalid UTF-8 ({error.reason}). Atomic files are UTF-8; "
            "convert the file, for example with iconv -f latin1 -t utf-8."
        ) from error
    return read_atomic_typed(text, str(path))


def _require(path: Path, types: dict[str, str], fields: dict[str, str | None]) -> None:
    for setting, name in fields.items():
        if name is not None and name not in types:
            raise DataError(
                f"{path}: the header has no field {name!r} (dataset.{setting}); its fields are "
                f"{list(types)}. Set dataset.{setting} to one of them"
                + (", or null." if setting in ("rating_field", "timestamp_field") else ".")
            )


def _build(config: AtomicConfig, inter_path: Path, item_path: Path) -> Interactions:
    inter, inter_types = _read_file(inter_path)
    _require(
        inter_path,
        inter_types,
        {
            "user_field": config.user_field,
            "item_field": config.item_field,
            "rating_field": config.rating_field,
            "timestamp_field": config.timestamp_field,
        },
    )
    for setting in ("rating_field", "timestamp_field"):
        name = getattr(config, setting)
        if name is not None and inter_types[name] != "float":
            raise DataError(
                f"{inter_path}: dataset.{setting}={name!r} is declared {inter_types[name]}, but "
                "must be a float field."
            )
    records = log_from_ids(
        inter[config.user_field].to_numpy(),
        inter[config.item_field].to_numpy(),
        inter[config.rating_field].to_numpy() if config.rating_field else None,
        inter[config.timestamp_field].to_numpy() if config.timestamp_field else None,
    )
    records = filter_log(records, config.filter, str(inter_path))

    items, item_types = _read_file(item_path)
    _require(item_path, item_types, {"item_field": config.item_field})
    fields = _item_fields(items, item_types, config.item_field)
    template = _template(config, item_types)
    missing = np.array(
        [code for code, item in enumerate(records.item_ids) if item not in fields], dtype=np.int64
    )
    records.stats["items_without_metadata"] = len(missing)
    if len(missing):
        records = _handle_missing(records, missing, config, item_path)
    texts = render_texts(
        template, records.item_ids, lambda item: fields.get(item, {}), str(item_path), records.stats
    )
    return assemble(config.name, records, texts, config.split, str(inter_path))


def _item_fields(
    items: pd.DataFrame, types: dict[str, str], item_field: str
) -> dict[str, dict[str, Any]]:
    """Return each item's fields, with token_seq and float_seq values as token lists."""
    fields: dict[str, dict[str, Any]] = {}
    columns = [name for name in items.columns if name != item_field]
    for row in items.to_dict("records"):
        item = row[item_field]
        if item in fields:
            continue
        fields[item] = {
            name: TokenSeq(row[name].split()) if types[name].endswith("_seq") else row[name]
            for name in columns
        }
    return fields


def _template(config: AtomicConfig, item_types: dict[str, str]) -> TextTemplate:
    names = [name for name in item_types if name != config.item_field]
    if config.text_template is None:
        return TextTemplate("".join(f"[{name}: {{{name}}}. ]" for name in names))
    template = TextTemplate(config.text_template)
    template.check_fields(names)
    return template


def _handle_missing(
    records: RatingLog, missing: np.ndarray, config: AtomicConfig, item_path: Path
) -> RatingLog:
    examples = [str(records.item_ids[code]) for code in missing[:5]]
    message = f"{item_path}: {len(missing)} items of the .inter file have no row, e.g. {examples}"
    if config.items_without_metadata == "error":
        raise DataError(
            f"{message}. Add their rows, or set dataset.items_without_metadata to drop or keep."
        )
    action = "dropping" if config.items_without_metadata == "drop" else "keeping"
    log.warning("%s; %s them (dataset.items_without_metadata)", message, action)
    if config.items_without_metadata == "drop":
        records = drop_items(records, missing, config.filter, str(item_path))
    return records
