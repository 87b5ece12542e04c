"""Keep secrets out of everything a job writes: MLflow, Hydra's saved configs and the logs.

Three rules apply. Values of secret-named settings (api_key, token, secret, password,
authorization) are replaced by `***`, except settings named `*_env`, which contain the name of an
environment variable. Credentials inside URLs (`https://user:pass@host`) are replaced. The
values of secret-named environment variables (such as OPENAI_API_KEY) are replaced wherever they
appear in free text, such as error messages and log lines.

Secrets reach the code only through environment variables. A secret given as a command-line
override is rejected before Hydra starts, because Hydra writes every override to
`.hydra/overrides.yaml` in the job folder.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

SECRET_KEY_PATTERN = re.compile(r"api[_-]?key|token|secret|password|authorization", re.I)
URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.I)
# Bearer headers and the key formats of OpenAI (sk-...) and Hugging Face (hf_...).
TOKEN_LIKE = re.compile(r"Bearer\s+\S+|\bsk-[A-Za-z0-9_\-]{16,}|\bhf_[A-Za-z0-9]{20,}")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
REDACTED = "***"
# Shorter environment values (such as "1" or "true") are flags, not secrets, and replacing
# them everywhere would garble ordinary text.
MIN_SECRET_LENGTH = 8


def is_env_name_key(key: str) -> bool:
    """Return whether a setting names an environment variable (`api_key_env`, ...)."""
    return key.rsplit(".", 1)[-1].lower().endswith("_env")


def is_secret_key(key: str) -> bool:
    """Return whether a setting or variable named `key` contains a secret value."""
    return bool(SECRET_KEY_PATTERN.search(key)) and not is_env_name_key(key)


def secret_env_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Return the values of secret-named environment variables, longest first."""
    environ = os.environ if environ is None else environ
    values = {
        value
        for name, value in environ.items()
        if SECRET_KEY_PATTERN.search(name) and len(value) >= MIN_SECRET_LENGTH
    }
    return sorted(values, key=len, reverse=True)


def redact_text(text: str, secrets: Iterable[str] | None = None) -> str:
    """Replace secret environment values, bearer tokens, key-like strings and URL credentials."""
    for secret in secret_env_values() if secrets is None else secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    text = TOKEN_LIKE.sub(REDACTED, text)
    return URL_CREDENTIALS.sub(rf"\g<scheme>{REDACTED}@", text)


def redact(key: str, value: Any) -> Any:
    """Hide secrets: values of secret-named keys, and credentials inside URLs."""
    if is_env_name_key(key) and isinstance(value, str) and not ENV_NAME.match(value):
        # A value that is not a variable name is most likely the secret itself.
        return REDACTED
    if is_secret_key(key) and value not in (None, "") and not isinstance(value, bool):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    return value


def redact_tree(config: Any, key: str = "") -> Any:
    """Return a copy of nested settings with secrets redacted, keeping the structure."""
    if isinstance(config, Mapping):
        return {k: redact_tree(v, str(k)) for k, v in config.items()}
    if isinstance(config, list | tuple):
        return [redact_tree(v, key) for v in config]
    return redact(key, config)


def rejected_override(argument: str, environ: Mapping[str, str] | None = None) -> str | None:
    """Return why a command-line argument may not be passed to Hydra, or None if it may.

    Rejected are: a value for a secret-named key, a `*_env` key whose value is not a variable
    name, a URL with credentials, a key-like string (sk-..., hf_..., Bearer ...), and the value
    of any secret-named environment variable.
    """
    if argument.startswith("-") or "=" not in argument:
        return None
    key, value = argument.split("=", 1)
    key = key.lstrip("+~")
    if is_secret_key(key) and value.strip() not in ("", "null"):
        return f"{key} is a secret-named setting"
    if is_env_name_key(key) and not all(ENV_NAME.match(v.strip()) for v in value.split(",")):
        return f"{key} must name an environment variable, and its value is not a variable name"
    if URL_CREDENTIALS.search(value):
        return f"the value of {key} is a URL with credentials"
    if TOKEN_LIKE.search(value):
        return f"the value of {key} looks like an API key or bearer token"
    if any(secret in value for secret in secret_env_values(environ)):
        return f"the value of {key} contains the value of a secret environment variable"
    return None


def check_command_line(arguments: list[str], environ: Mapping[str, str] | None = None) -> None:
    """Raise SystemExit with an explanation if any argument carries a secret.

    Call this before Hydra parses the command line: Hydra writes the overrides to
    `.hydra/overrides.yaml` in the job folder before the job runs.
    """
    for argument in arguments:
        reason = rejected_override(argument, environ)
        if reason is None:
            continue
        key = argument.split("=", 1)[0]
        raise SystemExit(
            f"Rejected the command-line override {key}=***: {reason}. Secrets must not be "
            "given on the command line, because Hydra writes every override to "
            ".hydra/overrides.yaml in the job folder and MLflow records the overrides. Export "
            "the key in an environment variable instead, and name that variable in the encoder "
            "config (encoder.api_key_env, such as OPENAI_API_KEY or LLAMA_API_KEY)."
        )


class RedactingFilter(logging.Filter):
    """A logging filter that redacts secrets in each record's message and traceback."""

    def __init__(self, secrets: Iterable[str] | None = None) -> None:
        super().__init__()
        self.secrets = list(secret_env_values() if secrets is None else secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact_text(record.getMessage(), self.secrets)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text, self.secrets)
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> RedactingFilter:
    """Add a `RedactingFilter` to every handler of `logger` (the root logger by default)."""
    logger = logger or logging.getLogger()
    log_filter = RedactingFilter()
    for handler in logger.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(log_filter)
    return log_filter
