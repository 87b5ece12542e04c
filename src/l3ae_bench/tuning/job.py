"""A job with `search=optuna`: one Optuna study per dataset × encoder × solver, one MLflow run.

The job opens (or resumes) its study and loads the data and embeddings once. Each trial fits
and evaluates on validation with the shared `FitInputs`, so the Gram matrix is built once per
study. At the end the best trial's B is evaluated on validation and test, and those metrics
go to the job's run. Trials are MLflow runs nested under the job's run.

The job's run is stored with the study (user attr `l3ae_bench.mlflow_parent_run_id`), so a
rerun of an interrupted command, or a second worker on the same study, logs into the same run.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from l3ae_bench.config import EvaluationConfig, PathsConfig, build
from l3ae_bench.errors import BenchError, ConfigError
from l3ae_bench.pipeline import (
    JobConfig,
    JobTarget,
    PreparedJob,
    evaluate_and_log,
    evaluate_splits,
    fit_solver,
    log_config,
    parse_job_config,
    prepare_job,
    result_metrics,
)
from l3ae_bench.solvers import SolverSpec, parse_solver_config
from l3ae_bench.tracking import JobRun, find_run, flatten, redact_tree, resume_job_run
from l3ae_bench.tuning.settings import (
    Parameter,
    SearchConfig,
    derive_study_name,
    fixed_names,
    resolve_space,
)
from l3ae_bench.tuning.storage import (
    PARENT_RUN_ATTR,
    StorageLocation,
    StorageLock,
    default_storage_url,
    open_storage,
    open_study,
    parse_storage,
    redact_url,
)
from l3ae_bench.tuning.study import (
    StudyContext,
    StudyOutcome,
    TrialResult,
    TrialTracking,
    optimize,
)
from l3ae_bench.tuning.trials import ERROR_ATTR, METRICS_ATTR

log = logging.getLogger(__name__)

# Encoder settings that change how embeddings are computed, not what they are.
ENCODER_RUNTIME_KEYS = ("batch", "device", "progress", "timeout", "retr", "concurren", "workers")


class TuningError(BenchError):
    """A study ended without any usable trial."""


@dataclass(frozen=True)
class StudyPlan:
    """An opened study and the search it runs."""

    study: optuna.Study
    lock: StorageLock
    location: StorageLocation
    spec: SolverSpec
    space: Mapping[str, Parameter]
    fixed: Mapping[str, Any]


def run_tuned_job(
    values: Mapping[str, Any], search: SearchConfig, target: JobTarget
) -> dict[str, Any]:
    """Run or resume the job's study and return the best trial's metrics and the run id."""
    try:
        plan = plan_study(values, search)
    except BenchError:
        # Record a study that cannot open in a FAILED run, like any other job error.
        with target.start_run() as run:
            log_config(run, values)
            raise

    with ExitStack() as stack:
        run, joined = _open_job_run(plan, search, target, stack)
        run.set_tags(
            {
                "optuna.study": plan.study.study_name,
                "optuna.storage": redact_url(plan.location.url),
            }
        )
        log_config(run, values, joined=joined)
        job = parse_job_config(values)
        prepared = prepare_job(job, run, reuse=True)
        tracking = TrialTracking(
            target.uri, run.experiment_name(), target.artifact_root, run.run_id, target.tags
        )
        context = StudyContext(plan.study, plan.lock, search, plan.space, plan.fixed, tracking)

        started = time.perf_counter()
        outcome = optimize(context, _objective(job, prepared))
        study_s = time.perf_counter() - started
        _log_study(run, outcome, study_s)
        best = outcome.best
        if outcome.others_running:
            log.info(
                "Other workers still run trials of study %r; the last one to finish logs the "
                "best trial's test metrics to MLflow run %s",
                plan.study.study_name,
                run.run_id,
            )
            run.keep_running = True
            metrics = {} if best is None else dict(best.user_attrs.get(METRICS_ATTR, {}))
        elif best is None:
            raise TuningError(_no_trial_message(plan.study))
        else:
            metrics = _finish(job, prepared, run, plan, outcome, search)
        return {
            "run_id": run.run_id,
            "tracking_uri": target.uri,
            "metrics": metrics,
            "study": plan.study.study_name,
            "best_params": {**plan.fixed, **({} if best is None else best.params)},
        }


def plan_study(values: Mapping[str, Any], search: SearchConfig) -> StudyPlan:
    """Resolve the search space, the storage and the study name, and open the study."""
    paths = build(PathsConfig, values.get("paths") or {}, "paths")
    evaluation = build(EvaluationConfig, values.get("evaluation") or {}, "evaluation")
    if search.objective_k not in evaluation.k:
        raise ConfigError(
            f"search.objective={search.objective} needs K={search.objective_k} in "
            f"evaluation.k, which is {evaluation.k}; add it or pick another objective."
        )
    spec, solver_config = parse_solver_config(values.get("solver") or {})

    space = resolve_space(spec.config_class, search)
    fixed = {name: getattr(solver_config, name) for name in fixed_names(spec.config_class, search)}
    location = parse_storage(search.storage or default_storage_url(paths.root))
    name = derive_study_name(
        search,
        str((values.get("dataset") or {}).get("name", "dataset")),
        str((values.get("encoder") or {}).get("name", "encoder")),
        spec.name,
        fixed,
    )

    lock = StorageLock(location, Path(paths.root) / "optuna")
    # Under the lock: a new SQLite storage creates its tables on opening, which two processes
    # must not do at once.
    with lock.hold():
        storage = open_storage(location)
        study = open_study(storage, name, search.direction, study_settings(values, search, spec))
    log.info(
        "Study %r in %s: searching %s%s",
        name,
        redact_url(location.url),
        ", ".join(_describe(parameter) for parameter in space.values()),
        f"; fixed {fixed}" if fixed else "",
    )
    return StudyPlan(study, lock, location, spec, space, fixed)


def study_settings(
    values: Mapping[str, Any], search: SearchConfig, spec: SolverSpec
) -> dict[str, Any]:
    """Return the settings that decide what a trial's objective measures.

    A study resumed with other values for these raises instead of mixing incomparable trials:
    the dataset section, the encoder section when the solver reads embeddings (less runtime
    settings such as batch size and device), validation masking and the objective.
    """
    settings: dict[str, Any] = {"objective": search.objective}
    evaluation = values.get("evaluation") or {}
    settings["evaluation.mask_val_in_test"] = evaluation.get("mask_val_in_test", False)
    settings.update(flatten(redact_tree(values.get("dataset") or {}), "dataset."))
    if spec.uses_embeddings:
        encoder = flatten(redact_tree(values.get("encoder") or {}), "encoder.")
        settings.update(
            {
                key: value
                for key, value in encoder.items()
                if not any(part in key.rsplit(".", 1)[-1] for part in ENCODER_RUNTIME_KEYS)
            }
        )
    return settings


def _open_job_run(
    plan: StudyPlan, search: SearchConfig, target: JobTarget, stack: ExitStack
) -> tuple[JobRun, bool]:
    """Join the study's job run (or `search.parent_run_id`), or start one and store its id.

    Choosing and storing happen under the storage lock, so workers that start together
    agree on one run. Returns the run and whether it was joined.
    """
    with plan.lock.hold():
        stored = plan.study.user_attrs.get(PARENT_RUN_ATTR)
        parent = search.parent_run_id
        if parent is None and stored and find_run(target.uri, stored) is not None:
            parent = stored
        if parent is not None:
            run = stack.enter_context(resume_job_run(target.uri, parent))
        else:
            run = stack.enter_context(target.start_run())
        if parent is None or not stored:
            plan.study.set_user_attr(PARENT_RUN_ATTR, run.run_id)
    return run, parent is not None


def _objective(job: JobConfig, prepared: PreparedJob) -> Any:
    """Return the trial objective: fit with the trial's settings, evaluate on validation."""

    def objective(params: dict[str, Any]) -> TrialResult:
        solver_config = dataclasses.replace(job.solver, **params)
        B, fit_s = fit_solver(job, prepared, solver_config)
        started = time.perf_counter()
        metrics = result_metrics(evaluate_splits(job, prepared.data, B, ("val",)))
        metrics["time/fit_s"] = fit_s
        metrics["time/evaluation_s"] = time.perf_counter() - started
        return TrialResult(metrics, B)

    return objective


