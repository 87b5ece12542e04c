"""Errors that stop a job with a message meant for the researcher, not a stack trace.

Each message names the offending value, the file or setting it came from, and what to change.
The entry point prints the message alone and the MLflow run ends FAILED with it recorded.
"""


class BenchError(Exception):
    """Base class of the errors a user can fix by changing input data or configuration."""


class ConfigError(BenchError):
    """A configuration value is missing, of the wrong type or out of range."""


class DataError(BenchError):
    """A dataset file is missing, malformed or inconsistent."""


class EncoderError(BenchError):
    """An encoder cannot produce embeddings: model not found, endpoint unreachable, bad output."""


class SolverError(BenchError):
    """A closed form cannot be computed: not positive definite, or too large for memory."""
