"""One benchmark job: load data, embed item texts, fit a solver, evaluate, track in MLflow."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import yaml
from threadpoolctl import threadpool_limits

from l3ae_bench.config import (
    ComputeConfig,
    EvaluationConfig,
    PathsConfig,
    TrackingConfig,
    build,
)
from l3ae_bench.data.interactions import Interactions
from l3ae_bench.data.registry import load_dataset, parse_dataset_config
from l3ae_bench.encoders import embed_items, parse_encoder_config
from l3ae_bench.errors import ConfigError
from l3ae_bench.evaluation import EvaluationResult, Scorer, evaluate, item_item_scorer
from l3ae_bench.solvers import SOLVERS, FitInputs, Fitted, SolverSpec, parse_solver_config
from l3ae_bench.tracking import (
    JobRun,
    default_tracking_uri,
    flatten,
    metric_key,
    redact_tree,
    start_job_run,
)
from l3ae_bench.tuning.settings import SearchConfig, parse_search_config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobConfig:
    """The validated settings of one job."""

    dataset_format: str
    dataset: Any
    encoder_kind: str
    encoder: Any
    solver_spec: SolverSpec
    solver: Any
    evaluation: EvaluationConfig
    compute: ComputeConfig
    tracking: TrackingConfig
    paths: PathsConfig
    progress: bool = True


def parse_job_config(values: Mapping[str, Any]) -> JobConfig:
    """Validate the resolved config tree of a job into typed settings."""
    dataset_format, dataset = parse_dataset_config(values.get("dataset") or {})
    encoder_kind, encoder = parse_encoder_config(values.get("encoder") or {})
    solver_spec, solver = parse_solver_config(values.get("solver") or {})
    return JobConfig(
        dataset_format=dataset_format,
        dataset=dataset,
        encoder_kind=encoder_kind,
        encoder=encoder,
        solver_spec=solver_spec,
        solver=solver,
        evaluation=build(EvaluationConfig, values.get("evaluation") or {}, "evaluation"),
        compute=build(ComputeConfig, values.get("compute") or {}, "compute"),
        tracking=build(TrackingConfig, values.get("tracking") or {}, "tracking"),
        paths=build(PathsConfig, values.get("paths") or {}, "paths"),
        progress=bool(values.get("progress", True)),
    )


def run_name(values: Mapping[str, Any]) -> str:
    """Return `<solver>-<encoder>`, the run name of a job."""
    solver = (values.get("solver") or {}).get("name", "solver")
    encoder = (values.get("encoder") or {}).get("name", "encoder")
    return f"{solver}-{encoder}"


def run_job(values: Mapping[str, Any], tags: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Run one job from its resolved config tree and return its metrics and MLflow run id.

    The MLflow run opens before the settings are validated, so a job that fails on bad
    configuration or data still leaves a FAILED run with the error recorded. With
    `search=optuna` the job runs an Optuna study instead of a single fit
    (`l3ae_bench.tuning.job`).
    """
    paths = build(PathsConfig, values.get("paths") or {}, "paths")
    tracking = build(TrackingConfig, values.get("tracking") or {}, "tracking")
    mlruns = Path(paths.mlruns)
    mlruns.mkdir(parents=True, exist_ok=True)
    uri = tracking.uri or default_tracking_uri(mlruns)
    search, search_error = _parse_search(values)
    all_tags = job_tags(values, tags, search.name)
    target = JobTarget(uri, tracking.experiment, mlruns / "artifacts", run_name(values), all_tags)

    if search.enabled and search_error is None:
        # Imported here because the tuning job builds on the stages defined in this module.
        from l3ae_bench.tuning.job import run_tuned_job

        return run_tuned_job(values, search, target)

    with target.start_run() as run:
        log_config(run, values)
        if search_error is not None:
            raise search_error
        job = parse_job_config(values)
        metrics = _execute(job, run)
        run.log_json(metrics, "metrics.json")
        return {"run_id": run.run_id, "tracking_uri": uri, "metrics": metrics}


@dataclass(frozen=True)
class JobTarget:
    """Destination of a job's MLflow run: store, experiment, name and tags."""

    uri: str
    experiment: str
    artifact_root: Path
    run_name: str
    tags: Mapping[str, Any]

    def start_run(self, parent_run_id: str | None = None) -> AbstractContextManager[JobRun]:
        return start_job_run(
            self.uri, self.experiment, self.artifact_root, self.run_name, self.tags, parent_run_id
        )


