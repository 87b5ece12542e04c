"""MovieLens 100K, 1M, 20M and latest-small from fixture files in the GroupLens formats."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest

from l3ae_bench.data.grouplens import MovieLensConfig, load_movielens
from l3ae_bench.data.preprocess import FilterConfig
from l3ae_bench.errors import ConfigError, DataError

FIXTURES = Path(__file__).parent / "fixtures" / "movielens"


def load(variant: str, source: Path, cache: Path, **overrides):
    config = MovieLensConfig(name=f"ml-{variant}", variant=variant, source=str(source), **overrides)
    return load_movielens(config, cache)


def texts_by_id(data) -> dict[str, str]:
    return dict(zip(data.item_ids.tolist(), data.item_texts, strict=True))


def test_100k_latin1_title(tmp_path):
    data = load("100k", FIXTURES / "ml-100k", tmp_path)
    assert texts_by_id(data)["2"] == "Amélie (2001). Genres: Comedy, Romance."


def test_100k_counts_and_genres(tmp_path):
    data = load("100k", FIXTURES / "ml-100k", tmp_path)
    assert (data.n_users, data.n_items) == (5, 4)
    assert data.train.nnz + data.val.nnz + data.test.nnz == 20
    assert texts_by_id(data)["1"] == "Toy Story (1995). Genres: Animation, Children's, Comedy."
    assert texts_by_id(data)["4"] == "unknown. Genres: unknown."


def test_1m_latin1_title(tmp_path):
    data = load("1m", FIXTURES / "ml-1m", tmp_path)
    assert texts_by_id(data)["2"] == "Amélie (2001). Genres: Comedy, Romance."
    assert texts_by_id(data)["3"].startswith("City of Lost Children, The (Cité des enfants")


def test_1m_counts(tmp_path):
    data = load("1m", FIXTURES / "ml-1m", tmp_path)
    assert (data.n_users, data.n_items) == (5, 3)
    assert data.train.nnz + data.val.nnz + data.test.nnz == 15


@pytest.mark.parametrize("variant", ["latest-small", "20m"])
def test_csv_variants(tmp_path, variant):
    data = load(variant, FIXTURES / "ml-latest-small", tmp_path)
    texts = texts_by_id(data)
    assert texts["2"] == "American President, The (1995). Genres: Comedy, Drama, Romance."
    assert texts["3"].startswith("Amélie (Fabuleux destin d'Amélie Poulain Le) (2001).")
    assert texts["4"] == "Unknown Film."
    assert data.train.nnz + data.val.nnz + data.test.nnz == 24


def test_rating_threshold_on_half_stars(tmp_path):
    rules = FilterConfig(rating_threshold=4.5)
    data = load("latest-small", FIXTURES / "ml-latest-small", tmp_path, filter=rules)
    # Ratings are ((user + item) % 10 + 1) / 2, so 4.5 and 5.0 come from sums 8 and 9 mod 10.
    assert data.train.nnz + data.val.nnz + data.test.nnz == 5


def test_zip_archive(tmp_path):
    archive = tmp_path / "ml-1m.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for path in (FIXTURES / "ml-1m").iterdir():
            handle.write(path, f"ml-1m/{path.name}")
    from_zip = load("1m", archive, tmp_path / "a")
    from_folder = load("1m", FIXTURES / "ml-1m", tmp_path / "b")
    assert from_zip.item_texts == from_folder.item_texts
    assert (from_zip.test != from_folder.test).nnz == 0


def test_zip_missing_member(tmp_path):
    archive = tmp_path / "ml-1m.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.write(FIXTURES / "ml-1m" / "ratings.dat", "ml-1m/ratings.dat")
    with pytest.raises(DataError, match="cannot read movies.dat"):
        load("1m", archive, tmp_path)


def test_malformed_movies_line(tmp_path):
    folder = tmp_path / "ml-1m"
    shutil.copytree(FIXTURES / "ml-1m", folder)
    with open(folder / "movies.dat", "ab") as handle:
        handle.write(b"4::No Genres Field (1999)\n")
    with pytest.raises(DataError, match="movies.dat, line 4: expected 3 ::-separated fields"):
        load("1m", folder, tmp_path / "cache")


def test_bad_rating_names_line(tmp_path):
    folder = tmp_path / "ml-latest-small"
    shutil.copytree(FIXTURES / "ml-latest-small", folder)
    lines = (folder / "ratings.csv").read_text().splitlines()
    lines[3] = "1,3,great,964982703"
    (folder / "ratings.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="ratings.csv, line 4: rating 'great' is not a number"):
        load("latest-small", folder, tmp_path / "cache")


def test_rated_movie_without_line(tmp_path):
    folder = tmp_path / "ml-100k"
    shutil.copytree(FIXTURES / "ml-100k", folder)
    with open(folder / "u.data", "a") as handle:
        handle.write("1\t99\t5\t881250949\n")
    with pytest.raises(DataError, match="1 rated movies have no line.*'99'"):
        load("100k", folder, tmp_path / "cache")


def test_unknown_variant():
    with pytest.raises(ConfigError, match="dataset.variant='10m'"):
        MovieLensConfig(name="x", variant="10m")


def test_missing_source(tmp_path):
    with pytest.raises(DataError, match="dataset.source"):
        load("1m", tmp_path / "nowhere", tmp_path)


def test_template_field_check():
    with pytest.raises(ConfigError, match="unknown field.*'plot'"):
        MovieLensConfig(name="x", variant="1m", text_template="{title}: {plot}")
