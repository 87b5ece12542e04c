"""Every solver gives the same Games test metrics in float32 and float64, within 1e-4."""

from __future__ import annotations

import pytest
from tests.test_pipeline import compose_job

from l3ae_bench.pipeline import run_job
from l3ae_bench.solvers import SOLVERS

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

# EASE and L3AE are checked against the official numbers in test_games.py.
OTHERS = sorted(set(SOLVERS) - {"ease", "l3ae"})
METRICS = ("test/recall_at_10", "test/recall_at_20", "test/ndcg_at_10", "test/ndcg_at_20")


@pytest.mark.parametrize("solver", OTHERS)
def test_games_float32_matches_float64(tmp_path, games_data, solver):
    results = {}
    for dtype in ("float32", "float64"):
        overrides = [
            "dataset=games",
            f"dataset.path={games_data}",
            "encoder=games-minilm",
            f"solver={solver}",
            f"compute.dtype={dtype}",
        ]
        results[dtype] = run_job(compose_job(tmp_path / dtype, overrides))["metrics"]
    for key in METRICS:
        assert results["float32"][key] == pytest.approx(results["float64"][key], abs=1e-4), key
