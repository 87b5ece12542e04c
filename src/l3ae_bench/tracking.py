"""MLflow tracking: the only module that talks to MLflow.

Runs go to a SQLite store (`mlruns/mlflow.db`) with artifacts under `mlruns/artifacts`, both at
absolute paths, so every run and every multirun job of a project lands in one store whatever
folder Hydra runs the job in. Params, tags and error texts pass through `l3ae_bench.redaction`,
so no secret reaches the store.
"""

from __future__ import annotations

import fcntl
import json
import logging
import tempfile
import time
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.entities import Metric, Param, Run, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from l3ae_bench.errors import ConfigError
from l3ae_bench.redaction import redact, redact_text
from l3ae_bench.redaction import redact_tree as redact_tree  # the pipeline imports it from here

log = logging.getLogger(__name__)

SQLITE_PREFIX = "sqlite:///"
MAX_PARAM_LENGTH = 6000
# Limits of one MLflow log_batch request.
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_PER_BATCH = 100


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
        self.keep_running = False
        """When set, a normal exit leaves the run RUNNING (another worker of a shared study
        closes it); an exception still ends it FAILED or KILLED."""

    def experiment_name(self) -> str:
        """Return the name of the run's experiment."""
        run = self.client.get_run(self.run_id)
        return self.client.get_experiment(run.info.experiment_id).name

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        # One batch per call: each separate write is a transaction of the SQLite store.
        timestamp = int(time.time() * 1000)
        items = [Metric(key, float(value), timestamp, step) for key, value in metrics.items()]
        for start in range(0, len(items), MAX_METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=items[start : start + MAX_METRICS_PER_BATCH])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        items = [RunTag(key, str(redact(key, value))) for key, value in tags.items()]
        for start in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, tags=items[start : start + MAX_PARAMS_PER_BATCH])

    def log_params(self, params: Mapping[str, Any]) -> None:
        items = [Param(key, _param_text(value)) for key, value in params.items()]
        for start in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=items[start : start + MAX_PARAMS_PER_BATCH])

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

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        """Copy a local file into the run's artifacts, under `folder` when given."""
        self.client.log_artifact(self.run_id, str(path), folder)

    def log_new_params(self, params: Mapping[str, Any]) -> None:
        """Log the params the run does not have yet; existing keys keep their value.

        MLflow rejects changing a logged param, and a run joined by several workers receives
        the same config more than once.
        """
        existing = self.client.get_run(self.run_id).data.params
        self.log_params({key: value for key, value in params.items() if key not in existing})


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
def store_lock(tracking_uri: str) -> Iterator[None]:
    """Hold an exclusive file lock next to an SQLite store (no-op for other stores).

    MLflow creates the tables of a new SQLite store on first use, and two processes doing that
    at once (parallel jobs of a multirun) fail with "table already exists".
    """
    if not tracking_uri.startswith(SQLITE_PREFIX):
        yield
        return
    path = Path(tracking_uri.removeprefix(SQLITE_PREFIX) + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def start_job_run(
    tracking_uri: str,
    experiment: str,
    artifact_root: Path,
    run_name: str,
    tags: Mapping[str, Any],
    parent_run_id: str | None = None,
) -> Iterator[JobRun]:
    """Open an MLflow run and close it FINISHED, FAILED (with the error) or KILLED.

    With `parent_run_id`, the run is nested under that run (tag `mlflow.parentRunId`).
    """
    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri)
    with store_lock(tracking_uri):
        experiment_id = ensure_experiment(client, experiment, artifact_root)
    all_tags = {key: str(redact(key, value)) for key, value in tags.items()}
    all_tags["mlflow.runName"] = run_name
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    run = client.create_run(experiment_id, tags=all_tags, run_name=run_name)
    job_run = JobRun(client, run.info.run_id)
    with _close_on_exit(job_run):
        log.info("MLflow run %s (%s) in %s", run.info.run_id, run_name, tracking_uri)
        yield job_run