def job_tags(
    values: Mapping[str, Any], tags: Mapping[str, Any] | None, search: str
) -> dict[str, Any]:
    """Return the tags of a job run: dataset, encoder, solver, search mode and `tags`."""
    solver = (values.get("solver") or {}).get("name", "")
    spec = SOLVERS.get(solver)
    return {
        "dataset": (values.get("dataset") or {}).get("name", ""),
        "encoder": (values.get("encoder") or {}).get("name", ""),
        "solver": solver,
        # The comparison report picks its baseline among solvers that read no item text.
        "solver.uses_text": "" if spec is None else str(_uses_text(spec)).lower(),
        "search": search,
        "l3ae_bench.kind": "job",
        **(tags or {}),
    }


def _uses_text(spec: SolverSpec) -> bool:
    return bool(getattr(spec, "uses_text", spec.uses_embeddings))


def log_config(run: JobRun, values: Mapping[str, Any], joined: bool = False) -> None:
    """Log the flattened config as params and the resolved config as `config.yaml`."""
    redacted = redact_tree(dict(values))
    if joined:
        run.log_new_params(flatten(redacted))
        return
    run.log_params(flatten(redacted))
    run.log_text(yaml.safe_dump(redacted, sort_keys=False), "config.yaml")


def _parse_search(values: Mapping[str, Any]) -> tuple[SearchConfig, ConfigError | None]:
    """Validate the `search` section; an invalid one is raised later, inside the job's run."""
    try:
        return parse_search_config(values.get("search")), None
    except ConfigError as error:
        return SearchConfig(), error


@dataclass
class PreparedJob:
    """Data and fit inputs of a job, built once and shared by every fit of the job."""

    data: Interactions
    inputs: FitInputs
    timings: dict[str, float] = field(default_factory=dict)


def prepare_job(job: JobConfig, run: JobRun, reuse: bool = False) -> PreparedJob:
    """Load the data and embed the item texts (when the solver reads embeddings).

    With reuse=True, the fit inputs keep the Gram matrix and the semantic side for later fits
    of the same job (a hyperparameter search), at the cost of one more n × n matrix.
    """
    cache_dir = Path(job.paths.cache)

    started = time.perf_counter()
    data = load_dataset(job.dataset_format, job.dataset, cache_dir)
    timings = {"time/load_s": time.perf_counter() - started}
    run.log_new_params({f"data.{key}": value for key, value in data.summary().items()})

    E = None
    if job.solver_spec.uses_embeddings:
        started = time.perf_counter()
        embedded = embed_items(
            job.encoder_kind, job.encoder, data.item_texts, cache_dir, progress=job.progress
        )
        timings["time/embedding_s"] = time.perf_counter() - started
        run.log_metrics({f"embedding/{key}": value for key, value in embedded.stats.items()})
        run.log_params({f"embedding.{key}": value for key, value in embedded.params.items()})
        E = embedded.E
    else:
        log.info("Solver %s reads no embeddings; the encoder is not run", job.solver_spec.name)

    spec, compute = job.solver_spec, job.compute
    if compute.backend == "torch" and not spec.torch_backend:
        log.warning("Solver %s has no torch route; it runs on NumPy", spec.name)
    inputs = FitInputs(
        data.train,
        E,
        compute.dtype,
        item_texts=data.item_texts if spec.uses_texts else None,
        reuse=reuse,
        backend=compute.backend,
        device=compute.device,
    )
    return PreparedJob(data, inputs, timings)


def fit_solver(job: JobConfig, prepared: PreparedJob, solver_config: Any) -> tuple[Fitted, float]:
    """Fit the job's solver and return B (or a scorer) with the fit time in seconds."""
    started = time.perf_counter()
    with threadpool_limits(limits=job.compute.blas_threads, user_api="blas"):
        fitted = job.solver_spec.fit(prepared.inputs, solver_config)
    return fitted, time.perf_counter() - started


def _execute(job: JobConfig, run: JobRun) -> dict[str, float]:
    """Load, embed, fit and evaluate, logging timings and metrics to `run`."""
    prepared = prepare_job(job, run)
    B, fit_s = fit_solver(job, prepared, job.solver)
    metrics = evaluate_and_log(job, prepared, B, run, {**prepared.timings, "time/fit_s": fit_s})
    return metrics


