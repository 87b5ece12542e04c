"""Every solver config runs as a job: its YAML composes, validates, fits and evaluates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tests.conftest import PROJECT_ROOT
from tests.test_pipeline import compose_job

from l3ae_bench.pipeline import run_job
from l3ae_bench.solvers import SOLVERS

SOLVER_FILES = sorted(path.stem for path in (PROJECT_ROOT / "conf" / "solver").glob("*.yaml"))


@pytest.fixture
def embeddings_file(tmp_path: Path) -> Path:
    E = np.random.default_rng(3).standard_normal((12, 4)).astype(np.float32)
    path = tmp_path / "tiny_items.npy"
    np.save(path, E)
    return path


def job(tmp_path: Path, dataset: Path, embeddings: Path, *overrides: str) -> dict:
    values = compose_job(
        tmp_path,
        [
            "dataset=games",
            f"dataset.path={dataset}",
            "encoder=precomputed",
            f"encoder.path={embeddings}",
            *overrides,
        ],
    )
    return run_job(values)


def test_every_solver_has_a_config_file():
    assert SOLVER_FILES == sorted(SOLVERS)


@pytest.mark.parametrize("solver", SOLVER_FILES)
def test_solver_runs_as_job(tmp_path, tiny_dataset, embeddings_file, solver):
    metrics = job(tmp_path, tiny_dataset, embeddings_file, f"solver={solver}")["metrics"]
    for key in ("val/recall_at_20", "test/ndcg_at_10"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert ("time/embedding_s" in metrics) == SOLVERS[solver].uses_embeddings


def test_torch_backend_job_matches_numpy(tmp_path, tiny_dataset, embeddings_file):
    pytest.importorskip("torch")
    numpy_metrics = job(tmp_path / "numpy", tiny_dataset, embeddings_file, "solver=l3ae")
    torch_metrics = job(
        tmp_path / "torch",
        tiny_dataset,
        embeddings_file,
        "solver=l3ae",
        "compute.backend=torch",
        "compute.device=cpu",
    )
    for key in ("test/recall_at_20", "test/ndcg_at_20", "val/ndcg_at_10"):
        assert torch_metrics["metrics"][key] == pytest.approx(numpy_metrics["metrics"][key])
