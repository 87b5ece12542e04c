"""Optuna tuning inside a job: search space, storage, trial failures, reuse and resumption."""

from __future__ import annotations

import math
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import psutil
import pytest
import scipy.sparse as sp
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient
from optuna.samplers import CmaEsSampler, GPSampler, QMCSampler, RandomSampler, TPESampler
from optuna.trial import TrialState
from tests.conftest import PROJECT_ROOT
from tests.test_pipeline import client_for, compose_job

from l3ae_bench.errors import ConfigError
from l3ae_bench.evaluation import EvaluationResult
from l3ae_bench.pipeline import head_items, run_job
from l3ae_bench.solvers.base import hyperparameter
from l3ae_bench.solvers.ease import EASEConfig
from l3ae_bench.solvers.l3ae import L3AEConfig
from l3ae_bench.tracking import start_job_run
from l3ae_bench.tuning import job as tuning_job
from l3ae_bench.tuning.job import TuningError
from l3ae_bench.tuning.settings import (
    SearchConfig,
    derive_study_name,
    fixed_from_overrides,
    resolve_space,
)
from l3ae_bench.tuning.storage import parse_storage, redact_url
from l3ae_bench.tuning.study import make_sampler
from l3ae_bench.tuning.trials import MLFLOW_RUN_ATTR, WORKER_ATTR, fail_stale_trials


def optuna_search(**values) -> SearchConfig:
    return SearchConfig(name="optuna", **values)


# --- search space -------------------------------------------------------------------------


def test_space_from_solver_config():
    space = resolve_space(L3AEConfig, optuna_search())
    assert sorted(space) == ["lambda_e", "lambda_f", "lambda_x"]
    assert space["lambda_f"].log
    assert not space["lambda_x"].log
    assert (space["lambda_x"].low, space["lambda_x"].high) == (-100.0, 500.0)


def test_space_fixed_excludes():
    space = resolve_space(L3AEConfig, optuna_search(fixed=["lambda_f"]))
    assert "lambda_f" not in space


def test_space_command_line_fixes_tunable_only():
    search = optuna_search(fixed_on_command_line=["lambda_e", "not_tunable"])
    assert sorted(resolve_space(L3AEConfig, search)) == ["lambda_f", "lambda_x"]


def test_space_range_override():
    space = resolve_space(L3AEConfig, optuna_search(ranges={"lambda_x": {"high": 200}}))
    assert space["lambda_x"].high == 200.0
    assert space["lambda_x"].low == -100.0


def test_space_unknown_name_fails():
    with pytest.raises(ConfigError, match="lambda"):
        resolve_space(EASEConfig, optuna_search(fixed=["lambda"]))


def test_space_all_fixed_fails():
    with pytest.raises(ConfigError, match="nothing to search"):
        resolve_space(EASEConfig, optuna_search(fixed=["lambda_x"]))


def test_space_log_range_needs_positive_low():
    with pytest.raises(ConfigError, match="low > 0"):
        resolve_space(EASEConfig, optuna_search(ranges={"lambda_x": {"low": 0.0}}))


def test_space_int_field_is_integer():
    @dataclass(frozen=True)
    class Neighbours:
        k: int = hyperparameter(10, 1, 100, log=True)

    assert resolve_space(Neighbours, optuna_search())["k"].integer


def test_objective_must_be_validation():
    with pytest.raises(ConfigError, match="leak"):
        optuna_search(objective="test/ndcg_at_20")


def test_fixed_from_overrides():
    overrides = ["solver=l3ae", "solver.lambda_f=5", "+solver.extra=1", "solver.name=x", "k=1"]
    assert fixed_from_overrides(overrides) == ["extra", "lambda_f"]


def test_study_name_derived():
    search = optuna_search(study_suffix="v2")
    name = derive_study_name(search, "games", "minilm", "l3ae", {"lambda_f": 5.0})
    assert name == "games/minilm/l3ae/lambda_f=5/v2"


def test_study_name_explicit():
    search = optuna_search(study_name="mine")
    assert derive_study_name(search, "games", "minilm", "l3ae", {}) == "mine"


