"""The comparison report: run selection, baselines, paired tests, table, plots and MLflow run."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from tests.conftest import PROJECT_ROOT, make_splits, write_paper_layout
from tests.test_pipeline import client_for, compose_job

from l3ae_bench.errors import ConfigError
from l3ae_bench.pipeline import run_job
from l3ae_bench.report import (
    Entry,
    PerUserStore,
    available_test_metrics,
    compare,
    paired_p_value,
    pick_baselines,
    to_markdown,
)
from l3ae_bench.report_writer import ReportSettings, write_report


def entry(solver: str, encoder: str, val: float, uses_text: bool, run_id: str = "") -> Entry:
    return Entry(
        dataset="games",
        solver=solver,
        encoder=encoder,
        run_id=run_id or f"{solver}-{encoder}",
        tuned=False,
        uses_text=uses_text,
        metrics={"val/ndcg_at_20": val, "test/ndcg_at_20": val, "test/recall_at_5": val},
    )


class FixedStore(PerUserStore):
    """Per-user vectors given in memory instead of downloaded from MLflow."""

    def __init__(self, arrays: dict[str, dict[str, np.ndarray]]) -> None:
        super().__init__("unused")
        self._cache = dict(arrays)


# --- units ----------------------------------------------------------------------------------


def test_p_value_identical_is_nan():
    x = np.array([0.1, 0.2, 0.3])
    assert math.isnan(paired_p_value(x, x.copy(), "ttest"))


def test_p_value_matches_scipy():
    rng = np.random.default_rng(0)
    x, y = rng.random(50), rng.random(50)
    assert paired_p_value(x, y, "ttest") == pytest.approx(stats.ttest_rel(x, y).pvalue)
    assert paired_p_value(x, y, "wilcoxon") == pytest.approx(stats.wilcoxon(x, y).pvalue)


def test_compare_aligns_users():
    ours = {"user_index": np.array([3, 1, 2, 7]), "ndcg_at_20": np.array([0.3, 0.1, 0.2, 0.9])}
    theirs = {"user_index": np.array([1, 2, 3, 5]), "ndcg_at_20": np.array([0.0, 0.1, 0.1, 0.5])}
    store = FixedStore({"a": ours, "b": theirs})
    comparison = compare(
        entry("l3ae", "x", 0.2, True, "a"),
        entry("ease", "x", 0.1, False, "b"),
        ["test/ndcg_at_20"],
        store,
        "ttest",
    )
    expected = stats.ttest_rel([0.1, 0.2, 0.3], [0.0, 0.1, 0.1]).pvalue
    assert comparison.n_users == 3
    assert comparison.p_values["test/ndcg_at_20"] == pytest.approx(expected)


def test_compare_missing_vectors_gives_none():
    store = FixedStore({"a": None, "b": None})
    result = compare(
        entry("l3ae", "x", 0.2, True, "a"),
        entry("ease", "x", 0.1, False, "b"),
        ["test/ndcg_at_20"],
        store,
        "ttest",
    )
    assert result is None


def test_baseline_is_best_text_free_solver():
    entries = [
        entry("ease", "x", 0.10, False),
        entry("gf-cf", "x", 0.12, False),
        entry("l3ae", "x", 0.20, True),
    ]
    assert pick_baselines(entries, "val/ndcg_at_20")["games"].solver == "gf-cf"


def test_baseline_solvers_override():
    entries = [entry("ease", "x", 0.10, False), entry("gf-cf", "x", 0.12, False)]
    baselines = pick_baselines(entries, "val/ndcg_at_20", baseline_solvers=["ease"])
    assert baselines["games"].solver == "ease"


def test_metric_keys_ordered_by_k():
    metrics = {"test/ndcg_at_20": 0, "test/ndcg_at_5": 0, "test/recall_at_10": 0, "val/x": 0}
    item = Entry("d", "s", "e", "r", False, False, metrics)
    expected = ["test/recall_at_10", "test/ndcg_at_5", "test/ndcg_at_20"]
    assert available_test_metrics([item]) == expected


def test_markdown_marks_significance():
    table = pd.DataFrame(
        [
            {
                "dataset": "games",
                "solver": "l3ae",
                "encoder": "m",
                "tuned": True,
                "n_trials": 20,
                "baseline": False,
                "test/ndcg_at_20": 0.11,
                "p/test/ndcg_at_20": 0.01,
                "delta_pct/test/ndcg_at_20": 10.0,
            },
            {
                "dataset": "games",
                "solver": "ease",
                "encoder": "m",
                "tuned": False,
                "n_trials": None,
                "baseline": True,
                "test/ndcg_at_20": 0.10,
                "p/test/ndcg_at_20": math.nan,
                "delta_pct/test/ndcg_at_20": 0.0,
            },
        ]
    )
    lines = to_markdown(table, ["test/ndcg_at_20"], "test/ndcg_at_20", 0.05).splitlines()
    assert "| 0.11000* | +10.00 | 0.01 |" in lines[2]
    assert "ease (baseline)" in lines[3]
    assert "0.10000 |" in lines[3]


def test_settings_reject_val_metric():
    with pytest.raises(ConfigError, match="--metric"):
        ReportSettings("e", "sqlite:////x.db", Path("/tmp"), primary="val/ndcg_at_20")


# --- report over real runs ------------------------------------------------------------------


@pytest.fixture(scope="module")
def experiment_store(tmp_path_factory) -> Path:
    """An MLflow store with untuned EASE runs, an untuned and a tuned L3AE run.

    Built once for the module; tests only add report runs, which reports skip.
    """
    tmp_path = tmp_path_factory.mktemp("store")
    tiny_dataset = write_paper_layout(tmp_path / "tiny", make_splits(40, 12))
    embeddings = tmp_path / "tiny_items.npy"
    np.save(embeddings, np.random.default_rng(0).standard_normal((12, 4)).astype(np.float32))
    common = [
        "dataset=games",
        f"dataset.path={tiny_dataset}",
        "encoder=precomputed",
        f"encoder.path={embeddings}",
        "evaluation.k=[2,5,10,20]",
    ]
    for overrides in (
        ["solver=ease", "solver.lambda_x=1"],
        ["solver=ease", "solver.lambda_x=1000"],
        ["solver=l3ae"],
        ["solver=l3ae", "search=optuna", "search.n_trials=3"],
    ):
        run_job(compose_job(tmp_path, [*common, *overrides]))
    return tmp_path


def report_settings(root: Path, **values) -> ReportSettings:
    return ReportSettings(
        experiment="l3ae-bench",
        tracking_uri=f"sqlite:///{root / 'mlruns' / 'mlflow.db'}",
        output=root / "report",
        **values,
    )


def test_report_table_rows(experiment_store):
    result = write_report(report_settings(experiment_store))
    table = result.table
    assert sorted(table["solver"]) == ["ease", "l3ae"]
    l3ae = table[table["solver"] == "l3ae"].iloc[0]
    assert bool(l3ae["tuned"])
    assert l3ae["n_trials"] == 3
    ease = table[table["solver"] == "ease"].iloc[0]
    assert bool(ease["baseline"])
    assert "p/test/ndcg_at_20" in table
    assert not math.isnan(l3ae["n_users_compared"])


def test_report_picks_best_val_untuned(experiment_store):
    client = client_for(experiment_store)
    experiment = client.get_experiment_by_name("l3ae-bench").experiment_id
    eases = [
        run for run in client.search_runs([experiment]) if run.data.tags.get("solver") == "ease"
    ]
    best = max(eases, key=lambda run: run.data.metrics["val/ndcg_at_20"])
    table = write_report(report_settings(experiment_store, log_to_mlflow=False)).table
    assert table[table["solver"] == "ease"].iloc[0]["run_id"] == best.info.run_id


def test_report_writes_files(experiment_store):
    result = write_report(report_settings(experiment_store, log_to_mlflow=False))
    names = sorted(path.name for path in result.files)
    assert names == ["head_tail_games.png", "metrics_at_k_games.png", "table.csv", "table.md"]
    assert all(path.stat().st_size > 0 for path in result.files)
    assert "(baseline)" in (experiment_store / "report" / "table.md").read_text()


def test_report_logged_as_mlflow_run(experiment_store):
    result = write_report(report_settings(experiment_store))
    client = client_for(experiment_store)
    run = client.get_run(result.run_id)
    assert run.data.tags["l3ae_bench.kind"] == "report"
    assert "Recall@2" in run.data.tags["mlflow.note.content"]
    artifacts = {item.path for item in client.list_artifacts(result.run_id, "report")}
    assert {"report/table.md", "report/table.csv", "report/plots"} <= artifacts
    plots = {item.path for item in client.list_artifacts(result.run_id, "report/plots")}
    assert "report/plots/metrics_at_k_games.png" in plots


def test_report_skips_report_runs(experiment_store):
    first = write_report(report_settings(experiment_store)).table
    second = write_report(report_settings(experiment_store)).table
    assert len(second) == len(first)


def test_report_cli(experiment_store):
    env = {**os.environ}
    env.pop("L3AE_BENCH_ROOT", None)
    completed = subprocess.run(
        [
            sys.executable,
            str(PROJECT_ROOT / "src" / "report.py"),
            "--tracking-uri",
            f"sqlite:///{experiment_store / 'mlruns' / 'mlflow.db'}",
            "--output",
            str(experiment_store / "cli-report"),
            "--test",
            "wilcoxon",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "| games | ease (baseline) |" in completed.stdout
    assert (experiment_store / "cli-report" / "table.csv").is_file()


def test_report_cli_unknown_experiment(experiment_store):
    completed = subprocess.run(
        [
            sys.executable,
            str(PROJECT_ROOT / "src" / "report.py"),
            "--tracking-uri",
            f"sqlite:///{experiment_store / 'mlruns' / 'mlflow.db'}",
            "--experiment",
            "nope",
            "--no-mlflow",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 1
    assert "experiment 'nope' not found" in completed.stderr
