"""Content digests of source files, remembered by path, size and modification time.

Raw dataset files run to gigabytes, and hashing them on every run would cost more than reading
the processed split from the cache. `file_digests` stores each file's SHA-256 and MD5 in
``<cache>/file-digests.json`` and hashes a file again only when its size or modification time
changed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

from l3ae_bench.cache import atomic_write

log = logging.getLogger(__name__)

MEMO_FILE = "file-digests.json"
ALGORITHMS = ("sha256", "md5")


def file_digests(path: Path, cache_dir: Path | None) -> dict[str, str]:
    """Return {"sha256": ..., "md5": ...} of a file, from the memo when it is still valid."""
    path = path.resolve()
    stat = path.stat()
    key = str(path)
    memo_path = cache_dir / MEMO_FILE if cache_dir is not None else None
    memo = _read_memo(memo_path)
    entry = memo.get(key)
    if entry and entry.get("size") == stat.st_size and entry.get("mtime_ns") == stat.st_mtime_ns:
        return {name: entry[name] for name in ALGORITHMS}

    started = time.perf_counter()
    hashers = {name: hashlib.new(name) for name in ALGORITHMS}
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            for hasher in hashers.values():
                hasher.update(chunk)
    digests = {name: hasher.hexdigest() for name, hasher in hashers.items()}
    log.debug("Hashed %s (%d bytes) in %.1fs", path, stat.st_size, time.perf_counter() - started)
    if memo_path is not None:
        memo = _read_memo(memo_path)
        memo[key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, **digests}
        with atomic_write(memo_path, "w") as handle:
            json.dump(memo, handle, indent=1, sort_keys=True)
    return digests


def matches_checksum(path: Path, checksum: str, cache_dir: Path | None) -> bool:
    """Tell whether a file matches ``sha256:<hex>``, ``md5:<hex>`` or a bare SHA-256."""
    algorithm, _, expected = checksum.rpartition(":")
    algorithm = algorithm.lower() or "sha256"
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unsupported checksum algorithm {algorithm!r}")
    return file_digests(path, cache_dir)[algorithm] == expected.lower()


def _read_memo(path: Path | None) -> dict:
    if path is None or not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        log.warning("Ignoring unreadable digest memo %s; files will be hashed again", path)
        return {}
