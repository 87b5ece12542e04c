"""Dataset loaders: the research code's pickle layout, RecBole atomic files, MovieLens, splits."""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from tests.conftest import make_splits, write_paper_layout

from l3ae_bench.data.atomic import read_atomic
from l3ae_bench.data.movielens import (
    WHEEL_FOLDER,
    MovieLensRecBoleConfig,
    SplitConfig,
    load_movielens_recbole,
)
from l3ae_bench.data.paper_layout import PaperLayoutConfig, load_paper_layout
from l3ae_bench.data.splits import random_split_per_user
from l3ae_bench.errors import DataError


def load(folder: Path):
    return load_paper_layout(PaperLayoutConfig(name="tiny", path=str(folder)))


def test_paper_layout_loads(tiny_dataset):
    data = load(tiny_dataset)
    assert data.train.shape == (40, 12)
    assert len(data.item_texts) == 12
    assert data.train.dtype == np.float32
    assert data.train.multiply(data.test).nnz == 0


def test_paper_layout_missing_file(tiny_dataset):
    (tiny_dataset / "val_mat.pkl").unlink()
    with pytest.raises(DataError, match="val_mat.pkl"):
        load(tiny_dataset)


def test_paper_layout_missing_folder(tmp_path):
    with pytest.raises(DataError, match="dataset.path"):
        load(tmp_path / "nowhere")


def test_paper_layout_mismatched_shapes(tmp_path):
    splits = make_splits(40, 12)
    splits["tst"] = sp.coo_matrix(splits["tst"].toarray()[:, :10])
    folder = write_paper_layout(tmp_path / "bad", splits)
    with pytest.raises(DataError, match="one shape"):
        load(folder)


def test_paper_layout_overlapping_splits(tmp_path):
    splits = make_splits(40, 12)
    train_item = int(splits["trn"].tocsr()[0].indices[0])
    val = splits["val"].toarray()
    val[0, train_item] = 1.0  # user 0's training item also in validation
    splits["val"] = sp.coo_matrix(val)
    folder = write_paper_layout(tmp_path / "bad", splits)
    with pytest.raises(DataError, match="train and val splits share 1"):
        load(folder)


def test_paper_layout_non_binary_values(tmp_path):
    splits = make_splits(40, 12)
    splits["trn"] = sp.coo_matrix(splits["trn"].toarray() * 4.0)
    folder = write_paper_layout(tmp_path / "bad", splits)
    with pytest.raises(DataError, match="binary.*4.0"):
        load(folder)


def test_paper_layout_item_without_text(tmp_path):
    splits = make_splits(40, 12)
    folder = write_paper_layout(tmp_path / "bad", splits, texts=[f"item {i}" for i in range(12)])
    lines = (folder / "item_profile.json").read_text().splitlines()
    (folder / "item_profile.json").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(DataError, match="1 of 12 items have no text.*11"):
        load(folder)


def test_paper_layout_empty_text(tmp_path):
    splits = make_splits(40, 12)
    texts = [f"item {i}" for i in range(12)]
    texts[3] = "   "
    folder = write_paper_layout(tmp_path / "bad", splits, texts=texts)
    with pytest.raises(DataError, match="line 4: item 3 has an empty 'profile'"):
        load(folder)


def test_pickle_with_foreign_class_is_rejected(tiny_dataset):
    with open(tiny_dataset / "trn_mat.pkl", "wb") as handle:
        pickle.dump(Path("/etc/passwd"), handle)
    with pytest.raises(DataError, match="not allowed"):
        load(tiny_dataset)


def test_random_split_is_seeded_and_disjoint():
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(20), 15)
    items = np.concatenate([rng.choice(50, 15, replace=False) for _ in range(20)])
    first = random_split_per_user(users, items, (20, 50), 0.1, 0.1, seed=4)
    second = random_split_per_user(users, items, (20, 50), 0.1, 0.1, seed=4)
    for a, b in zip(first, second, strict=True):
        assert (a != b).nnz == 0
    train, val, test = first
    assert train.multiply(val).nnz == 0
    assert train.multiply(test).nnz == 0
    assert train.nnz + val.nnz + test.nnz == 300
    # 15 interactions per user: round(1.5) = 2 validation and 2 test items each.
    np.testing.assert_array_equal(np.diff(test.indptr), 2)
    np.testing.assert_array_equal(np.diff(val.indptr), 2)


