"""Reading JSON Lines files, gzip-compressed or plain, with errors that name file and line."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from l3ae_bench.errors import DataError

GZIP_MAGIC = b"\x1f\x8b"


def iter_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """Yield (line number, raw line) of a file, decompressing it when it starts as gzip.

    A truncated or corrupt gzip stream (its CRC or length trailer does not match) raises
    `DataError` once reading reaches the damage.
    """
    if not path.is_file():
        raise DataError(f"File not found: {path}. Check the dataset's path settings.")
    with open(path, "rb") as probe:
        compressed = probe.read(2) == GZIP_MAGIC
    opener = gzip.open if compressed else open
    line_number = 0
    try:
        with opener(path, "rb") as handle:
            for line_number, line in enumerate(handle, start=1):  # noqa: B007
                yield line_number, line
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as error:
        raise DataError(
            f"{path}: the file is truncated or corrupt after line {line_number} ({error}). "
            "Delete it and download it again."
        ) from error


def parse_line(line: bytes, path: Path, line_number: int) -> dict[str, Any]:
    """Parse one JSON object, raising `DataError` with the file and line when it is invalid."""
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(
            f"{path}, line {line_number}: invalid JSON ({error}). The file is damaged or not "
            "in JSON Lines format; fix or delete that line, or download the file again."
        ) from error
    if not isinstance(record, dict):
        raise DataError(
            f"{path}, line {line_number}: expected a JSON object, got {type(record).__name__}."
        )
    return record
