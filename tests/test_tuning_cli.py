"""Tuned jobs through `src/run.py` in subprocesses: kill and resume, shared studies, launchers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from tests.conftest import PROJECT_ROOT, make_splits, write_paper_layout
from tests.test_pipeline import client_for

from l3ae_bench.tuning.storage import StorageLock, parse_storage

pytestmark = pytest.mark.slow

STUDY = "games/precomputed/l3ae"
# Large enough that one L3AE trial takes a noticeable fraction of a second, so a kill lands
# inside a trial and two workers overlap.
MID_USERS, MID_ITEMS = 300, 2000


@pytest.fixture
def mid_dataset(tmp_path) -> tuple[Path, Path]:
    """A 300-user × 2000-item dataset folder and a matching embeddings file."""
    folder = write_paper_layout(tmp_path / "mid", make_splits(MID_USERS, MID_ITEMS, seed=1))
    embeddings = tmp_path / "mid_items.npy"
    E = np.random.default_rng(1).standard_normal((MID_ITEMS, 16)).astype(np.float32)
    np.save(embeddings, E)
    return folder, embeddings


@pytest.fixture
def tiny_embeddings(tmp_path) -> Path:
    path = tmp_path / "tiny_items.npy"
    np.save(path, np.random.default_rng(0).standard_normal((12, 4)).astype(np.float32))
    return path


def job_args(root: Path, dataset: Path, embeddings: Path, *overrides: str) -> list[str]:
    return [
        sys.executable,
        str(PROJECT_ROOT / "src" / "run.py"),
        *(["-m"] if "-m" in overrides else []),
        f"paths.root={root}",
        "progress=false",
        "dataset=games",
        f"dataset.path={dataset}",
        "encoder=precomputed",
        f"encoder.path={embeddings}",
        "solver=l3ae",
        "search=optuna",
        *(item for item in overrides if item != "-m"),
    ]


def cli_env() -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_AUTH_MODE": "disabled"}
    env.pop("L3AE_BENCH_ROOT", None)
    env.pop("L3AE_BENCH_PARENT_RUN_ID", None)
    return env


def run(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, capture_output=True, text=True, env=cli_env(), timeout=timeout, check=False
    )


def experiment_runs(root: Path) -> list:
    client = client_for(root)
    experiment = client.get_experiment_by_name("l3ae-bench")
    return client.search_runs([experiment.experiment_id])


def job_runs(root: Path) -> list:
    return [run for run in experiment_runs(root) if run.data.tags["l3ae_bench.kind"] == "job"]


def trial_runs(root: Path, parent_run_id: str) -> list:
    return [
        run
        for run in experiment_runs(root)
        if run.data.tags.get("mlflow.parentRunId") == parent_run_id
    ]


def wait_for_running_trial(storage: str, process: subprocess.Popen, min_complete: int) -> None:
    """Poll the storage until a trial with an MLflow run is RUNNING after `min_complete`."""
    location = parse_storage(storage)
    lock = StorageLock(location, location.file.parent)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert process.poll() is None, "the job ended before it could be killed"
        trials = []
        if location.file.exists():
            # The job creates the storage's tables under this lock; opening it unlocked
            # could race with that.
            with lock.hold():
                names = optuna.get_all_study_names(storage)
            if STUDY in names:
                trials = optuna.load_study(study_name=STUDY, storage=storage).get_trials()
        complete = sum(trial.state == TrialState.COMPLETE for trial in trials)
        running = [
            trial
            for trial in trials
            if trial.state == TrialState.RUNNING and "mlflow_run_id" in trial.user_attrs
        ]
        if complete >= min_complete and running:
            return
        time.sleep(0.02)
    raise AssertionError("no trial started within 300s")


def test_kill_and_rerun_finishes_study(tmp_path, mid_dataset):
    dataset, embeddings = mid_dataset
    args = job_args(tmp_path, dataset, embeddings, "search.n_trials=12")
    storage = f"sqlite:///{tmp_path / 'optuna' / 'optuna.db'}"

    process = subprocess.Popen(
        args, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_running_trial(storage, process, min_complete=3)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    killed = optuna.load_study(study_name=STUDY, storage=storage).get_trials()
    (interrupted,) = [trial for trial in killed if trial.state == TrialState.RUNNING]

    completed = run(args)
    assert completed.returncode == 0, (completed.stdout + completed.stderr)[-4000:]

    trials = optuna.load_study(study_name=STUDY, storage=storage).get_trials()
    assert len(trials) == 12
    assert {trial.state for trial in trials} <= {TrialState.COMPLETE, TrialState.FAIL}
    resumed = trials[interrupted.number]
    assert resumed.state == TrialState.FAIL
    assert resumed.user_attrs["error_kind"] == "interrupted"
    runs = experiment_runs(tmp_path)
    assert [run.info.run_id for run in runs if run.info.status == "RUNNING"] == []
    statuses = {run.info.run_id: run.info.status for run in runs}
    assert statuses[interrupted.user_attrs["mlflow_run_id"]] == "KILLED"
    (job,) = job_runs(tmp_path)
    assert job.info.status == "FINISHED"
    assert "test/ndcg_at_20" in job.data.metrics
    assert len(trial_runs(tmp_path, job.info.run_id)) == 12


def test_two_workers_share_study(tmp_path, mid_dataset):
    dataset, embeddings = mid_dataset
    journal = tmp_path / "optuna" / "study.log"
    args = job_args(
        tmp_path,
        dataset,
        embeddings,
        "search.n_trials=20",
        f"search.storage=journal:{journal}",
        "compute.blas_threads=1",
    )
    workers = [
        subprocess.Popen(
            args, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [worker.communicate(timeout=900) for worker in workers]
    for worker, (_, stderr) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, stderr[-3000:]

    storage = JournalStorage(JournalFileBackend(str(journal)))
    trials = optuna.load_study(study_name=STUDY, storage=storage).get_trials()
    assert sorted(trial.number for trial in trials) == list(range(20))
    assert {trial.state for trial in trials} <= {TrialState.COMPLETE, TrialState.FAIL}
    proposals = {tuple(sorted(trial.params.items())) for trial in trials}
    assert len(proposals) == 20
    pids = {trial.user_attrs["worker"]["pid"] for trial in trials}
    assert pids == {worker.pid for worker in workers}

    (job,) = job_runs(tmp_path)
    assert job.info.status == "FINISHED"
    assert "test/ndcg_at_20" in job.data.metrics
    children = trial_runs(tmp_path, job.info.run_id)
    assert len(children) == 20
    assert len({run.data.tags["l3ae_bench.worker"] for run in children}) == 2
    assert {run.info.status for run in children} <= {"FINISHED", "FAILED"}


def launcher_multirun(tmp_path: Path, dataset: Path, embeddings: Path, launcher: str):
    args = job_args(
        tmp_path,
        dataset,
        embeddings,
        "-m",
        f"hydra/launcher={launcher}",
        "solver=ease,l3ae",
        "search.n_trials=3",
    )
    return run(args)


def check_two_tuned_jobs(root: Path) -> None:
    jobs = job_runs(root)
    assert sorted(run.info.run_name for run in jobs) == ["ease-precomputed", "l3ae-precomputed"]
    assert {run.info.status for run in jobs} == {"FINISHED"}
    for job in jobs:
        assert len(trial_runs(root, job.info.run_id)) == 3, job.info.run_name


def test_joblib_multirun_tunes_each_job(tmp_path, tiny_dataset, tiny_embeddings):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason="pip install -e .[parallel]")
    completed = launcher_multirun(tmp_path, tiny_dataset, tiny_embeddings, "local_parallel")
    assert completed.returncode == 0, (completed.stdout + completed.stderr)[-4000:]
    check_two_tuned_jobs(tmp_path)


def test_ray_multirun_tunes_each_job(tmp_path, tiny_dataset, tiny_embeddings):
    pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason="pip install -e .[ray]")
    completed = launcher_multirun(tmp_path, tiny_dataset, tiny_embeddings, "ray_local")
    assert completed.returncode == 0, (completed.stdout + completed.stderr)[-4000:]
    assert "Started a local Ray instance" in completed.stderr
    check_two_tuned_jobs(tmp_path)
