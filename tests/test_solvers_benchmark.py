"""bench/benchmark.py runs end to end on a small dataset and writes its report."""

from __future__ import annotations

import importlib.util
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
from tests.conftest import PROJECT_ROOT, make_splits, write_paper_layout


@pytest.fixture(scope="module")
def benchmark():
    spec = importlib.util.spec_from_file_location(
        "benchmark", PROJECT_ROOT / "bench" / "benchmark.py"
    )
    module = importlib.util.module_from_spec(spec)
    # dataclasses look the module up by name while the class body runs.
    sys.modules["benchmark"] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("benchmark", None)


@pytest.mark.slow
def test_benchmark_writes_report(tmp_path, benchmark):
    data = write_paper_layout(tmp_path / "games", make_splits(60, 30, seed=2))
    E = np.random.default_rng(0).standard_normal((30, 8)).astype(np.float32)
    with open(data / "minilm_items.pkl", "wb") as handle:
        pickle.dump(E, handle)
    output = tmp_path / "benchmarks.md"
    benchmark.main(
        [
            "--data",
            str(data),
            "--repeats",
            "1",
            "--sweep",
            "200",
            "--fail-items",
            "300000",
            "--cache",
            str(tmp_path / "cache"),
            "--output",
            str(output),
        ]
    )
    report = output.read_text(encoding="utf-8")
    assert "| load + fit + evaluate, reference / ours |" in report
    assert "which agree within 1e-4: yes." in report
    assert "| 200 | 400 |" in report
    assert "The 300000-item catalog stops before any n × n allocation" in report
    assert "crashed" not in report


def test_reference_matches_package_formula(benchmark):
    """The reference fit and our fit give the same B on a small problem."""
    from l3ae_bench.solvers import FitInputs
    from l3ae_bench.solvers.l3ae import fit_l3ae

    X, E = benchmark.synthetic(120)
    reference = benchmark.reference_fit(X.astype(np.float64), E.astype(np.float64))
    ours = fit_l3ae(FitInputs(X, E, "float64"), benchmark.CONFIG)
    np.testing.assert_allclose(ours, reference, atol=1e-8)


def test_peak_memory_is_positive(benchmark):
    assert benchmark.peak_rss_gb() > 0


def test_report_path_default(benchmark):
    assert benchmark.parse_args([]).output == Path(PROJECT_ROOT / "docs" / "benchmarks.md")