def _finish(
    job: JobConfig,
    prepared: PreparedJob,
    run: JobRun,
    plan: StudyPlan,
    outcome: StudyOutcome,
    search: SearchConfig,
) -> dict[str, float]:
    """Evaluate the best trial's B on validation and test and log it to the job's run."""
    best = outcome.best
    assert best is not None
    params = {**plan.fixed, **best.params}
    timings = dict(prepared.timings)
    B = outcome.best_weights
    if B is None:
        log.info("Refitting the best trial %d: %s", best.number, params)
        B, timings["time/fit_s"] = fit_solver(
            job, prepared, dataclasses.replace(job.solver, **params)
        )
    else:
        log.info("Reusing B of the best trial %d from memory", best.number)
    metrics = evaluate_and_log(job, prepared, B, run, timings)
    _check_refit(metrics, best, search.objective)
    run.log_metrics({f"best/{name}": float(value) for name, value in params.items()})
    run.log_json(
        {"trial": best.number, "params": params, search.objective: best.value},
        "best_params.json",
    )
    run.set_tags({"optuna.best_trial": best.number})
    run.log_json(metrics, "metrics.json")
    return metrics


def _check_refit(metrics: Mapping[str, float], best: optuna.trial.FrozenTrial, key: str) -> None:
    value = metrics.get(key)
    if value is not None and best.value is not None and abs(value - best.value) > 1e-4:
        log.warning(
            "Refitting trial %d gave %s = %.5f, but the trial recorded %.5f; the fit is not "
            "deterministic on this machine",
            best.number,
            key,
            value,
            best.value,
        )


def _log_study(run: JobRun, outcome: StudyOutcome, study_s: float) -> None:
    counts = outcome.counts
    metrics = {
        "study/n_trials": float(sum(counts.values())),
        "study/n_complete": float(counts.get("COMPLETE", 0)),
        "study/n_fail": float(counts.get("FAIL", 0)),
        "study/n_run_by_worker": float(outcome.n_run_here),
        "time/study_s": study_s,
    }
    if outcome.best is not None:
        metrics["study/best_trial"] = float(outcome.best.number)
    run.log_metrics(metrics)


def _no_trial_message(study: optuna.Study) -> str:
    trials = study.get_trials(deepcopy=False)
    errors = [str(trial.user_attrs.get(ERROR_ATTR, "")) for trial in trials]
    first = next((error for error in errors if error), "no error recorded")
    return (
        f"All {len(trials)} trials of study {study.study_name!r} failed, so there is no best "
        f"trial to evaluate on test. First error: {first}. Each trial's MLflow run has its "
        "error in the `error` tag; narrow the search with search.ranges or search.fixed."
    )


def _describe(parameter: Parameter) -> str:
    scale = "log" if parameter.log else "linear"
    return f"{parameter.name} in [{parameter.low:g}, {parameter.high:g}] ({scale})"
