"""A local HTTP server that speaks the OpenAI embeddings protocol, with injectable faults.

It serves real embeddings from the offline all-MiniLM-L6-v2 (384 dims) at
`POST http://127.0.0.1:<port>/v1/embeddings` in OpenAI's response format, and records every
request. Tests set `server.faults` to make it return 429 with Retry-After or 500, respond
after the client's timeout, reject more than N inputs, respond in base64 only, ignore the
`dimensions` parameter, fail after N responses, or reject the API key.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np


@dataclass
class Faults:
    """Faults to inject; counters count down as requests arrive."""

    rate_limited: int = 0
    """The next N requests get 429 with the header `Retry-After: retry_after`."""
    retry_after: str = "1"
    server_errors: int = 0
    """The next N requests get 500."""
    slow: int = 0
    """The next N requests get their response after `slow_seconds`."""
    slow_seconds: float = 0.0
    max_inputs: int | None = None
    """Requests with more inputs get 400, as a provider's per-request cap does."""
    base64_only: bool = False
    """Respond in base64 whatever the requested `encoding_format`."""
    ignore_dimensions: bool = False
    """Return the full 384 dims whatever the requested `dimensions`."""
    fail_after: int | None = None
    """After N successful responses, every request gets 500."""
    reversed_order: bool = False
    """List the vectors in reverse order (with their correct `index`)."""
    required_key: str | None = None
    """Requests without `Authorization: Bearer <required_key>` get 401, and the error
    message repeats the key that was sent, as some servers do."""


@dataclass
class Record:
    """One request as the server received it."""

    inputs: list[str]
    model: str
    dimensions: int | None
    encoding_format: str | None
    authorization: str
    status: int = 0
    received_at: float = field(default_factory=time.monotonic)


@dataclass
class FakeOpenAIServer:
    """The server, its MiniLM model, the faults to inject and the requests received."""

    model: Any
    faults: Faults = field(default_factory=Faults)
    records: list[Record] = field(default_factory=list)
    successes: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._encode_lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"server_state": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def reset(self) -> None:
        """Clear the faults and the request log."""
        with self._lock:
            self.faults = Faults()
            self.records = []
            self.successes = 0

    def embed(self, texts: list[str]) -> np.ndarray:
        """Return MiniLM's unit vectors for `texts` (float32)."""
        with self._encode_lock:
            vectors = self.model.encode(
                texts, prompt="", normalize_embeddings=True, convert_to_numpy=True
            )
        return np.asarray(vectors, dtype=np.float32)

    def received(self, status: int | None = 200) -> list[str]:
        """Return the inputs of requests that got a response with `status`, in arrival order."""
        return [
            text
            for record in self.records
            if status is None or record.status == status
            for text in record.inputs
        ]

    def plan(self, record: Record) -> tuple[int, dict[str, str], dict | None, float]:
        """Decide the status, headers, error body and delay of a request."""
        faults = self.faults
        with self._lock:
            self.records.append(record)
            expected = f"Bearer {faults.required_key}"
            if faults.required_key is not None and record.authorization != expected:
                sent = record.authorization.removeprefix("Bearer ")
                return 401, {}, _error(f"Incorrect API key provided: {sent}", "invalid_api_key"), 0
            if faults.fail_after is not None and self.successes >= faults.fail_after:
                return 500, {}, _error("The server had an error", "server_error"), 0
            if faults.rate_limited > 0:
                faults.rate_limited -= 1
                headers = {"Retry-After": faults.retry_after}
                return 429, headers, _error("Rate limit reached", "rate_limit_exceeded"), 0
            if faults.server_errors > 0:
                faults.server_errors -= 1
                return 500, {}, _error("The server had an error", "server_error"), 0
            delay = 0.0
            if faults.slow > 0:
                faults.slow -= 1
                delay = faults.slow_seconds
            if faults.max_inputs is not None and len(record.inputs) > faults.max_inputs:
                message = f"Too many inputs: {len(record.inputs)} > {faults.max_inputs} per request"
                return 400, {}, _error(message, "invalid_request_error"), delay
            if any(not isinstance(text, str) or not text for text in record.inputs):
                return 400, {}, _error("'$.input' is invalid: empty string", "invalid_input"), 0
            return 200, {}, None, delay

    def respond(self, record: Record) -> dict:
        """Build the OpenAI response body for a request that succeeds."""
        vectors = self.embed(record.inputs)
        if record.dimensions is not None and not self.faults.ignore_dimensions:
            vectors = vectors[:, : record.dimensions]
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        as_base64 = self.faults.base64_only or record.encoding_format == "base64"
        data = [
            {
                "object": "embedding",
                "index": index,
                "embedding": (
                    base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
                    if as_base64
                    else [float(value) for value in vector]
                ),
            }
            for index, vector in enumerate(vectors)
        ]
        if self.faults.reversed_order:
            data.reverse()
        tokens = sum(len(text.split()) for text in record.inputs)
        with self._lock:
            self.successes += 1
        return {
            "object": "list",
            "data": data,
            "model": record.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }


def _error(message: str, code: str) -> dict:
    return {"error": {"message": message, "type": code, "param": None, "code": code}}


class _Handler(BaseHTTPRequestHandler):
    server_state: FakeOpenAIServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Keep the test output quiet."""

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if not self.path.rstrip("/").endswith("/embeddings"):
            self._send(404, {}, _error(f"Unknown route {self.path}", "not_found"))
            return
        payload = json.loads(body)
        inputs = payload.get("input")
        record = Record(
            inputs=[inputs] if isinstance(inputs, str) else list(inputs),
            model=payload.get("model", ""),
            dimensions=payload.get("dimensions"),
            encoding_format=payload.get("encoding_format"),
            authorization=self.headers.get("Authorization", ""),
        )
        status, headers, error, delay = self.server_state.plan(record)
        if delay:
            time.sleep(delay)
        record.status = status
        self._send(status, headers, error or self.server_state.respond(record))

    def _send(self, status: int, headers: dict[str, str], body: dict) -> None:
        data = json.dumps(body).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            # The client stopped waiting (a timeout test), so no response is needed.
            pass
