"""End-to-end jobs through the real Hydra config, a real MLflow SQLite store and run.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient
from tests.conftest import PROJECT_ROOT

from l3ae_bench.config import to_container
from l3ae_bench.errors import ConfigError, EncoderError
from l3ae_bench.pipeline import run_job


def compose_job(root: Path, overrides: list[str]) -> dict:
    with initialize_config_dir(str(PROJECT_ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"paths.root={root}", "progress=false", *overrides])
    return to_container(cfg, "config")


def client_for(root: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")


@pytest.fixture
def embeddings_file(tmp_path, tiny_dataset) -> Path:
    E = np.random.default_rng(0).standard_normal((12, 4)).astype(np.float32)
    path = tmp_path / "tiny_items.npy"
    np.save(path, E)
    return path


def test_job_logs_run_to_mlflow(tmp_path, tiny_dataset, embeddings_file):
    values = compose_job(
        tmp_path,
        [
            "dataset=games",
            f"dataset.path={tiny_dataset}",
            "encoder=precomputed",
            f"encoder.path={embeddings_file}",
            "solver=l3ae",
        ],
    )
    result = run_job(values, {"sweep": "test"})

    run = client_for(tmp_path).get_run(result["run_id"])
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "l3ae-precomputed"
    assert run.data.tags["sweep"] == "test"
    for key in (
        "val/recall_at_20",
        "test/ndcg_at_20",
        "test/recall_at_10",
        "time/fit_s",
        "time/evaluation_s",
        "time/embedding_s",
    ):
        assert key in run.data.metrics, key
    assert run.data.params["solver.lambda_e"] == "80.0"
    assert run.data.params["data.n_items"] == "12"
    artifacts = {item.path for item in client_for(tmp_path).list_artifacts(run.info.run_id)}
    assert {"config.yaml", "metrics.json", "per_user"} <= artifacts
    metrics = json.loads(
        Path(run.info.artifact_uri.removeprefix("file://"), "metrics.json").read_text()
    )
    assert metrics["test/ndcg_at_20"] == pytest.approx(run.data.metrics["test/ndcg_at_20"])


def test_failed_job_ends_failed_with_error(tmp_path, tiny_dataset):
    bad = tmp_path / "wrong_rows.npy"
    np.save(bad, np.ones((5, 3), dtype=np.float32))
    values = compose_job(
        tmp_path,
        [
            "dataset=games",
            f"dataset.path={tiny_dataset}",
            "encoder=precomputed",
            f"encoder.path={bad}",
        ],
    )
    with pytest.raises(EncoderError, match="5 rows but the dataset has 12 items"):
        run_job(values)

    client = client_for(tmp_path)
    (run,) = client.search_runs(client.get_experiment_by_name("l3ae-bench").experiment_id)
    assert run.info.status == "FAILED"
    assert "5 rows" in run.data.tags["error"]


def test_nan_embedding_row_fails(tmp_path, tiny_dataset):
    E = np.ones((12, 3), dtype=np.float32)
    E[4, 1] = np.nan
    path = tmp_path / "nan.npy"
    np.save(path, E)
    values = compose_job(
        tmp_path,
        [
            "dataset=games",
            f"dataset.path={tiny_dataset}",
            "encoder=precomputed",
            f"encoder.path={path}",
        ],
    )
    with pytest.raises(EncoderError, match="rows \\[4\\]"):
        run_job(values)


def test_unknown_solver_setting_fails(tmp_path, tiny_dataset):
    values = compose_job(
        tmp_path,
        ["dataset=games", f"dataset.path={tiny_dataset}", "solver=ease", "+solver.lambda=3"],
    )
    with pytest.raises(ConfigError, match="solver.lambda"):
        run_job(values)


def test_ease_job_skips_the_encoder(tmp_path, tiny_dataset):
    values = compose_job(
        tmp_path,
        [
            "dataset=games",
            f"dataset.path={tiny_dataset}",
            "solver=ease",
            "encoder=precomputed",
            "encoder.path=/does/not/exist.npy",
        ],
    )
    result = run_job(values)
    assert "time/embedding_s" not in result["metrics"]


def test_minilm_job_caches_embeddings(tmp_path, tiny_dataset):
    values = compose_job(tmp_path, ["dataset=games", f"dataset.path={tiny_dataset}"])
    first = run_job(values)["metrics"]
    second = run_job(values)["metrics"]
    client = client_for(tmp_path)
    runs = client.search_runs(client.get_experiment_by_name("l3ae-bench").experiment_id)
    hits = sorted(run.data.metrics["embedding/cache_hits"] for run in runs)
    assert hits == [0.0, 12.0]
    assert first["test/ndcg_at_20"] == pytest.approx(second["test/ndcg_at_20"])


def run_cli(
    tmp_path: Path, *overrides: str, multirun: bool = False, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run src/run.py with outputs under `tmp_path`; `env` adds environment variables."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    env.pop("L3AE_BENCH_ROOT", None)
    flags = ["-m"] if multirun else []
    return subprocess.run(
        [
            sys.executable,
            str(PROJECT_ROOT / "src" / "run.py"),
            *flags,
            f"paths.root={tmp_path}",
            "progress=false",
            *overrides,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )


def test_cli_bad_input_prints_clear_error(tmp_path):
    missing = tmp_path / "no-such-folder"
    completed = run_cli(tmp_path, "dataset=games", f"dataset.path={missing}")
    output = completed.stdout + completed.stderr
    assert completed.returncode == 1
    assert f"Dataset folder not found: {missing}" in output
    assert "Traceback" not in output


@pytest.mark.slow
def test_cli_multirun_gives_one_run_per_job(tmp_path, tiny_dataset):
    completed = run_cli(
        tmp_path, "dataset=games", f"dataset.path={tiny_dataset}", "solver=ease,l3ae", multirun=True
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.count("MLflow run id:") == 2
    client = client_for(tmp_path)
    runs = client.search_runs(client.get_experiment_by_name("l3ae-bench").experiment_id)
    assert sorted(run.info.run_name for run in runs) == ["ease-minilm", "l3ae-minilm"]
    assert len({run.data.tags["sweep"] for run in runs}) == 1
    assert all(run.info.status == "FINISHED" for run in runs)
    assert list((tmp_path / "multirun").glob("*/*/0/.hydra/config.yaml"))


@pytest.mark.slow
def test_cli_multirun_continues_after_failed_job(tmp_path, tiny_dataset):
    missing = tmp_path / "missing"
    completed = run_cli(
        tmp_path,
        "dataset=games",
        f"dataset.path={missing},{tiny_dataset}",
        "solver=ease",
        multirun=True,
    )
    assert completed.returncode == 1
    assert completed.stdout.count("MLflow run id:") == 1
    assert "1 job(s) failed" in completed.stderr
    client = client_for(tmp_path)
    runs = client.search_runs(client.get_experiment_by_name("l3ae-bench").experiment_id)
    assert sorted(run.info.status for run in runs) == ["FAILED", "FINISHED"]


@pytest.mark.slow
def test_cli_sigterm_marks_run_killed(tmp_path, tiny_dataset):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("L3AE_BENCH_ROOT", None)
    process = subprocess.Popen(
        [
            sys.executable,
            str(PROJECT_ROOT / "src" / "run.py"),
            f"paths.root={tmp_path}",
            "progress=false",
            "dataset=games",
            f"dataset.path={tiny_dataset}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    # The job logs its MLflow run id before it loads the model; signal it then.
    for line in process.stdout:
        if "MLflow run " in line:
            break
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    if process.returncode == 0:
        pytest.skip("the job finished before the signal arrived")

    client = client_for(tmp_path)
    (run,) = client.search_runs(client.get_experiment_by_name("l3ae-bench").experiment_id)
    assert process.returncode == 130
    assert "Interrupted" in stderr
    assert run.info.status == "KILLED"
