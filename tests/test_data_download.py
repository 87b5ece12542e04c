"""Downloads against an HTTP server on 127.0.0.1: normal, interrupted and resumed, corrupt."""

from __future__ import annotations

import gzip
import hashlib
import io
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from l3ae_bench.data.amazon import AmazonReviews2023Config, load_amazon_reviews_2023
from l3ae_bench.data.download import DownloadConfig, fetch
from l3ae_bench.data.grouplens import MovieLensConfig, load_movielens
from l3ae_bench.data.preprocess import FilterConfig
from l3ae_bench.errors import DataError

FIXTURES = Path(__file__).parent / "fixtures"
NO_RETRY = DownloadConfig(retries=0, timeout_s=5, progress=False)


@dataclass
class FileServer:
    """Files served over HTTP with Range support, and faults to inject per path."""

    url: str
    files: dict[str, bytes] = field(default_factory=dict)
    truncate_next: set[str] = field(default_factory=set)
    """Paths whose next response announces the full length but stops halfway."""
    replacement: dict[str, bytes] = field(default_factory=dict)
    """Paths served with other bytes than `files` (a corrupt copy)."""
    ignore_range: bool = False
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    """(path, Range header) of each GET."""


def make_handler(server: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's method name)
            server.requests.append((self.path, self.headers.get("Range")))
            if self.path not in server.files:
                self.send_error(404)
                return
            body = server.replacement.get(self.path, server.files[self.path])
            etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
            start = self._range_start(etag)
            self.send_response(206 if start else 200)
            self.send_header("Content-Length", str(len(body) - start))
            self.send_header("ETag", etag)
            self.send_header("Accept-Ranges", "bytes")
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            self.end_headers()
            payload = body[start:]
            if self.path in server.truncate_next:
                server.truncate_next.discard(self.path)
                payload = payload[: len(payload) // 2]
            self.wfile.write(payload)
            self.wfile.flush()

        def _range_start(self, etag: str) -> int:
            requested = self.headers.get("Range")
            if server.ignore_range or not requested or not requested.startswith("bytes="):
                return 0
            if self.headers.get("If-Range") not in (None, etag):
                return 0
            return int(requested.removeprefix("bytes=").split("-")[0])

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def file_server() -> Iterator[FileServer]:
    """A threaded HTTP/1.0 server on 127.0.0.1; each response closes its connection."""
    state = FileServer(url="")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join()


PAYLOAD = bytes(range(256)) * 4096  # 1 MiB, not compressible to nothing


def test_normal_download(tmp_path, file_server):
    file_server.files["/data/file.bin"] = PAYLOAD
    path = fetch(f"{file_server.url}/data/file.bin", tmp_path, "test", None, NO_RETRY, "x")
    assert path == tmp_path / "downloads" / "test" / "file.bin"
    assert path.read_bytes() == PAYLOAD


def test_cached_file_not_downloaded_again(tmp_path, file_server):
    file_server.files["/file.bin"] = PAYLOAD
    checksum = "sha256:" + hashlib.sha256(PAYLOAD).hexdigest()
    fetch(f"{file_server.url}/file.bin", tmp_path, "test", checksum, NO_RETRY, "x")
    fetch(f"{file_server.url}/file.bin", tmp_path, "test", checksum, NO_RETRY, "x")
    assert len(file_server.requests) == 1


def test_interrupted_download_resumes(tmp_path, file_server):
    file_server.files["/file.bin"] = PAYLOAD
    file_server.truncate_next.add("/file.bin")
    url = f"{file_server.url}/file.bin"
    with pytest.raises(DataError, match="failed after 1 attempts"):
        fetch(url, tmp_path, "test", None, NO_RETRY, "x")
    folder = tmp_path / "downloads" / "test"
    assert not (folder / "file.bin").exists()
    received = (folder / "file.bin.part").stat().st_size
    assert 0 < received <= len(PAYLOAD) // 2

    path = fetch(url, tmp_path, "test", None, NO_RETRY, "x")
    assert path.read_bytes() == PAYLOAD
    assert file_server.requests[-1] == ("/file.bin", f"bytes={received}-")
    assert not (folder / "file.bin.part").exists()


def test_interrupted_download_retried_in_one_call(tmp_path, file_server):
    file_server.files["/file.bin"] = PAYLOAD
    file_server.truncate_next.add("/file.bin")
    checksum = "sha256:" + hashlib.sha256(PAYLOAD).hexdigest()
    config = DownloadConfig(retries=1, timeout_s=5, progress=False)
    path = fetch(f"{file_server.url}/file.bin", tmp_path, "test", checksum, config, "x")
    assert path.read_bytes() == PAYLOAD
    assert len(file_server.requests) == 2
    assert file_server.requests[1][1].startswith("bytes=")


def test_server_without_range_restarts(tmp_path, file_server):
    file_server.files["/file.bin"] = PAYLOAD
    file_server.truncate_next.add("/file.bin")
    file_server.ignore_range = True
    url = f"{file_server.url}/file.bin"
    with pytest.raises(DataError):
        fetch(url, tmp_path, "test", None, NO_RETRY, "x")
    path = fetch(url, tmp_path, "test", None, NO_RETRY, "x")
    assert path.read_bytes() == PAYLOAD


def test_changed_file_restarts_resume(tmp_path, file_server):
    file_server.files["/file.bin"] = PAYLOAD
    file_server.truncate_next.add("/file.bin")
    url = f"{file_server.url}/file.bin"
    with pytest.raises(DataError):
        fetch(url, tmp_path, "test", None, NO_RETRY, "x")
    file_server.files["/file.bin"] = PAYLOAD[::-1]  # a new ETag, so If-Range fails
    path = fetch(url, tmp_path, "test", None, NO_RETRY, "x")
    assert path.read_bytes() == PAYLOAD[::-1]


def test_corrupt_download_rejected_by_checksum(tmp_path, file_server):
    file_server.files["/file.bin"] = PAYLOAD
    file_server.replacement["/file.bin"] = PAYLOAD[:-1] + b"\x00"
    checksum = "sha256:" + hashlib.sha256(PAYLOAD).hexdigest()
    config = DownloadConfig(retries=1, timeout_s=5, progress=False)
    with pytest.raises(DataError, match="does not match dataset.checksum='sha256:"):
        fetch(f"{file_server.url}/file.bin", tmp_path, "test", checksum, config, "dataset.checksum")
    assert len(file_server.requests) == 2
    assert list((tmp_path / "downloads" / "test").iterdir()) == []


def test_corrupt_cached_file_downloaded_again(tmp_path, file_server):
    file_server.files["/file.bin"] = PAYLOAD
    checksum = "md5:" + hashlib.md5(PAYLOAD).hexdigest()
    url = f"{file_server.url}/file.bin"
    path = fetch(url, tmp_path, "test", checksum, NO_RETRY, "x")
    path.write_bytes(b"damaged")
    fetch(url, tmp_path, "test", checksum, NO_RETRY, "x")
    assert path.read_bytes() == PAYLOAD
    assert len(file_server.requests) == 2


def test_missing_file_is_error(tmp_path, file_server):
    with pytest.raises(DataError, match="404"):
        fetch(f"{file_server.url}/none.bin", tmp_path, "test", None, NO_RETRY, "x")


def serve_amazon(server: FileServer, case: str) -> None:
    for kind, name in (
        ("review_categories", "Video_Games"),
        ("meta_categories", "meta_Video_Games"),
    ):
        data = (FIXTURES / "amazon" / case / f"{name}.jsonl").read_bytes()
        server.files[f"/raw/{kind}/{name}.jsonl.gz"] = gzip.compress(data, mtime=0)


def test_amazon_downloaded_from_base_url(tmp_path, file_server):
    serve_amazon(file_server, "variants")
    config = AmazonReviews2023Config(
        name="amazon-games",
        category="Video_Games",
        base_url=f"{file_server.url}/raw",
        filter=FilterConfig(),
        download=NO_RETRY,
    )
    data = load_amazon_reviews_2023(config, tmp_path)
    assert sorted(data.item_ids.tolist()) == ["B0OTHER", "B0PARENT"]
    assert sorted(path for path, _ in file_server.requests) == [
        "/raw/meta_categories/meta_Video_Games.jsonl.gz",
        "/raw/review_categories/Video_Games.jsonl.gz",
    ]
    load_amazon_reviews_2023(config, tmp_path)
    assert len(file_server.requests) == 2


def test_movielens_downloaded_with_md5(tmp_path, file_server):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in (FIXTURES / "movielens" / "ml-1m").iterdir():
            archive.writestr(zipfile.ZipInfo(f"ml-1m/{path.name}"), path.read_bytes())
    file_server.files["/movielens/ml-1m.zip"] = buffer.getvalue()
    config = MovieLensConfig(
        name="ml-1m",
        variant="1m",
        url=f"{file_server.url}/movielens/ml-1m.zip",
        checksum="md5:" + hashlib.md5(buffer.getvalue()).hexdigest(),
        download=NO_RETRY,
    )
    data = load_movielens(config, tmp_path)
    assert "Amélie (2001). Genres: Comedy, Romance." in data.item_texts
