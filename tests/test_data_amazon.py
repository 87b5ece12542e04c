"""Amazon Reviews 2023 loader on tiny fixture files in the dataset's JSON Lines format."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from l3ae_bench.data.amazon import AmazonReviews2023Config, load_amazon_reviews_2023
from l3ae_bench.data.preprocess import FilterConfig
from l3ae_bench.errors import ConfigError, DataError

FIXTURES = Path(__file__).parent / "fixtures" / "amazon"


def config_for(case: str, **overrides) -> AmazonReviews2023Config:
    """A config reading one fixture folder, with k-core off unless overridden."""
    values = {
        "name": f"amazon-{case}",
        "category": "Video_Games",
        "reviews_path": str(FIXTURES / case / "Video_Games.jsonl"),
        "meta_path": str(FIXTURES / case / "meta_Video_Games.jsonl"),
        "filter": FilterConfig(),
        **overrides,
    }
    return AmazonReviews2023Config(**values)


def all_pairs(data) -> set[tuple[str, str]]:
    """Return every (user_id, item_id) pair of the three splits."""
    pairs = set()
    for matrix in (data.train, data.val, data.test):
        rows, cols = matrix.nonzero()
        for row, col in zip(rows, cols, strict=True):
            pairs.add((str(data.user_ids[row]), str(data.item_ids[col])))
    return pairs


def test_variants_become_one_item(tmp_path):
    data = load_amazon_reviews_2023(config_for("variants"), tmp_path)
    assert sorted(data.item_ids.tolist()) == ["B0OTHER", "B0PARENT"]
    assert ("U1", "B0PARENT") in all_pairs(data)
    assert ("U2", "B0PARENT") in all_pairs(data)


def test_variants_item_text_from_metadata(tmp_path):
    data = load_amazon_reviews_2023(config_for("variants"), tmp_path)
    texts = dict(zip(data.item_ids.tolist(), data.item_texts, strict=True))
    assert texts["B0PARENT"] == (
        "Controller. Features: Wireless; Rechargeable. "
        "Categories: Video Games > PC > Accessories. Store: PadCo."
    )
    assert texts["B0OTHER"] == "Headset. Description: Clear sound."


def test_html_description_yields_clean_text(tmp_path):
    data = load_amazon_reviews_2023(config_for("html"), tmp_path)
    assert data.item_texts == [
        "Tom & Jerry Racing. Description: Fast & fun racing. Ages 8+ <3 players>."
    ]


def test_custom_template(tmp_path):
    config = config_for("variants", text_template="{main_category}: {title}")
    data = load_amazon_reviews_2023(config, tmp_path)
    assert "Video Games: Controller" in data.item_texts


def test_unknown_template_field():
    with pytest.raises(ConfigError, match="unknown field.*'colour'"):
        config_for("variants", text_template="{title} {colour}")


def test_duplicated_review_line_counts_once(tmp_path):
    data = load_amazon_reviews_2023(config_for("duplicate"), tmp_path)
    assert data.stats["review_lines"] == 3
    assert data.stats["duplicate_reviews"] == 1
    assert data.stats["records"] == 2


@pytest.mark.parametrize(("rule", "users"), [("drop", ["U2"]), ("keep", ["U1", "U2"])])
def test_zero_rating_rule(tmp_path, rule, users):
    config = config_for("zero_rating", filter=FilterConfig(zero_rating=rule))
    data = load_amazon_reviews_2023(config, tmp_path)
    assert data.stats["zero_ratings"] == 1
    assert sorted(data.user_ids.tolist()) == users


def test_zero_rating_error(tmp_path):
    config = config_for("zero_rating", filter=FilterConfig(zero_rating="error"))
    with pytest.raises(DataError, match="1 records have a rating of 0.0"):
        load_amazon_reviews_2023(config, tmp_path)


def test_zero_rating_kept_then_thresholded(tmp_path):
    rules = FilterConfig(zero_rating="keep", rating_threshold=4.5)
    data = load_amazon_reviews_2023(config_for("zero_rating", filter=rules), tmp_path)
    assert all_pairs(data) == {("U2", "B0FIVE")}


def test_k_core_needs_several_passes(tmp_path):
    rules = FilterConfig(min_user_interactions=2, min_item_interactions=2)
    data = load_amazon_reviews_2023(config_for("kcore", filter=rules), tmp_path)
    X = (data.train + data.val + data.test).tocsr()
    assert data.stats["k_core_passes"] >= 3
    assert np.diff(X.indptr).min() >= 2
    assert np.diff(X.tocsc().indptr).min() >= 2
    assert sorted(data.user_ids.tolist()) == ["U1", "U4"]
    assert sorted(data.item_ids.tolist()) == ["B0A", "B0B"]


def test_k_core_filtering_everything_is_error(tmp_path):
    rules = FilterConfig(min_user_interactions=3, min_item_interactions=3)
    with pytest.raises(DataError, match="k-core filter.*removes every interaction"):
        load_amazon_reviews_2023(config_for("kcore", filter=rules), tmp_path)


def test_threshold_filtering_everything_is_error(tmp_path):
    rules = FilterConfig(rating_threshold=6.0)
    with pytest.raises(DataError, match="no interactions are left.*rating_threshold=6.0"):
        load_amazon_reviews_2023(config_for("kcore", filter=rules), tmp_path)


def test_items_without_metadata_dropped(tmp_path):
    data = load_amazon_reviews_2023(config_for("no_metadata"), tmp_path)
    assert data.item_ids.tolist() == ["B0KNOWN"]
    assert data.stats["items_without_metadata"] == 1


def test_items_without_metadata_kept_empty(tmp_path):
    config = config_for("no_metadata", items_without_metadata="keep")
    data = load_amazon_reviews_2023(config, tmp_path)
    texts = dict(zip(data.item_ids.tolist(), data.item_texts, strict=True))
    assert texts["B0GHOST"] == ""
    assert data.stats["empty_texts"] == 1


def test_items_without_metadata_error(tmp_path):
    config = config_for("no_metadata", items_without_metadata="error")
    with pytest.raises(DataError, match="1 reviewed items have no metadata line.*B0GHOST"):
        load_amazon_reviews_2023(config, tmp_path)


def test_dropping_items_restores_k_core(tmp_path):
    rules = FilterConfig(min_user_interactions=2, min_item_interactions=1)
    # Without B0GHOST, each user has one interaction left, below the minimum of 2.
    with pytest.raises(DataError, match="removes every interaction"):
        load_amazon_reviews_2023(config_for("no_metadata", filter=rules), tmp_path)


def test_gzip_files_read(tmp_path):
    folder = tmp_path / "gz"
    folder.mkdir()
    for name in ("Video_Games.jsonl", "meta_Video_Games.jsonl"):
        data = (FIXTURES / "variants" / name).read_bytes()
        (folder / f"{name}.gz").write_bytes(gzip.compress(data))
    config = config_for(
        "variants",
        reviews_path=str(folder / "Video_Games.jsonl.gz"),
        meta_path=str(folder / "meta_Video_Games.jsonl.gz"),
    )
    data = load_amazon_reviews_2023(config, tmp_path / "cache")
    assert data.n_items == 2


def test_truncated_gzip_is_error(tmp_path):
    data = gzip.compress((FIXTURES / "variants" / "Video_Games.jsonl").read_bytes() * 50)
    path = tmp_path / "Video_Games.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_amazon_reviews_2023(config_for("variants", reviews_path=str(path)), tmp_path)


def test_invalid_json_names_line(tmp_path):
    path = tmp_path / "Video_Games.jsonl"
    lines = (FIXTURES / "variants" / "Video_Games.jsonl").read_text().splitlines()
    lines[2] = lines[2][:-5]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="Video_Games.jsonl, line 3: invalid JSON"):
        load_amazon_reviews_2023(config_for("variants", reviews_path=str(path)), tmp_path)


def test_review_without_parent_asin_names_line(tmp_path):
    path = tmp_path / "Video_Games.jsonl"
    lines = (FIXTURES / "variants" / "Video_Games.jsonl").read_text().splitlines()
    record = json.loads(lines[1])
    del record["parent_asin"]
    lines[1] = json.dumps(record)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="line 2: the review has no parent_asin"):
        load_amazon_reviews_2023(config_for("variants", reviews_path=str(path)), tmp_path)


def test_string_rating_names_line(tmp_path):
    path = tmp_path / "Video_Games.jsonl"
    lines = (FIXTURES / "variants" / "Video_Games.jsonl").read_text().splitlines()
    lines[0] = lines[0].replace('"rating": 5.0', '"rating": "five"')
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="line 1: rating must be a number, found 'five'"):
        load_amazon_reviews_2023(config_for("variants", reviews_path=str(path)), tmp_path)


def test_missing_local_file(tmp_path):
    with pytest.raises(DataError, match="dataset.reviews_path"):
        load_amazon_reviews_2023(config_for("variants", reviews_path=str(tmp_path / "x")), tmp_path)


def test_invalid_category():
    with pytest.raises(ConfigError, match="dataset.category"):
        config_for("variants", category="../etc")


def test_invalid_checksum():
    with pytest.raises(ConfigError, match="dataset.meta_checksum"):
        config_for("variants", meta_checksum="md5:xyz")


def test_cache_is_reused(tmp_path):
    first = load_amazon_reviews_2023(config_for("variants"), tmp_path)
    cached = list((tmp_path / "splits").glob("amazon-variants-*.npz"))
    assert len(cached) == 1
    second = load_amazon_reviews_2023(config_for("variants"), tmp_path)
    assert second.stats == first.stats
    assert second.item_texts == first.item_texts


def test_cache_key_follows_content_not_path(tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(FIXTURES / "variants", copy)
    load_amazon_reviews_2023(config_for("variants"), tmp_path / "cache")
    moved = config_for(
        "variants",
        reviews_path=str(copy / "Video_Games.jsonl"),
        meta_path=str(copy / "meta_Video_Games.jsonl"),
    )
    load_amazon_reviews_2023(moved, tmp_path / "cache")
    assert len(list((tmp_path / "cache" / "splits").glob("*.npz"))) == 1
    first_line = (copy / "Video_Games.jsonl").read_text().splitlines()[0]
    with open(copy / "Video_Games.jsonl", "a") as handle:
        handle.write(first_line + "\n")
    changed = load_amazon_reviews_2023(moved, tmp_path / "cache")
    assert changed.stats["duplicate_reviews"] == 1
    assert len(list((tmp_path / "cache" / "splits").glob("*.npz"))) == 2


def test_same_seed_gives_identical_cache_bytes(tmp_path):
    rules = FilterConfig(min_user_interactions=2, min_item_interactions=2)
    config = config_for("kcore", filter=rules)
    load_amazon_reviews_2023(config, tmp_path / "a")
    load_amazon_reviews_2023(config, tmp_path / "b")
    (first,) = (tmp_path / "a" / "splits").glob("*.npz")
    (second,) = (tmp_path / "b" / "splits").glob("*.npz")
    assert first.name == second.name
    assert first.read_bytes() == second.read_bytes()
