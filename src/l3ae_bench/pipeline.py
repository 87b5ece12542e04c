"""One benchmark job: load data, embed item texts, fit a solver, evaluate, track in MLflow."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
from l3ae_bench.evaluation import EvaluationResult, evaluate, item_item_scorer
from l3ae_bench.solvers import FitInputs, Fitted, SolverSpec, parse_solver_config
from l3ae_bench.tracking import (
    default_tracking_uri,
    flatten,
    metric_key,
    redact_tree,
    start_job_run,
)

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
    configuration or data still leaves a FAILED run with the error recorded.
    """
    paths = build(PathsConfig, values.get("paths") or {}, "paths")
    tracking = build(TrackingConfig, values.get("tracking") or {}, "tracking")
    mlruns = Path(paths.mlruns)
    mlruns.mkdir(parents=True, exist_ok=True)
    uri = tracking.uri or default_tracking_uri(mlruns)
    redacted = redact_tree(dict(values))
    all_tags = {
        "dataset": (values.get("dataset") or {}).get("name", ""),
        "encoder": (values.get("encoder") or {}).get("name", ""),
        "solver": (values.get("solver") or {}).get("name", ""),
        **(tags or {}),
    }

    with start_job_run(
        uri, tracking.experiment, mlruns / "artifacts", run_name(values), all_tags
    ) as run:
        run.log_params(flatten(redacted))
        run.log_text(yaml.safe_dump(redacted, sort_keys=False), "config.yaml")
        job = parse_job_config(values)
        metrics = _execute(job, run)
        run.log_json(metrics, "metrics.json")
        return {"run_id": run.run_id, "tracking_uri": uri, "metrics": metrics}


def _execute(job: JobConfig, run: Any) -> dict[str, float]:
    """Load, embed, fit and evaluate, logging timings and metrics to `run`."""
    cache_dir = Path(job.paths.cache)

    started = time.perf_counter()
    data = load_dataset(job.dataset_format, job.dataset, cache_dir)
    timings = {"time/load_s": time.perf_counter() - started}
    run.log_params({f"data.{key}": value for key, value in data.summary().items()})

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
        reuse=False,
        backend=compute.backend,
        device=compute.device,
    )
    started = time.perf_counter()
    with threadpool_limits(limits=compute.blas_threads, user_api="blas"):
        fitted = spec.fit(inputs, job.solver)
    timings["time/fit_s"] = time.perf_counter() - started

    started = time.perf_counter()
    results = _evaluate_splits(job, data, fitted)
    timings["time/evaluation_s"] = time.perf_counter() - started

    metrics: dict[str, float] = {}
    for split, result in results.items():
        metrics.update({metric_key(split, key): value for key, value in result.metrics.items()})
        metrics[metric_key(split, "n_users")] = float(len(result.users))
        metrics[metric_key(split, "n_skipped_users")] = float(result.n_skipped_users)
        run.log_arrays({"user_index": result.users, **result.per_user}, f"per_user/{split}.npz")
    metrics.update(timings)
    run.log_metrics(metrics)
    log.info(
        "Timings: %s",
        ", ".join(f"{key.split('/')[1]} {value:.2f}" for key, value in timings.items()),
    )
    return metrics


def _evaluate_splits(
    job: JobConfig, data: Interactions, fitted: Fitted
) -> dict[str, EvaluationResult]:
    """Evaluate on validation (train items excluded) and test (train, optionally val, excluded)."""
    scorer = fitted if callable(fitted) else item_item_scorer(data.train, fitted)
    settings = job.evaluation
    test_exclude = [data.train, data.val] if settings.mask_val_in_test else [data.train]
    results = {}
    for split, targets, exclude in (
        ("val", data.val, [data.train]),
        ("test", data.test, test_exclude),
    ):
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