# --- storage ------------------------------------------------------------------------------


def test_storage_relative_sqlite_fails():
    with pytest.raises(ConfigError, match="absolute path"):
        parse_storage("sqlite:///optuna.db")


def test_storage_memory_fails():
    with pytest.raises(ConfigError, match="in-memory"):
        parse_storage("sqlite:///:memory:")


def test_storage_journal_path():
    location = parse_storage("journal:///tmp/x/study.log")
    assert location.journal
    assert location.file == Path("/tmp/x/study.log")


def test_storage_unknown_scheme_fails():
    with pytest.raises(ConfigError, match="journal file"):
        parse_storage("/tmp/optuna.db")


def test_redact_url_hides_password():
    assert redact_url("postgresql://me:secret@host/db") == "postgresql://me:***@host/db"


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("tpe", TPESampler),
        ("random", RandomSampler),
        ("cmaes", CmaEsSampler),
        ("qmc", QMCSampler),
        ("gp", GPSampler),
    ],
)
def test_sampler_factory(name, cls):
    assert isinstance(make_sampler(optuna_search(sampler=name), 3), cls)


# --- head/tail split ------------------------------------------------------------------------


def test_head_items_most_popular():
    train = sp.csr_matrix(np.array([[1, 1, 0, 1, 0], [1, 0, 0, 1, 0], [1, 0, 1, 0, 0]]))
    assert head_items(train, 0.4).tolist() == [True, False, False, True, False]


# --- tuned jobs on the tiny dataset ---------------------------------------------------------


@pytest.fixture
def embeddings_file(tmp_path) -> Path:
    path = tmp_path / "tiny_items.npy"
    np.save(path, np.random.default_rng(0).standard_normal((12, 4)).astype(np.float32))
    return path


def tuned_values(tmp_path: Path, dataset: Path, embeddings: Path, *overrides: str) -> dict:
    return compose_job(
        tmp_path,
        [
            "dataset=games",
            f"dataset.path={dataset}",
            "encoder=precomputed",
            f"encoder.path={embeddings}",
            "solver=l3ae",
            "search=optuna",
            *overrides,
        ],
    )


def load_study(tmp_path: Path, name: str = "games/precomputed/l3ae") -> optuna.Study:
    storage = f"sqlite:///{tmp_path / 'optuna' / 'optuna.db'}"
    return optuna.load_study(study_name=name, storage=storage)


def child_runs(tmp_path: Path, parent_run_id: str) -> list:
    client = client_for(tmp_path)
    experiment = client.get_experiment_by_name("l3ae-bench").experiment_id
    runs = client.search_runs([experiment])
    return [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent_run_id]


def test_tuned_job_nests_trials(tmp_path, tiny_dataset, embeddings_file):
    values = tuned_values(tmp_path, tiny_dataset, embeddings_file, "search.n_trials=6")
    result = run_job(values)

    client = client_for(tmp_path)
    parent = client.get_run(result["run_id"])
    assert parent.info.status == "FINISHED"
    assert "test/ndcg_at_20" in parent.data.metrics
    assert "test/recall_at_20_head" in parent.data.metrics
    assert "best/lambda_e" in parent.data.metrics
    assert parent.data.tags["optuna.study"] == "games/precomputed/l3ae"
    trials = child_runs(tmp_path, result["run_id"])
    assert len(trials) == 6
    assert all("solver.lambda_x" in run.data.params for run in trials)
    study = load_study(tmp_path)
    assert len(study.trials) == 6
    stored_ids = {trial.user_attrs[MLFLOW_RUN_ATTR] for trial in study.trials}
    assert stored_ids == {run.info.run_id for run in trials}


def test_tuned_job_best_matches_study(tmp_path, tiny_dataset, embeddings_file):
    values = tuned_values(tmp_path, tiny_dataset, embeddings_file, "search.n_trials=5")
    result = run_job(values)
    study = load_study(tmp_path)
    assert result["metrics"]["val/ndcg_at_20"] == pytest.approx(study.best_value)
    assert result["best_params"] == study.best_params