def evaluate_and_log(
    job: JobConfig,
    prepared: PreparedJob,
    B: Fitted,
    run: JobRun,
    timings: Mapping[str, float],
) -> dict[str, float]:
    """Evaluate B on validation and test (with the head/tail split), log and return metrics."""
    started = time.perf_counter()
    results = evaluate_splits(job, prepared.data, B, ("val", "test"))
    head_tail = evaluate_head_tail(job, prepared.data, B)
    timings = {**timings, "time/evaluation_s": time.perf_counter() - started}

    metrics = result_metrics(results)
    metrics.update(head_tail)
    for split, result in results.items():
        run.log_arrays({"user_index": result.users, **result.per_user}, f"per_user/{split}.npz")
    metrics.update(timings)
    run.log_metrics(metrics)
    log.info(
        "Timings: %s",
        ", ".join(f"{key.split('/')[1]} {value:.2f}" for key, value in timings.items()),
    )
    return metrics


def result_metrics(results: Mapping[str, EvaluationResult]) -> dict[str, float]:
    """Flatten evaluation results to MLflow keys such as `val/ndcg_at_20`."""
    metrics: dict[str, float] = {}
    for split, result in results.items():
        metrics.update({metric_key(split, key): value for key, value in result.metrics.items()})
        metrics[metric_key(split, "n_users")] = float(len(result.users))
        metrics[metric_key(split, "n_skipped_users")] = float(result.n_skipped_users)
    return metrics


def evaluate_splits(
    job: JobConfig, data: Interactions, B: Fitted, splits: Sequence[str] = ("val", "test")
) -> dict[str, EvaluationResult]:
    """Evaluate on validation (train items excluded) and test (train, optionally val, excluded)."""
    scorer = make_scorer(data, B)
    settings = job.evaluation
    test_exclude = [data.train, data.val] if settings.mask_val_in_test else [data.train]
    plan = {"val": (data.val, [data.train]), "test": (data.test, test_exclude)}
    results = {}
    for split in splits:
        targets, exclude = plan[split]
        started = time.perf_counter()
        results[split] = evaluate(scorer, targets, exclude, settings.k, settings.batch_size)
        log.info(
            "%s: %s (%d users, %d skipped without targets) in %.2fs",
            split,
            ", ".join(f"{key} {value:.5f}" for key, value in results[split].metrics.items()),
            len(results[split].users),
            results[split].n_skipped_users,
            time.perf_counter() - started,
        )
    return results


def evaluate_head_tail(job: JobConfig, data: Interactions, B: Fitted) -> dict[str, float]:
    """Return test metrics with targets restricted to head items and to tail items.

    Head items are the `evaluation.head_fraction` most popular items by training count; the
    ranking still covers all items, and only hits on the group's items count. Keys look like
    `test/recall_at_20_head` and `test/ndcg_at_20_tail`.
    """
    fraction = job.evaluation.head_fraction
    if fraction is None:
        return {}
    head = head_items(data.train, fraction)
    scorer = make_scorer(data, B)
    settings = job.evaluation
    exclude = [data.train, data.val] if settings.mask_val_in_test else [data.train]
    metrics = {"data/n_head_items": float(head.sum())}
    for group, mask in (("head", head), ("tail", ~head)):
        targets = data.test @ sp.diags(mask.astype(np.float32))
        targets = sp.csr_matrix(targets)
        targets.eliminate_zeros()
        result = evaluate(scorer, targets, exclude, settings.k, settings.batch_size)
        metrics.update({f"test/{key}_{group}": value for key, value in result.metrics.items()})
        metrics[f"test/n_users_{group}"] = float(len(result.users))
    return metrics


def make_scorer(data: Interactions, fitted: Fitted) -> Scorer:
    """Return the scorer of a fit: item-item weights score users from their training rows."""
    return fitted if callable(fitted) else item_item_scorer(data.train, fitted)


def head_items(train: sp.csr_matrix, fraction: float) -> np.ndarray:
    """Return a boolean mask of the ⌈fraction·n_items⌉ items with the most training interactions.

    Ties at the boundary go to the lower item index.
    """
    counts = np.asarray(train.sum(axis=0)).ravel()
    n_head = int(np.ceil(fraction * train.shape[1]))
    order = np.argsort(-counts, kind="stable")
    mask = np.zeros(train.shape[1], dtype=bool)
    mask[order[:n_head]] = True
    return mask
