"""The trial loop of a study: ask Optuna for parameters, fit and evaluate, record the result.

Each trial is an MLflow run nested under the job's run, with the trial's solver settings as
params and its validation metrics. Some trials fail: those that raise a user-fixable error
(`BenchError`, such as λ_X + λ_E ≤ 0 or a matrix that is not positive definite) or a
floating-point error, and those whose objective is not finite. Such a trial is recorded as
FAIL without a value, its MLflow run ends FAILED, and the loop goes on. Any other exception
marks the trial FAIL and stops the job.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.samplers import (
    BaseSampler,
    CmaEsSampler,
    GPSampler,
    QMCSampler,
    RandomSampler,
    TPESampler,
)
from optuna.trial import FrozenTrial, Trial, TrialState

from l3ae_bench.errors import BenchError
from l3ae_bench.tracking import start_job_run
from l3ae_bench.tuning.settings import Parameter, SearchConfig
from l3ae_bench.tuning.storage import StorageLock
from l3ae_bench.tuning.trials import (
    ERROR_ATTR,
    ERROR_KIND_ATTR,
    ERROR_KIND_DETERMINISTIC,
    ERROR_KIND_INTERRUPTED,
    FIXED_ATTR,
    HEARTBEAT_ATTR,
    METRICS_ATTR,
    MLFLOW_RUN_ATTR,
    REUSED_ATTR,
    WORKER_ATTR,
    Heartbeat,
    Worker,
    end_orphaned_runs,
    fail_stale_trials,
)

log = logging.getLogger(__name__)

COUNTED_STATES = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED, TrialState.RUNNING)
ERROR_KIND_ABORTED = "aborted"


class TrialValueError(BenchError):
    """A trial produced no usable objective value (missing or not finite)."""


class RepeatedFailureError(BenchError):
    """A trial proposed the parameters of an earlier trial that failed."""


TRIAL_ERRORS: tuple[type[BaseException], ...] = (
    BenchError,
    ArithmeticError,
    np.linalg.LinAlgError,
)


@dataclass(frozen=True)
class TrialResult:
    """Outcome of the objective for one parameter set."""

    metrics: dict[str, float]
    """Validation metrics and timings, logged to the trial's MLflow run."""
    weights: Any = None
    """The fitted B, kept in memory while it belongs to the best trial."""


Objective = Callable[[dict[str, Any]], TrialResult]


@dataclass(frozen=True)
class TrialTracking:
    """Destination of the trials' MLflow runs."""

    uri: str
    experiment: str
    artifact_root: Path
    parent_run_id: str
    tags: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StudyContext:
    """An opened study and everything a trial needs besides the objective."""

    study: optuna.Study
    lock: StorageLock
    search: SearchConfig
    space: Mapping[str, Parameter]
    fixed: Mapping[str, Any]
    """Tunable solver settings held at their configured value."""
    tracking: TrialTracking


@dataclass(frozen=True)
class StudyOutcome:
    """The state of the study when this process stopped starting trials."""

    best: FrozenTrial | None
    """The best COMPLETE trial of the whole study (all processes), if any."""
    best_weights: Any
    """B of `best` when this process fitted it and kept it, else None."""
    counts: dict[str, int]
    """Trials of the study by state name."""
    n_run_here: int
    """Trials this process ran."""
    others_running: bool
    """Whether another process still runs a trial of this study."""


def optimize(context: StudyContext, objective: Objective) -> StudyOutcome:
    """Run trials until the study has `search.n_trials` trials or the timeout passes."""
    _route_optuna_logs()
    end_orphaned_runs(context.study, context.tracking.uri, context.tracking.parent_run_id)
    started = time.monotonic()
    best_weights = _BestWeights()
    n_run = 0
    with _sigterm_as_interrupt():
        while True:
            elapsed = time.monotonic() - started
            if context.search.timeout_s is not None and elapsed >= context.search.timeout_s:
                log.info("Timeout of %.0fs reached after %d trials", elapsed, n_run)
                break
            proposal = _next_trial(context)
            if proposal is None:
                break
            trial, params = proposal
            result = _run_trial(context, trial, params, objective)
            n_run += 1
            if result is not None and context.search.reuse_best_weights:
                best_weights.offer(context.study, trial.number, result.weights)
    return _outcome(context, best_weights, n_run)


