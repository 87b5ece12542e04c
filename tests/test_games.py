"""The official L3AE code's test metrics on the Amazon Games data, reproduced within 1e-4."""

from __future__ import annotations

import pytest
from tests.test_pipeline import compose_job

from l3ae_bench.pipeline import run_job

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

# Test metrics of the official L3AE code on the same splits and MiniLM embeddings.
OFFICIAL = {
    ("ease", "solver.lambda_x=100"): (0.13267, 0.18507, 0.08449, 0.09921),
    ("l3ae", "solver.lambda_x=-50,solver.lambda_f=5,solver.lambda_e=150"): (
        0.14471,
        0.19901,
        0.09281,
        0.10803,
    ),
    ("l3ae", "solver.lambda_x=20,solver.lambda_f=0.1,solver.lambda_e=80"): (
        0.14432,
        0.19804,
        0.09275,
        0.10790,
    ),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("solver, settings", list(OFFICIAL))
def test_games_matches_official(tmp_path, games_data, solver, settings, dtype):
    overrides = [
        "dataset=games",
        f"dataset.path={games_data}",
        "encoder=games-minilm",
        f"solver={solver}",
        f"compute.dtype={dtype}",
        *settings.split(","),
    ]
    metrics = run_job(compose_job(tmp_path, overrides))["metrics"]
    recall_10, recall_20, ndcg_10, ndcg_20 = OFFICIAL[(solver, settings)]
    assert metrics["test/recall_at_10"] == pytest.approx(recall_10, abs=1e-4)
    assert metrics["test/recall_at_20"] == pytest.approx(recall_20, abs=1e-4)
    assert metrics["test/ndcg_at_10"] == pytest.approx(ndcg_10, abs=1e-4)
    assert metrics["test/ndcg_at_20"] == pytest.approx(ndcg_20, abs=1e-4)
