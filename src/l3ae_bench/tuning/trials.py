"""Trial bookkeeping in the Optuna storage: who runs a trial, whether it is alive, its MLflow run.

Each trial records user attrs: `worker` (host, pid, process start time), `heartbeat` (Unix
time, refreshed while it runs), `mlflow_run_id`, and when it ends `metrics` or `error` with
`error_kind` (`error` for a failure that identical parameters would repeat, `interrupted`
otherwise). A trial left RUNNING by a killed process is found through these attrs, marked
FAIL, and its MLflow run ended KILLED.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import optuna
import psutil
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from l3ae_bench.tracking import end_run_if_running, running_child_run_ids

log = logging.getLogger(__name__)

WORKER_ATTR = "worker"
HEARTBEAT_ATTR = "heartbeat"
MLFLOW_RUN_ATTR = "mlflow_run_id"
METRICS_ATTR = "metrics"
ERROR_ATTR = "error"
ERROR_KIND_ATTR = "error_kind"
REUSED_ATTR = "reused_from"
FIXED_ATTR = "fixed"
ERROR_KIND_DETERMINISTIC = "error"
ERROR_KIND_INTERRUPTED = "interrupted"
PROCESS_START_TOLERANCE_S = 1.0


@dataclass(frozen=True)
class Worker:
    """The process running a trial: host name, process id and process start time."""

    host: str
    pid: int
    started: float

    @classmethod
    def current(cls) -> Worker:
        return cls(socket.gethostname(), os.getpid(), psutil.Process().create_time())

    @classmethod
    def from_attr(cls, value: Any) -> Worker | None:
        if not isinstance(value, dict):
            return None
        try:
            return cls(str(value["host"]), int(value["pid"]), float(value["started"]))
        except (KeyError, TypeError, ValueError):
            return None

    def as_attr(self) -> dict[str, Any]:
        return {"host": self.host, "pid": self.pid, "started": self.started}

    def __str__(self) -> str:
        return f"pid {self.pid} on {self.host}"


def process_alive(worker: Worker) -> bool:
    """Return whether the worker's process still runs on this host (same pid and start time)."""
    try:
        started = psutil.Process(worker.pid).create_time()
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True
    return abs(started - worker.started) < PROCESS_START_TOLERANCE_S


def stale_reason(trial: FrozenTrial, now: float, stale_after_s: float) -> str | None:
    """Return why a RUNNING trial is abandoned, or None while its worker may still run it.

    On this host the worker's process is checked directly. For other hosts the heartbeat
    (or the trial's start time, before the first heartbeat) must be older than
    `stale_after_s`. Call it while holding the storage lock.
    """
    worker = Worker.from_attr(trial.user_attrs.get(WORKER_ATTR))
    if worker is None:
        # Workers create a trial and record themselves on it under the storage lock, which
        # the caller holds, so a trial without a record lost its process in between.
        return "interrupted: the process that created the trial ended before recording itself"
    if worker.host == socket.gethostname():
        if process_alive(worker):
            return None
        return f"interrupted: the process running it ({worker}) ended during the trial"
    last = trial.user_attrs.get(HEARTBEAT_ATTR)
    if last is None and trial.datetime_start is not None:
        last = trial.datetime_start.timestamp()
    if last is None or now - float(last) <= stale_after_s:
        return None
    return f"interrupted: no heartbeat from {worker} for {now - float(last):.0f}s"


def fail_stale_trials(study: optuna.Study, stale_after_s: float, tracking_uri: str) -> list[int]:
    """Mark abandoned RUNNING trials FAIL and end their MLflow runs KILLED.

    Call it while holding the storage lock. Returns the numbers of the trials marked FAIL.
    """
    now = time.time()
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        reason = stale_reason(trial, now, stale_after_s)
        if reason is None:
            continue
        try:
            # Optuna has no public call to set attrs of another process's trial.
            study._storage.set_trial_user_attr(trial._trial_id, ERROR_ATTR, reason)
            study._storage.set_trial_user_attr(
                trial._trial_id, ERROR_KIND_ATTR, ERROR_KIND_INTERRUPTED
            )
        except UpdateFinishedTrialError:
            continue
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        failed.append(trial.number)
        log.warning("Trial %d of study %r marked FAIL: %s", trial.number, study.study_name, reason)
        run_id = trial.user_attrs.get(MLFLOW_RUN_ATTR)
        if run_id and end_run_if_running(tracking_uri, run_id, "KILLED", reason):
            log.info("MLflow run %s of trial %d ended KILLED", run_id, trial.number)
    return failed


def end_orphaned_runs(study: optuna.Study, tracking_uri: str, parent_run_id: str) -> int:
    """End MLflow trial runs left RUNNING although their trial is finished in the storage.

    A process killed between telling Optuna a trial's result and closing its MLflow run
    leaves such a run. Returns the number of runs ended.
    """
    running = running_child_run_ids(tracking_uri, parent_run_id)
    if not running:
        return 0
    ended = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
        run_id = trial.user_attrs.get(MLFLOW_RUN_ATTR)
        if run_id not in running:
            continue
        if trial.state == TrialState.COMPLETE:
            status, message = "FINISHED", "closed after the process ended"
        elif trial.user_attrs.get(ERROR_KIND_ATTR) == ERROR_KIND_INTERRUPTED:
            status, message = "KILLED", str(trial.user_attrs.get(ERROR_ATTR, "interrupted"))
        else:
            status, message = "FAILED", str(trial.user_attrs.get(ERROR_ATTR, "failed"))
        if end_run_if_running(tracking_uri, run_id, status, message):
            ended += 1
    if ended:
        log.info("Ended %d MLflow trial runs left RUNNING by an earlier process", ended)
    return ended


class Heartbeat:
    """A thread that refreshes a running trial's `heartbeat` attr every `interval_s` seconds."""

    def __init__(self, study: optuna.Study, trial_id: int, interval_s: float) -> None:
        self._study = study
        self._trial_id = trial_id
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="trial-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self._study._storage.set_trial_user_attr(
                    self._trial_id, HEARTBEAT_ATTR, time.time()
                )
            except UpdateFinishedTrialError:
                return
            except Exception as error:  # a storage hiccup must not end the trial
                log.warning("Heartbeat of trial id %d failed: %s", self._trial_id, error)