def _next_trial(context: StudyContext) -> tuple[Trial, dict[str, Any]] | None:
    """Create the next trial, or return None when the study has all its trials.

    Counting and creating happen under the storage lock, so concurrent workers never create
    more than `n_trials` trials in total.
    """
    study, search = context.study, context.search
    with context.lock.hold():
        fail_stale_trials(study, search.stale_after_s, context.tracking.uri)
        trials = study.get_trials(deepcopy=False)
        counted = sum(trial.state in COUNTED_STATES for trial in trials)
        if counted >= search.n_trials:
            log.info(
                "Study %r has %d of %d trials (finished or running), so this process starts "
                "no more",
                study.study_name,
                counted,
                search.n_trials,
            )
            return None
        study.sampler = make_sampler(search, len(trials))
        trial = study.ask()
        trial.set_user_attr(WORKER_ATTR, Worker.current().as_attr())
        trial.set_user_attr(HEARTBEAT_ATTR, time.time())
        trial.set_user_attr(FIXED_ATTR, dict(context.fixed))
        params = suggest(trial, context.space)
    return trial, params


def make_sampler(search: SearchConfig, n_existing: int) -> BaseSampler:
    """Build the configured sampler, seeded with `search.seed + n_existing`.

    Samplers keep their history in the storage, so a fresh sampler per trial loses nothing,
    and the seed offset keeps reruns and parallel workers from repeating earlier draws. QMC
    keeps one seed: its scramble must stay the same along the whole sequence.
    """
    seed = None if search.seed is None else search.seed + n_existing
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        if search.sampler == "random":
            return RandomSampler(seed=seed)
        if search.sampler == "cmaes":
            return CmaEsSampler(
                seed=seed, n_startup_trials=search.n_startup_trials, warn_independent_sampling=False
            )
        if search.sampler == "qmc":
            return QMCSampler(seed=search.seed, warn_independent_sampling=False)
        if search.sampler == "gp":
            return GPSampler(seed=seed, n_startup_trials=search.n_startup_trials)
        return TPESampler(
            seed=seed,
            n_startup_trials=search.n_startup_trials,
            multivariate=True,
            constant_liar=True,
        )


def suggest(trial: Trial, space: Mapping[str, Parameter]) -> dict[str, Any]:
    """Draw one value per searched parameter."""
    params: dict[str, Any] = {}
    for parameter in space.values():
        if parameter.integer:
            params[parameter.name] = trial.suggest_int(
                parameter.name, int(parameter.low), int(parameter.high), log=parameter.log
            )
        else:
            params[parameter.name] = trial.suggest_float(
                parameter.name, parameter.low, parameter.high, log=parameter.log
            )
    return params


def _run_trial(
    context: StudyContext, trial: Trial, params: dict[str, Any], objective: Objective
) -> TrialResult | None:
    """Evaluate one trial inside its MLflow run and tell Optuna the outcome."""
    previous = find_identical_trial(context.study, trial.number, params)
    tracking = context.tracking
    tags = {
        **tracking.tags,
        "l3ae_bench.kind": "trial",
        "optuna.study": context.study.study_name,
        "optuna.trial_number": trial.number,
        "l3ae_bench.worker": str(Worker.current()),
    }
    if previous is not None:
        tags["optuna.reused_from"] = previous.number
    started = time.perf_counter()
    try:
        with start_job_run(
            tracking.uri,
            tracking.experiment,
            tracking.artifact_root,
            f"trial-{trial.number}",
            tags,
            parent_run_id=tracking.parent_run_id,
        ) as run:
            trial.set_user_attr(MLFLOW_RUN_ATTR, run.run_id)
            run.log_params(
                {f"solver.{key}": value for key, value in {**context.fixed, **params}.items()}
            )
            with Heartbeat(context.study, trial._trial_id, context.search.heartbeat_s):
                result = _reuse(previous) if previous is not None else objective(params)
            run.log_metrics(result.metrics)
            value = objective_value(result.metrics, context.search.objective)
            trial.set_user_attr(METRICS_ATTR, result.metrics)
            if previous is not None:
                trial.set_user_attr(REUSED_ATTR, previous.number)
            context.study.tell(trial, value)
    except TRIAL_ERRORS as error:
        _tell_failure(context.study, trial, error, ERROR_KIND_DETERMINISTIC)
        log.warning("Trial %d failed: %s", trial.number, error)
        return None
    except KeyboardInterrupt as error:
        _tell_failure(context.study, trial, error, ERROR_KIND_INTERRUPTED)
        raise
    except BaseException as error:
        _tell_failure(context.study, trial, error, ERROR_KIND_ABORTED)
        raise
    log.info(
        "Trial %d: %s = %.5f in %.2fs (%s)%s",
        trial.number,
        context.search.objective,
        value,
        time.perf_counter() - started,
        ", ".join(f"{key}={_short(value)}" for key, value in params.items()),
        f", reused from trial {previous.number}" if previous is not None else "",
    )
    return result