@contextmanager
def resume_job_run(tracking_uri: str, run_id: str) -> Iterator[JobRun]:
    """Reopen an existing run (set it RUNNING) and close it like `start_job_run` does.

    Workers of one Optuna study and reruns of an interrupted study log into the job run that
    created the study, so all trials sit under one parent.
    """
    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri)
    with store_lock(tracking_uri):
        found = find_run(tracking_uri, run_id)
    if found is None:
        raise ConfigError(
            f"MLflow run {run_id} not found (or deleted) in {tracking_uri}; pass the id of an "
            "active run in this tracking store, or unset search.parent_run_id and "
            "L3AE_BENCH_PARENT_RUN_ID."
        )
    client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
    job_run = JobRun(client, run_id)
    log.info("Joined MLflow run %s in %s", run_id, tracking_uri)
    with _close_on_exit(job_run):
        yield job_run


@contextmanager
def _close_on_exit(job_run: JobRun) -> Iterator[None]:
    """End the run FINISHED on a normal exit, KILLED on an interrupt, FAILED on an error."""
    client, run_id = job_run.client, job_run.run_id
    try:
        yield
    except KeyboardInterrupt:
        client.set_tag(run_id, "error", "interrupted")
        client.set_terminated(run_id, RunStatus.to_string(RunStatus.KILLED))
        raise
    except BaseException as error:
        message = redact_text(f"{type(error).__name__}: {error}")
        client.set_tag(run_id, "error", message[:5000])
        try:
            client.log_text(run_id, redact_text(traceback.format_exc()), "error.txt")
        finally:
            client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))
        raise
    else:
        if not job_run.keep_running:
            client.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))


def find_run(tracking_uri: str, run_id: str) -> Run | None:
    """Return the run with this id, or None when the store has no such active run."""
    client = MlflowClient(tracking_uri)
    try:
        run = client.get_run(run_id)
    except MlflowException:
        return None
    return run if run.info.lifecycle_stage == "active" else None


def end_run_if_running(tracking_uri: str, run_id: str, status: str, error: str) -> bool:
    """End a run left RUNNING (by a killed process) with `status` and an `error` tag.

    Returns whether the run was RUNNING; runs in another state are left as they are.
    """
    run = find_run(tracking_uri, run_id)
    if run is None or run.info.status != "RUNNING":
        return False
    client = MlflowClient(tracking_uri)
    client.set_tag(run_id, "error", error[:5000])
    client.set_terminated(run_id, status)
    return True


def running_child_run_ids(tracking_uri: str, parent_run_id: str) -> set[str]:
    """Return the ids of the RUNNING runs nested under `parent_run_id`."""
    parent = find_run(tracking_uri, parent_run_id)
    if parent is None:
        return set()
    client = MlflowClient(tracking_uri)
    found: set[str] = set()
    token = None
    while True:
        page = client.search_runs(
            [parent.info.experiment_id],
            filter_string=(
                f"tags.`mlflow.parentRunId` = '{parent_run_id}' and attributes.status = 'RUNNING'"
            ),
            page_token=token,
        )
        found.update(run.info.run_id for run in page)
        token = page.token
        if not token:
            return found


def search_runs(tracking_uri: str, experiment: str) -> list[Run]:
    """Return every active run of an experiment, oldest first."""
    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = sorted(item.name for item in client.search_experiments())
        raise ConfigError(
            f"MLflow experiment {experiment!r} not found in {tracking_uri}; the store has "
            f"{names}. Pass --experiment NAME or --tracking-uri URI."
        )
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs(
            [found.experiment_id], order_by=["attributes.start_time ASC"], page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def load_artifact_arrays(tracking_uri: str, run_id: str, path: str) -> dict[str, np.ndarray]:
    """Download a `.npz` artifact of a run and return its arrays.

    Raises FileNotFoundError when the run has no such artifact.
    """
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=path, dst_path=tmp, tracking_uri=tracking_uri
            )
        except MlflowException as error:
            raise FileNotFoundError(f"Run {run_id} has no artifact {path}: {error}") from error
        with np.load(local) as archive:
            return {key: archive[key] for key in archive.files}