def test_rerun_resumes_study(tmp_path, tiny_dataset, embeddings_file):
    first = run_job(tuned_values(tmp_path, tiny_dataset, embeddings_file, "search.n_trials=3"))
    second = run_job(tuned_values(tmp_path, tiny_dataset, embeddings_file, "search.n_trials=5"))
    assert second["run_id"] == first["run_id"]
    assert len(load_study(tmp_path).trials) == 5
    assert len(child_runs(tmp_path, first["run_id"])) == 5


def test_rerun_finished_study_adds_no_trial(tmp_path, tiny_dataset, embeddings_file):
    values = tuned_values(tmp_path, tiny_dataset, embeddings_file, "search.n_trials=3")
    run_job(values)
    result = run_job(values)
    assert len(load_study(tmp_path).trials) == 3
    assert client_for(tmp_path).get_run(result["run_id"]).info.status == "FINISHED"


def test_nan_trial_fails_and_study_finishes(tmp_path, tiny_dataset, embeddings_file, monkeypatch):
    calls = []
    evaluate_splits = tuning_job.evaluate_splits

    def nan_on_second_call(*args, **kwargs):
        results = evaluate_splits(*args, **kwargs)
        calls.append(1)
        if len(calls) != 2:
            return results
        val = results["val"]
        nan_metrics = {key: math.nan for key in val.metrics}
        return {"val": EvaluationResult(nan_metrics, val.per_user, val.users, 0)}

    monkeypatch.setattr(tuning_job, "evaluate_splits", nan_on_second_call)
    values = tuned_values(tmp_path, tiny_dataset, embeddings_file, "search.n_trials=4")
    result = run_job(values)

    study = load_study(tmp_path)
    states = [trial.state for trial in study.trials]
    assert states.count(TrialState.FAIL) == 1
    assert states.count(TrialState.COMPLETE) == 3
    failed = study.trials[states.index(TrialState.FAIL)]
    assert failed.value is None
    assert "not a finite number" in failed.user_attrs["error"]
    run = client_for(tmp_path).get_run(failed.user_attrs[MLFLOW_RUN_ATTR])
    assert run.info.status == "FAILED"
    assert "not a finite number" in run.data.tags["error"]
    assert client_for(tmp_path).get_run(result["run_id"]).info.status == "FINISHED"


def test_invalid_params_fail_trials(tmp_path, tiny_dataset, embeddings_file):
    values = tuned_values(
        tmp_path,
        tiny_dataset,
        embeddings_file,
        "search.n_trials=8",
        "search.sampler=random",
        "+search.ranges.lambda_x={low: -100, high: -1}",
        "+search.ranges.lambda_e={low: 1, high: 200}",
    )
    run_job(values)
    study = load_study(tmp_path)
    failed = [trial for trial in study.trials if trial.state == TrialState.FAIL]
    complete = [trial for trial in study.trials if trial.state == TrialState.COMPLETE]
    assert failed, "expected some λ_X + λ_E ≤ 0 proposals"
    assert complete, "expected some valid proposals"
    assert all("λ_X + λ_E" in trial.user_attrs["error"] for trial in failed)
    statuses = {
        client_for(tmp_path).get_run(t.user_attrs[MLFLOW_RUN_ATTR]).info.status for t in failed
    }
    assert statuses == {"FAILED"}


def test_all_trials_failing_fails_job(tmp_path, tiny_dataset, embeddings_file):
    values = tuned_values(
        tmp_path,
        tiny_dataset,
        embeddings_file,
        "search.n_trials=3",
        "+search.ranges.lambda_x={low: -100, high: -60}",
        "+search.ranges.lambda_e={low: 1, high: 50}",
    )
    with pytest.raises(TuningError, match="All 3 trials"):
        run_job(values)
    client = client_for(tmp_path)
    experiment = client.get_experiment_by_name("l3ae-bench").experiment_id
    jobs = [
        run
        for run in client.search_runs([experiment])
        if run.data.tags.get("l3ae_bench.kind") == "job"
    ]
    assert [run.info.status for run in jobs] == ["FAILED"]


