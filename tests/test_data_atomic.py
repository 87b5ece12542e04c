"""RecBole atomic files as a dataset format: headers, token_seq fields, string ids, errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from l3ae_bench.data.atomic import AtomicConfig, load_atomic, read_atomic
from l3ae_bench.errors import ConfigError, DataError

FIXTURES = Path(__file__).parent / "fixtures" / "atomic"


def load(folder: Path, cache: Path, **overrides):
    return load_atomic(AtomicConfig(name="books", path=str(folder), **overrides), cache)


def copy_books(tmp_path: Path) -> Path:
    folder = tmp_path / "books"
    shutil.copytree(FIXTURES / "books", folder)
    return folder


def test_ids_stay_strings(tmp_path):
    data = load(FIXTURES / "books", tmp_path)
    assert data.item_ids.tolist() == ["001", "002", "003", "004", "005"]
    assert data.user_ids[0] == "u001"


def test_default_text_lists_fields(tmp_path):
    data = load(FIXTURES / "books", tmp_path)
    assert data.item_texts[0] == "title: The Hobbit. genres: fantasy adventure. year: 1937."


def test_template_with_token_seq_separator(tmp_path):
    data = load(
        FIXTURES / "books", tmp_path, text_template="{title} ({year}). Genres: {genres:, }."
    )
    assert data.item_texts[0] == "The Hobbit (1937). Genres: fantasy, adventure."


def test_template_unknown_field(tmp_path):
    with pytest.raises(ConfigError, match="unknown field.*'author'.*'genres'"):
        load(FIXTURES / "books", tmp_path, text_template="{author}")


def test_counts(tmp_path):
    data = load(FIXTURES / "books", tmp_path)
    assert (data.n_users, data.n_items) == (6, 5)
    assert data.train.nnz + data.val.nnz + data.test.nnz == 30


def test_malformed_header_quotes_header(tmp_path):
    with pytest.raises(
        DataError,
        match="column 2: invalid header field 'item_id'.*"
        "'user_id:token\\\\titem_id\\\\trating:float'",
    ):
        load(FIXTURES / "bad_header", tmp_path, dataset="bad_header")


def test_repeated_field_name():
    with pytest.raises(DataError, match="line 1, column 2: the field name 'a' repeats"):
        read_atomic("a:token\ta:float\nx\t1\n", "dup.inter")


def test_wrong_field_count_names_line(tmp_path):
    folder = copy_books(tmp_path)
    with open(folder / "books.inter", "a") as handle:
        handle.write("u007\t001\t5\n")
    with pytest.raises(DataError, match="books.inter, line 32: expected 4 tab-separated fields"):
        load(folder, tmp_path / "cache")


def test_bad_float_names_line_and_column(tmp_path):
    folder = copy_books(tmp_path)
    lines = (folder / "books.inter").read_text().splitlines()
    lines[4] = "u001\t004\tfive\t1014"
    (folder / "books.inter").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="books.inter, line 5, column 3 \\(rating\\): 'five'"):
        load(folder, tmp_path / "cache")


def test_invalid_utf8_names_line(tmp_path):
    folder = copy_books(tmp_path)
    with open(folder / "books.item", "ab") as handle:
        handle.write(b"006\tCaf\xe9\tcooking\t2001\n")
    with pytest.raises(DataError, match="books.item, line 7: invalid UTF-8"):
        load(folder, tmp_path / "cache")


def test_missing_user_field(tmp_path):
    with pytest.raises(DataError, match="no field 'reader'.*dataset.user_field"):
        load(FIXTURES / "books", tmp_path, user_field="reader")


def test_rating_field_null(tmp_path):
    data = load(FIXTURES / "books", tmp_path, rating_field=None)
    assert data.stats["records"] == 30


def test_item_without_row_is_error(tmp_path):
    folder = copy_books(tmp_path)
    with open(folder / "books.inter", "a") as handle:
        handle.write("u001\t099\t5\t2000\n")
    with pytest.raises(DataError, match="1 items of the .inter file have no row.*'099'"):
        load(folder, tmp_path / "cache")


def test_item_without_row_dropped(tmp_path):
    folder = copy_books(tmp_path)
    with open(folder / "books.inter", "a") as handle:
        handle.write("u001\t099\t5\t2000\n")
    data = load(folder, tmp_path / "cache", items_without_metadata="drop")
    assert "099" not in data.item_ids.tolist()
    assert data.stats["items_without_metadata"] == 1


def test_missing_item_file(tmp_path):
    folder = copy_books(tmp_path)
    (folder / "books.item").unlink()
    with pytest.raises(DataError, match="File not found: .*books.item"):
        load(folder, tmp_path / "cache")


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="dataset.path"):
        load(tmp_path / "nowhere", tmp_path)