def test_random_split_keeps_a_training_item():
    train, val, test = random_split_per_user(
        np.array([0, 1, 1]), np.array([0, 0, 1]), (2, 2), 0.4, 0.4, seed=0
    )
    np.testing.assert_array_equal(np.diff(train.indptr), [1, 1])


INTER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n" + "".join(
    f"u{u}\ti{i}\t{(u + i) % 5 + 1}\t{1000 + u * 10 + i}\n" for u in range(12) for i in range(10)
)
ITEM = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n" + "".join(
    f"i{i}\tMovie {i}\t199{i}\tComedy Drama\n" for i in range(10)
)


def write_movielens(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ml-100k.inter").write_text(INTER, encoding="utf-8")
    (folder / "ml-100k.item").write_text(ITEM, encoding="utf-8")
    return folder


def test_movielens_from_folder(tmp_path):
    config = MovieLensRecBoleConfig(source=str(write_movielens(tmp_path / "src")))
    data = load_movielens_recbole(config, tmp_path / "cache")
    assert data.n_users == 12
    assert data.n_items == 10
    assert data.train.nnz + data.val.nnz + data.test.nnz == 120
    assert data.item_texts[0] == "Movie 0 (1990). Genres: Comedy, Drama."
    assert data.item_ids[0] == "i0"


def test_movielens_from_wheel_is_cached(tmp_path):
    source = write_movielens(tmp_path / "src")
    wheel = tmp_path / "recbole-test.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name in ("ml-100k.inter", "ml-100k.item"):
            archive.write(source / name, f"{WHEEL_FOLDER}/{name}")
    config = MovieLensRecBoleConfig(source=str(wheel))
    first = load_movielens_recbole(config, tmp_path / "cache")
    cached = list((tmp_path / "cache" / "splits").glob("*.npz"))
    assert len(cached) == 1
    second = load_movielens_recbole(config, tmp_path / "cache")
    assert (first.test != second.test).nnz == 0
    assert first.item_texts == second.item_texts


def test_movielens_rating_threshold(tmp_path):
    source = str(write_movielens(tmp_path / "src"))
    data = load_movielens_recbole(
        MovieLensRecBoleConfig(source=source, rating_threshold=4.0), tmp_path / "cache"
    )
    # Ratings cycle through 1..5, so 2 of every 5 are ≥ 4.
    assert data.train.nnz + data.val.nnz + data.test.nnz == 48
    with pytest.raises(DataError, match="no interactions are left.*dataset.rating_threshold=9.0"):
        load_movielens_recbole(
            MovieLensRecBoleConfig(source=source, rating_threshold=9.0), tmp_path / "cache"
        )


def test_movielens_split_seed_changes_split(tmp_path):
    source = str(write_movielens(tmp_path / "src"))
    a = load_movielens_recbole(MovieLensRecBoleConfig(source=source), tmp_path / "c")
    b = load_movielens_recbole(
        MovieLensRecBoleConfig(source=source, split=SplitConfig(seed=99)), tmp_path / "c"
    )
    assert (a.test != b.test).nnz > 0


def test_movielens_missing_source(tmp_path):
    with pytest.raises(DataError, match="dataset.source"):
        load_movielens_recbole(MovieLensRecBoleConfig(source=str(tmp_path / "x")), tmp_path)


def test_atomic_header_error_quotes_header():
    with pytest.raises(DataError, match="'user_id\\\\titem_id:token'"):
        read_atomic("user_id\titem_id:token\nu1\ti1\n", "bad.inter")


def test_atomic_float_error_names_line_and_column():
    with pytest.raises(DataError, match="line 3, column 2 \\(rating\\)"):
        read_atomic("item_id:token\trating:float\ni1\t3\ni2\tfive\n", "bad.inter")


def test_atomic_ids_stay_strings():
    frame = read_atomic("item_id:token\trating:float\n007\t3\n", "ok.inter")
    assert frame["item_id"].tolist() == ["007"]
    assert json.dumps(frame["rating"].tolist()) == "[3.0]"


def test_movielens_100k_from_real_wheel(tmp_path, recbole_wheel):
    data = load_movielens_recbole(MovieLensRecBoleConfig(source=str(recbole_wheel)), tmp_path)
    assert (data.n_users, data.n_items) == (943, 1682)
    assert data.train.nnz + data.val.nnz + data.test.nnz == 100_000
    assert data.item_texts[0] == "Toy Story (1995). Genres: Animation, Children's, Comedy."