def test_identical_params_reuse_result(tmp_path, tiny_dataset, embeddings_file):
    run_job(tuned_values(tmp_path, tiny_dataset, embeddings_file, "search.n_trials=1"))
    study = load_study(tmp_path)
    first = study.trials[0]
    study.enqueue_trial(first.params, skip_if_exists=False)
    study.enqueue_trial(first.params, skip_if_exists=False)
    run_job(tuned_values(tmp_path, tiny_dataset, embeddings_file, "search.n_trials=3"))

    trials = load_study(tmp_path).trials
    assert [trial.user_attrs.get("reused_from") for trial in trials] == [None, 0, 0]
    assert {trial.value for trial in trials} == {first.value}
    reused_run = client_for(tmp_path).get_run(trials[1].user_attrs[MLFLOW_RUN_ATTR])
    assert reused_run.data.tags["optuna.reused_from"] == "0"
    assert "time/fit_s" not in reused_run.data.metrics


def test_fixed_setting_stays_and_names_study(tmp_path, tiny_dataset, embeddings_file):
    values = tuned_values(
        tmp_path,
        tiny_dataset,
        embeddings_file,
        "search.n_trials=2",
        "solver.lambda_f=3",
        "search.fixed=[lambda_f]",
    )
    run_job(values)
    study = load_study(tmp_path, "games/precomputed/l3ae/lambda_f=3")
    assert all("lambda_f" not in trial.params for trial in study.trials)
    assert all(trial.user_attrs["fixed"] == {"lambda_f": 3.0} for trial in study.trials)


def test_explicit_parent_run(tmp_path, tiny_dataset, embeddings_file):
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    (tmp_path / "mlruns").mkdir()
    with start_job_run(uri, "l3ae-bench", tmp_path / "mlruns" / "artifacts", "sweep", {}) as run:
        parent = run.run_id
    values = tuned_values(
        tmp_path,
        tiny_dataset,
        embeddings_file,
        "search.n_trials=2",
        f"search.parent_run_id={parent}",
    )
    result = run_job(values)
    assert result["run_id"] == parent
    assert len(child_runs(tmp_path, parent)) == 2
    assert "test/ndcg_at_20" in client_for(tmp_path).get_run(parent).data.metrics


def test_other_dataset_same_study_fails(tmp_path, tiny_dataset, embeddings_file):
    run_job(tuned_values(tmp_path, tiny_dataset, embeddings_file, "search.n_trials=1"))
    moved = tmp_path / "moved"
    moved.symlink_to(tiny_dataset)
    with pytest.raises(ConfigError, match="dataset.path"):
        run_job(tuned_values(tmp_path, moved, embeddings_file, "search.n_trials=1"))


def test_objective_k_must_be_evaluated(tmp_path, tiny_dataset, embeddings_file):
    values = tuned_values(tmp_path, tiny_dataset, embeddings_file, "objective=val/ndcg_at_50")
    with pytest.raises(ConfigError, match="K=50"):
        run_job(values)


def test_bad_search_setting_fails_run(tmp_path, tiny_dataset, embeddings_file):
    values = tuned_values(tmp_path, tiny_dataset, embeddings_file, "search.sampler=grid")
    with pytest.raises(ConfigError, match="search.sampler"):
        run_job(values)
    client = client_for(tmp_path)
    (run,) = client.search_runs([client.get_experiment_by_name("l3ae-bench").experiment_id])
    assert run.info.status == "FAILED"


# --- stale trials ---------------------------------------------------------------------------


