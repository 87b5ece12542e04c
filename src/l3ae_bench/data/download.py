"""Downloads of raw dataset files through pooch, with resume, a size check and a progress bar.

`fetch` keeps each file under ``<cache>/downloads/<subfolder>/<file name>``. pooch writes the
download to a temporary file, compares its hash with the configured checksum (when one is given),
and moves it into place only when it matches, so a cached file is always complete. On top of
pooch, `ResumingDownloader` keeps the bytes received so far in a ``.part`` file, and the next
attempt requests the rest with an HTTP Range header. When a server ignores Range, the download
starts again from the beginning. A response shorter than its Content-Length is an
error, so a truncated transfer is never taken for the whole file.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pooch
import requests
from tqdm.auto import tqdm

from l3ae_bench.data.digests import file_digests, matches_checksum
from l3ae_bench.errors import ConfigError, DataError

log = logging.getLogger(__name__)

# A read cut short by a closed connection loses the bytes of its chunk, so chunks stay small.
CHUNK_SIZE = 1 << 16


@dataclass(frozen=True)
class DownloadConfig:
    """Retry, timeout and progress-bar settings of HTTP downloads."""

    retries: int = 3
    """Further attempts after a failed or corrupt download; each resumes the partial file."""
    timeout_s: float = 60.0
    """Seconds to wait for the server to connect or send the next bytes."""
    progress: bool = True
    """Show a progress bar on stderr while downloading."""


class IncompleteDownloadError(requests.exceptions.RequestException):
    """The server closed the response before sending every byte it announced."""


class ResumingDownloader:
    """A pooch downloader that resumes from a partial file with an HTTP Range request.

    The partial file ``<target>.part`` and its validator ``<target>.part.json`` (the URL, ETag
    or Last-Modified) sit beside the final file. A resumed request carries If-Range, so a server
    whose file changed in between sends the whole new file instead of the rest of the old one.
    """

    def __init__(self, target: Path, config: DownloadConfig) -> None:
        self.part = target.with_name(target.name + ".part")
        self.state = target.with_name(target.name + ".part.json")
        self.config = config

    def __call__(
        self, url: str, output_file: Any, pooch_object: Any, check_only: bool = False
    ) -> bool | None:
        if check_only:
            response = requests.head(url, allow_redirects=True, timeout=self.config.timeout_s)
            return response.status_code == 200
        offset, headers = self._resume_headers(url)
        with requests.get(
            url, headers=headers, stream=True, timeout=self.config.timeout_s
        ) as response:
            if response.status_code == 416:
                log.info("Server rejected the resume range for %s; restarting", url)
                self._discard()
                return self(url, output_file, pooch_object)
            response.raise_for_status()
            offset = self._check_offset(response, offset, url)
            total = _expected_size(response, offset)
            self._save_state(url, response)
            self._stream(response, offset, total, url)
        os.replace(self.part, output_file)
        self.state.unlink(missing_ok=True)
        return None

    def _resume_headers(self, url: str) -> tuple[int, dict[str, str]]:
        """Return the byte offset to resume from and the request headers that ask for it."""
        if not self.part.is_file():
            return 0, {}
        try:
            state = json.loads(self.state.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            state = {}
        validator = state.get("etag") or state.get("last_modified")
        offset = self.part.stat().st_size
        if state.get("url") != url or not validator or offset == 0:
            self._discard()
            return 0, {}
        log.info("Resuming download of %s from byte %d", url, offset)
        return offset, {"Range": f"bytes={offset}-", "If-Range": validator}

    def _check_offset(self, response: requests.Response, offset: int, url: str) -> int:
        """Return where the response body starts: `offset` for a 206 reply, else 0."""
        if offset and response.status_code == 206:
            content_range = response.headers.get("Content-Range", "")
            if content_range.startswith(f"bytes {offset}-"):
                return offset
            log.info("Unexpected Content-Range %r for %s; restarting", content_range, url)
        elif offset:
            log.info("Server sent the whole file of %s instead of a range; restarting", url)
        self.part.unlink(missing_ok=True)
        return 0

    def _save_state(self, url: str, response: requests.Response) -> None:
        state = {
            "url": url,
            "etag": response.headers.get("ETag"),
            "last_modified": response.headers.get("Last-Modified"),
        }
        self.state.parent.mkdir(parents=True, exist_ok=True)
        self.state.write_text(json.dumps(state), encoding="utf-8")

    def _stream(self, response: requests.Response, offset: int, total: int | None, url: str):
        """Append the response body to the partial file and check its final size."""
        name = url.rsplit("/", 1)[-1]
        bar = tqdm(
            total=total,
            initial=offset,
            unit="B",
            unit_scale=True,
            desc=f"Downloading {name}",
            disable=None if self.config.progress else True,
        )
        with bar, open(self.part, "ab") as handle:
            for chunk in response.iter_content(chunk_size=CHUNK_SIZE):
                handle.write(chunk)
                bar.update(len(chunk))
        size = self.part.stat().st_size
        if total is not None and size != total:
            raise IncompleteDownloadError(
                f"{url}: received {size} of {total} bytes; the connection closed early."
            )

    def _discard(self) -> None:
        self.part.unlink(missing_ok=True)
        self.state.unlink(missing_ok=True)


def _expected_size(response: requests.Response, offset: int) -> int | None:
    length = response.headers.get("Content-Length")
    if length is None or "Content-Encoding" in response.headers:
        return None
    return offset + int(length)


def check_checksum(checksum: str | None, setting: str) -> None:
    """Raise `ConfigError` unless `checksum` is null, ``sha256:<hex>``, ``md5:<hex>`` or hex."""
    if checksum is None:
        return
    algorithm, _, digest = checksum.rpartition(":")
    lengths = {"": 64, "sha256": 64, "md5": 32}
    valid = algorithm.lower() in lengths and len(digest) == lengths[algorithm.lower()]
    if not valid or any(char not in "0123456789abcdefABCDEF" for char in digest):
        raise ConfigError(
            f"{setting}={checksum!r} is not a checksum; write sha256:<64 hex digits>, "
            "md5:<32 hex digits>, or null to skip the check."
        )


def fetch(
    url: str,
    cache_dir: Path,
    subfolder: str,
    checksum: str | None,
    config: DownloadConfig,
    setting: str,
) -> Path:
    """Return the local copy of `url`, downloading it when missing or outdated.

    The file is kept as ``<cache_dir>/downloads/<subfolder>/<file name of the URL>``.

    `checksum` is ``sha256:<hex>``, ``md5:<hex>`` or a bare SHA-256. With a checksum, a cached
    file that does not match is downloaded again, and a download that does not match raises
    `DataError`. Without one, a cached file is used as it is and the SHA-256 of a new download
    is logged so that it can be pinned. `setting` names the checksum's config key in messages.
    """
    name = url.rstrip("/").rsplit("/", 1)[-1]
    folder = cache_dir / "downloads" / subfolder
    target = folder / name
    if target.is_file() and (checksum is None or matches_checksum(target, checksum, cache_dir)):
        log.debug("Using the cached download %s", target)
        return target

    fetcher = pooch.create(
        path=folder,
        base_url=url[: len(url) - len(name)],
        registry={name: checksum},
        retry_if_failed=config.retries,
    )
    started = time.perf_counter()
    try:
        path = Path(fetcher.fetch(name, downloader=ResumingDownloader(target, config)))
    except ValueError as error:
        raise DataError(
            f"{url}: the downloaded file does not match {setting}={checksum!r} after "
            f"{config.retries + 1} attempts ({error}). The server sent a corrupt or different "
            f"file; run again later, or update {setting} if the file changed upstream."
        ) from error
    except requests.exceptions.RequestException as error:
        raise DataError(
            f"Downloading {url} failed after {config.retries + 1} attempts ({error}). Check the "
            "network and the URL setting, or download the file yourself and point the dataset's "
            "local path setting at it."
        ) from error
    digests = file_digests(path, cache_dir)
    log.info(
        "Downloaded %s (%.1f MB) to %s in %.1fs; SHA-256 %s",
        url,
        path.stat().st_size / 1e6,
        path,
        time.perf_counter() - started,
        digests["sha256"],
    )
    if checksum is None:
        log.info("Set %s=sha256:%s to verify later downloads", setting, digests["sha256"])
    return path
