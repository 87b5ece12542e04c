"""Export to the research code's pickle layout, dataset config names and reproducible bytes."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tests.conftest import PROJECT_ROOT
from tests.test_pipeline import client_for, compose_job

from l3ae_bench.data.atomic import AtomicConfig, load_atomic
from l3ae_bench.data.export import SPLIT_FILES, export_paper_layout
from l3ae_bench.data.paper_layout import PaperLayoutConfig, load_paper_layout
from l3ae_bench.data.registry import load_dataset, parse_dataset_config
from l3ae_bench.errors import DataError
from l3ae_bench.pipeline import run_job

FIXTURES = Path(__file__).parent / "fixtures"
BOOKS = FIXTURES / "atomic" / "books"


def books(cache: Path):
    return load_atomic(AtomicConfig(name="books", path=str(BOOKS)), cache)


def test_export_round_trip(tmp_path):
    data = books(tmp_path / "cache")
    export_paper_layout(data, tmp_path / "out")
    loaded = load_paper_layout(PaperLayoutConfig(name="books", path=str(tmp_path / "out")))
    for split in ("train", "val", "test"):
        assert (getattr(loaded, split) != getattr(data, split)).nnz == 0, split
    assert loaded.item_texts == data.item_texts


def test_export_id_map(tmp_path):
    import json

    data = books(tmp_path / "cache")
    export_paper_layout(data, tmp_path / "out")
    ids = json.loads((tmp_path / "out" / "id_map.json").read_text())
    assert ids["item_ids"] == ["001", "002", "003", "004", "005"]
    assert ids["user_ids"] == data.user_ids.tolist()


def test_export_bytes_identical_across_runs(tmp_path):
    export_paper_layout(books(tmp_path / "cache_a"), tmp_path / "a")
    export_paper_layout(books(tmp_path / "cache_b"), tmp_path / "b")
    for name in [*SPLIT_FILES.values(), "item_profile.json", "id_map.json"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_export_rejects_empty_text(tmp_path):
    data = books(tmp_path / "cache")
    texts = list(data.item_texts)
    texts[2] = ""
    with pytest.raises(DataError, match="1 items have an empty text.*item_index \\[2\\]"):
        export_paper_layout(dataclasses.replace(data, item_texts=texts), tmp_path / "out")


def test_export_cli(tmp_path):
    env = {**os.environ, "L3AE_BENCH_ROOT": str(tmp_path)}
    command = [
        sys.executable,
        "-m",
        "l3ae_bench.data.export",
        str(tmp_path / "out"),
        "dataset=ml-1m",
        f"dataset.source={FIXTURES / 'movielens' / 'ml-1m'}",
        f"paths.root={tmp_path}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 0, result.stderr
    loaded = load_paper_layout(PaperLayoutConfig(name="ml-1m", path=str(tmp_path / "out")))
    assert loaded.n_items == 3
    assert list((tmp_path / "cache" / "splits").glob("ml-1m-*.npz"))


def test_export_cli_error_is_clear(tmp_path):
    command = [
        sys.executable,
        "-m",
        "l3ae_bench.data.export",
        str(tmp_path / "out"),
        "dataset=ml-1m",
        f"dataset.source={tmp_path / 'missing'}",
        f"paths.root={tmp_path}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert "MovieLens source not found" in result.stderr
    assert "Traceback" not in result.stderr


CONFIG_SOURCES = {
    "amazon-games": [
        f"dataset.reviews_path={FIXTURES / 'amazon' / 'kcore' / 'Video_Games.jsonl'}",
        f"dataset.meta_path={FIXTURES / 'amazon' / 'kcore' / 'meta_Video_Games.jsonl'}",
        "dataset.filter.min_user_interactions=2",
        "dataset.filter.min_item_interactions=2",
    ],
    "amazon-toys": [
        f"dataset.reviews_path={FIXTURES / 'amazon' / 'variants' / 'Video_Games.jsonl'}",
        f"dataset.meta_path={FIXTURES / 'amazon' / 'variants' / 'meta_Video_Games.jsonl'}",
        "dataset.filter.min_user_interactions=1",
        "dataset.filter.min_item_interactions=1",
    ],
    "amazon-books": [
        f"dataset.reviews_path={FIXTURES / 'amazon' / 'html' / 'Video_Games.jsonl'}",
        f"dataset.meta_path={FIXTURES / 'amazon' / 'html' / 'meta_Video_Games.jsonl'}",
        "dataset.filter.min_user_interactions=1",
        "dataset.filter.min_item_interactions=1",
    ],
    "ml-100k-original": [f"dataset.source={FIXTURES / 'movielens' / 'ml-100k'}"],
    "ml-1m": [f"dataset.source={FIXTURES / 'movielens' / 'ml-1m'}"],
    "ml-20m": [f"dataset.source={FIXTURES / 'movielens' / 'ml-latest-small'}"],
    "ml-latest-small": [f"dataset.source={FIXTURES / 'movielens' / 'ml-latest-small'}"],
    "atomic": [f"dataset.path={BOOKS}"],
}


@pytest.mark.parametrize("name", sorted(CONFIG_SOURCES))
def test_dataset_config_name_loads(tmp_path, name):
    values = compose_job(tmp_path, [f"dataset={name}", *CONFIG_SOURCES[name]])
    format_name, config = parse_dataset_config(values["dataset"])
    data = load_dataset(format_name, config, tmp_path / "cache")
    assert data.name == name
    assert data.train.nnz > 0
    assert all(data.item_texts)


def test_dataset_config_cold_start_option(tmp_path):
    overrides = [
        "dataset=atomic",
        f"dataset.path={BOOKS}",
        "dataset.split.cold_item_share=0.4",
    ]
    values = compose_job(tmp_path, overrides)
    data = load_dataset(*parse_dataset_config(values["dataset"]), tmp_path / "cache")
    assert len(data.cold_items()) == 2
    assert data.summary()["n_cold_items"] == 2


@pytest.mark.parametrize("method", ["leave_one_out", "temporal", "temporal_per_user"])
def test_dataset_config_split_methods(tmp_path, method):
    # Each fixture user has 3 ratings, so ratios of 1/3 hold out one of them.
    overrides = [
        "dataset=ml-1m",
        *CONFIG_SOURCES["ml-1m"],
        f"dataset.split.method={method}",
        "dataset.split.val_ratio=0.34",
        "dataset.split.test_ratio=0.34",
    ]
    values = compose_job(tmp_path, overrides)
    data = load_dataset(*parse_dataset_config(values["dataset"]), tmp_path / "cache")
    assert data.test.nnz > 0


def test_ease_job_on_new_dataset(tmp_path):
    overrides = [
        "dataset=ml-latest-small",
        *CONFIG_SOURCES["ml-latest-small"],
        "dataset.split.method=leave_one_out",
        "solver=ease",
    ]
    result = run_job(compose_job(tmp_path, overrides))
    run = client_for(tmp_path).get_run(result["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["data.n_items"] == "4"
    assert np.isfinite(run.data.metrics["test/recall_at_20"])


@pytest.mark.slow
def test_run_py_with_dataset_name(tmp_path):
    command = [
        sys.executable,
        str(PROJECT_ROOT / "src" / "run.py"),
        "dataset=atomic",
        f"dataset.path={BOOKS}",
        "dataset.split.method=leave_one_out",
        "solver=ease",
        f"paths.root={tmp_path}",
        "progress=false",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Test metrics:" in result.stdout
    assert np.isfinite(float(result.stdout.split("test/recall_at_20 = ")[1].split(",")[0]))


@pytest.mark.realdata
def test_games_export_round_trip(tmp_path, games_data):
    data = load_paper_layout(PaperLayoutConfig(name="games", path=str(games_data)))
    export_paper_layout(data, tmp_path / "out")
    loaded = load_paper_layout(PaperLayoutConfig(name="games", path=str(tmp_path / "out")))
    for split in ("train", "val", "test"):
        assert (getattr(loaded, split) != getattr(data, split)).nnz == 0, split
    assert loaded.item_texts == data.item_texts