def dead_worker() -> dict:
    """Return the worker attr of a process that has already exited."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    started = psutil.Process(child.pid).create_time()
    child.wait()
    return {"host": socket.gethostname(), "pid": child.pid, "started": started}


def test_stale_trial_of_dead_process_fails(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    trial = study.ask()
    trial.set_user_attr(WORKER_ATTR, dead_worker())
    with start_job_run(uri, "e", tmp_path / "artifacts", "trial-0", {}) as run:
        trial.set_user_attr(MLFLOW_RUN_ATTR, run.run_id)
        run.keep_running = True  # as a killed process leaves it

    assert fail_stale_trials(study, 300.0, uri) == [0]
    frozen = study.trials[0]
    assert frozen.state == TrialState.FAIL
    assert frozen.user_attrs["error_kind"] == "interrupted"
    assert client_run_status(uri, run.run_id) == "KILLED"


def client_run_status(uri: str, run_id: str) -> str:
    return MlflowClient(uri).get_run(run_id).info.status


def test_live_trial_stays_running(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    trial = study.ask()
    me = {"host": socket.gethostname(), "pid": psutil.Process().pid}
    trial.set_user_attr(WORKER_ATTR, {**me, "started": psutil.Process().create_time()})
    assert fail_stale_trials(study, 300.0, f"sqlite:///{tmp_path / 'mlflow.db'}") == []


def test_trial_without_worker_fails(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    study.ask()
    assert fail_stale_trials(study, 300.0, f"sqlite:///{tmp_path / 'mlflow.db'}") == [0]


def test_remote_trial_without_heartbeat_fails(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    old = study.ask()
    old.set_user_attr(WORKER_ATTR, {"host": "elsewhere", "pid": 1, "started": 0.0})
    old.set_user_attr("heartbeat", time.time() - 1000)
    recent = study.ask()
    recent.set_user_attr(WORKER_ATTR, {"host": "elsewhere", "pid": 2, "started": 0.0})
    recent.set_user_attr("heartbeat", time.time())
    assert fail_stale_trials(study, 300.0, f"sqlite:///{tmp_path / 'mlflow.db'}") == [0]


def test_last_worker_logs_test_metrics(tmp_path, tiny_dataset, embeddings_file):
    values = tuned_values(tmp_path, tiny_dataset, embeddings_file, "search.n_trials=1")
    run_job(values)  # creates the study and its job run
    study = load_study(tmp_path)
    other = study.ask()  # a trial that a live worker (this process) is still running
    me = psutil.Process()
    other.set_user_attr(
        WORKER_ATTR, {"host": socket.gethostname(), "pid": me.pid, "started": me.create_time()}
    )

    values = tuned_values(tmp_path, tiny_dataset, embeddings_file, "search.n_trials=3")
    waiting = run_job(values)
    client = client_for(tmp_path)
    assert client.get_run(waiting["run_id"]).info.status == "RUNNING"
    assert len(load_study(tmp_path).trials) == 3
    # Only the first job logged test metrics so far.
    assert len(client.get_metric_history(waiting["run_id"], "test/ndcg_at_20")) == 1

    study.tell(other, state=TrialState.FAIL)
    last = run_job(values)
    run = client.get_run(last["run_id"])
    assert last["run_id"] == waiting["run_id"]
    assert run.info.status == "FINISHED"
    assert len(client.get_metric_history(last["run_id"], "test/ndcg_at_20")) == 2


def test_parent_run_id_from_env(tmp_path, tiny_dataset, embeddings_file, monkeypatch):
    monkeypatch.setenv("L3AE_BENCH_PARENT_RUN_ID", "abc123")
    values = tuned_values(tmp_path, tiny_dataset, embeddings_file)
    assert values["search"]["parent_run_id"] == "abc123"


@pytest.mark.parametrize(
    ("launcher", "target"),
    [
        ("local_parallel", "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"),
        ("ray_local", "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"),
        ("ray_cluster", "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"),
        ("slurm", "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"),
    ],
)
def test_launcher_config_composes(tmp_path, launcher, target):
    plugin = target.rsplit(".", 2)[0]
    pytest.importorskip(plugin, reason=f"launcher plugin {plugin} not installed")
    with initialize_config_dir(str(PROJECT_ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[f"paths.root={tmp_path}", f"hydra/launcher={launcher}"],
            return_hydra_config=True,
        )
    assert cfg.hydra.launcher._target_ == target
