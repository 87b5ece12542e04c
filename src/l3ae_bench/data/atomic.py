"""Reader for RecBole atomic files (`.inter`, `.item`, `.user`).

An atomic file is tab-separated text whose header names each column as `name:type`, with type
one of `token`, `token_seq`, `float` and `float_seq`. Ids stay strings; `token_seq` and
`float_seq` values are space-separated lists and are kept as the raw string here.
"""

from __future__ import annotations

import csv
import io

import pandas as pd

from l3ae_bench.errors import DataError

FIELD_TYPES = {"token", "token_seq", "float", "float_seq"}


def read_atomic(text: str, source: str) -> pd.DataFrame:
    """Parse an atomic file's text into a DataFrame with plain column names.

    `source` names the file in error messages. Token columns are strings and float columns are
    float64; a value that does not parse names its line and column.
    """
    lines = text.splitlines()
    if not lines:
        raise DataError(f"{source}: the file is empty; an atomic file needs a header line.")
    header = lines[0].split("\t")
    names, types = [], []
    for column, field in enumerate(header, start=1):
        name, separator, field_type = field.strip().rpartition(":")
        if not separator or not name or field_type not in FIELD_TYPES:
            raise DataError(
                f"{source}, line 1, column {column}: invalid header field {field!r} in header "
                f"{lines[0]!r}. Each field must read name:type with type one of "
                f"{sorted(FIELD_TYPES)}, separated by tabs."
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
    return pd.DataFrame(dict(zip(names, columns, strict=True)))
