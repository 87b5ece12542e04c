"""MLflow tracking: the only module that talks to MLflow.

Runs go to a SQLite store (`mlruns/mlflow.db`) with artifacts under `mlruns/artifacts`, both at
absolute paths, so every run and every multirun job of a project lands in one store whatever
folder Hydra runs the job in. Params, tags and error texts pass through `l3ae_bench.redaction`,
so no secret reaches the store.
"""

from __future__ import annotations

import json
import logging
import tempfile
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.entities import RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from l3ae_bench.redaction import redact, redact_text
from l3ae_bench.redaction import redact_tree as redact_tree  # the pipeline imports it from here

log = logging.getLogger(__name__)

MAX_PARAM_LENGTH = 6000


def default_tracking_uri(mlruns_dir: Path) -> str:
    """Return the SQLite tracking URI for a store under `mlruns_dir`."""
    return f"sqlite:///{(mlruns_dir / 'mlflow.db').resolve()}"


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested settings to dotted keys, redacting secrets."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = redact(name, value)
    return flat


def metric_key(split: str, name: str) -> str:
    """Return the MLflow key of a metric, such as `test/ndcg_at_20`."""
    return f"{split}/{name}"


class JobRun:
    """An active MLflow run of one job, with helpers for metrics and artifacts."""

    def __init__(self, client: MlflowClient, run_id: str) -> None:
        self.client = client
        self.run_id = run_id

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        for key, value in metrics.items():
            self.client.log_metric(self.run_id, key, float(value), step=step)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, str(redact(key, value)))

    def log_params(self, params: Mapping[str, Any]) -> None:
        items = [(key, _param_text(value)) for key, value in params.items()]
        for start in range(0, len(items), 100):
            for key, value in items[start : start + 100]:
                self.client.log_param(self.run_id, key, value)

    def log_json(self, payload: Any, artifact_file: str) -> None:
        self.client.log_dict(self.run_id, payload, artifact_file)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def log_arrays(self, arrays: Mapping[str, np.ndarray], artifact_file: str) -> None:
        """Store arrays as one `.npz` artifact (per-user metric vectors, for example)."""
        folder, _, name = artifact_file.rpartition("/")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            np.savez_compressed(path, **arrays)
            self.client.log_artifact(self.run_id, str(path), folder or None)


def _param_text(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, list | tuple | dict) else str(value)
    return text if len(text) <= MAX_PARAM_LENGTH else text[: MAX_PARAM_LENGTH - 3] + "..."


def ensure_experiment(client: MlflowClient, name: str, artifact_root: Path) -> str:
    """Return the id of experiment `name`, creating it with artifacts under `artifact_root`."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_root.resolve().as_uri())
    except MlflowException:
        # Another job of the same sweep created it first.
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


@contextmanager
def start_job_run(
    tracking_uri: str,
    experiment: str,
    artifact_root: Path,
    run_name: str,
    tags: Mapping[str, Any],
    parent_run_id: str | None = None,
) -> Iterator[JobRun]:
    """Open an MLflow run and close it FINISHED, FAILED (with the error) or KILLED."""
    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri)
    experiment_id = ensure_experiment(client, experiment, artifact_root)
    all_tags = {key: str(redact(key, value)) for key, value in tags.items()}
    all_tags["mlflow.runName"] = run_name
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    run = client.create_run(experiment_id, tags=all_tags, run_name=run_name)
    job_run = JobRun(client, run.info.run_id)
    log.info("MLflow run %s (%s) in %s", run.info.run_id, run_name, tracking_uri)
    try:
        yield job_run
    except KeyboardInterrupt:
        client.set_tag(run.info.run_id, "error", "interrupted")
        client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.KILLED))
        raise
    except BaseException as error:
        message = redact_text(f"{type(error).__name__}: {error}")
        client.set_tag(run.info.run_id, "error", message[:5000])
        try:
            client.log_text(run.info.run_id, redact_text(traceback.format_exc()), "error.txt")
        finally:
            client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.FAILED))
        raise
    else:
        client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.FINISHED))