def objective_value(metrics: Mapping[str, float], objective: str) -> float:
    """Return the objective metric, raising TrialValueError when it is missing or not finite."""
    if objective not in metrics:
        raise TrialValueError(
            f"The trial logged no {objective}; it logged {sorted(metrics)}. Set search.objective "
            "to one of them, with its K listed in evaluation.k."
        )
    value = float(metrics[objective])
    if not math.isfinite(value):
        raise TrialValueError(f"The objective {objective} is {value}, not a finite number.")
    return value


def find_identical_trial(
    study: optuna.Study, number: int, params: Mapping[str, Any]
) -> FrozenTrial | None:
    """Return an earlier trial with the same parameters whose outcome can be reused.

    COMPLETE trials with stored metrics qualify, and FAIL trials whose error would repeat
    (not those interrupted or aborted).
    """
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
        if trial.number == number or trial.params != params:
            continue
        if trial.state == TrialState.COMPLETE and METRICS_ATTR in trial.user_attrs:
            return trial
        if trial.user_attrs.get(ERROR_KIND_ATTR) == ERROR_KIND_DETERMINISTIC:
            return trial
    return None


def _reuse(previous: FrozenTrial) -> TrialResult:
    if previous.state == TrialState.COMPLETE:
        # The earlier trial's timings do not describe this one, which fits nothing.
        metrics = previous.user_attrs[METRICS_ATTR]
        return TrialResult({key: value for key, value in metrics.items() if "time/" not in key})
    raise RepeatedFailureError(
        f"Trial {previous.number} with the same parameters failed: "
        f"{previous.user_attrs.get(ERROR_ATTR, 'unknown error')}"
    )


def _tell_failure(study: optuna.Study, trial: Trial, error: BaseException, kind: str) -> None:
    """Record why a trial failed and tell Optuna FAIL (without a value)."""
    message = f"{type(error).__name__}: {error}"[:2000]
    try:
        trial.set_user_attr(ERROR_ATTR, message)
        trial.set_user_attr(ERROR_KIND_ATTR, kind)
    except optuna.exceptions.UpdateFinishedTrialError:
        # The trial was already finished in Optuna (the error came from closing its MLflow run).
        return
    study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)


def _outcome(context: StudyContext, kept: _BestWeights, n_run: int) -> StudyOutcome:
    study = context.study
    with context.lock.hold():
        fail_stale_trials(study, context.search.stale_after_s, context.tracking.uri)
        trials = study.get_trials(deepcopy=False)
    counts: dict[str, int] = {}
    for trial in trials:
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    complete = [trial for trial in trials if trial.state == TrialState.COMPLETE]
    best = study.best_trial if complete else None
    weights = kept.weights if best is not None and kept.number == best.number else None
    log.info(
        "Study %r: %s; %d trials run by this process; best trial %s",
        study.study_name,
        ", ".join(f"{count} {state}" for state, count in sorted(counts.items())),
        n_run,
        "none"
        if best is None
        else f"{best.number} ({context.search.objective} = {best.value:.5f})",
    )
    return StudyOutcome(
        best=best,
        best_weights=weights,
        counts=counts,
        n_run_here=n_run,
        others_running=counts.get(TrialState.RUNNING.name, 0) > 0,
    )


class _BestWeights:
    """B of the best trial this process fitted, while it is the best of the study."""

    def __init__(self) -> None:
        self.number: int | None = None
        self.weights: Any = None

    def offer(self, study: optuna.Study, number: int, weights: Any) -> None:
        best_number = study.best_trial.number
        if weights is not None and best_number == number:
            self.number, self.weights = number, weights
        elif self.number is not None and self.number != best_number:
            self.number, self.weights = None, None


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM (sent by schedulers and launchers on cancel) into KeyboardInterrupt.

    The running trial then ends FAIL in Optuna and KILLED in MLflow instead of staying
    RUNNING until a rerun finds it. Signal handlers can only be set in the main thread.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _route_optuna_logs() -> None:
    """Send Optuna's log records through the root logger (Hydra's console and job log)."""
    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
