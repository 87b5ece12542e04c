"""MovieLens 100K, 1M, 20M and latest-small from the GroupLens release archives.

Each variant is read from its original files, inside the release .zip or in an unpacked folder:

| variant | ratings | movies | format |
| --- | --- | --- | --- |
| 100k | ``u.data`` | ``u.item`` (+ ``u.genre``) | tab / ``|`` separated, movies in Latin-1 |
| 1m | ``ratings.dat`` | ``movies.dat`` | ``::`` separated, Latin-1 |
| 20m, latest-small | ``ratings.csv`` | ``movies.csv`` | CSV with a header, UTF-8 |

Titles carry the release year in brackets, as in "Toy Story (1995)". The loader splits them
into the template fields `title` and `year`, and `genres` is the list of genre names.
"""

from __future__ import annotations

import io
import logging
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from l3ae_bench.data.assemble import assemble, render_texts
from l3ae_bench.data.digests import file_digests
from l3ae_bench.data.download import DownloadConfig, check_checksum, fetch
from l3ae_bench.data.interactions import Interactions
from l3ae_bench.data.preprocess import FilterConfig, RatingLog, filter_log, log_from_ids
from l3ae_bench.data.splits import SplitConfig
from l3ae_bench.data.store import load_or_build, split_cache_path
from l3ae_bench.errors import ConfigError, DataError
from l3ae_bench.text import TextTemplate

log = logging.getLogger(__name__)

BASE_URL = "https://files.grouplens.org/datasets/movielens"
TEMPLATE_FIELDS = ["title", "year", "genres"]
_YEAR = re.compile(r"^(.*?)\s*\((\d{4})\)\s*$")


@dataclass(frozen=True)
class Variant:
    """Files and formats of one MovieLens release."""

    folder: str
    ratings: str
    movies: str


VARIANTS = {
    "100k": Variant("ml-100k", "u.data", "u.item"),
    "1m": Variant("ml-1m", "ratings.dat", "movies.dat"),
    "20m": Variant("ml-20m", "ratings.csv", "movies.csv"),
    "latest-small": Variant("ml-latest-small", "ratings.csv", "movies.csv"),
}


@dataclass(frozen=True)
class MovieLensConfig:
    """Settings of a MovieLens release read from its original files."""

    name: str
    """Dataset name, used in run names and cache keys."""
    variant: str
    """Release: 100k, 1m, 20m or latest-small."""
    source: str | None = None
    """Local release .zip, or folder with the release's files; null downloads the .zip."""
    url: str | None = None
    """Download URL of the release .zip; null uses <GroupLens>/ml-<variant>.zip."""
    checksum: str | None = None
    """Checksum of the downloaded .zip (md5:<hex> or sha256:<hex>); null skips the check."""
    text_template: str = "{title}[ ({year})].[ Genres: {genres}.]"
    """Item text built from the fields title, year and genres; see `l3ae_bench.text`."""
    filter: FilterConfig = field(default_factory=FilterConfig)
    """Rating rules and k-core minimums."""
    split: SplitConfig = field(default_factory=SplitConfig)
    """Split method, ratios, seed and cold-start options."""
    download: DownloadConfig = field(default_factory=DownloadConfig)
    """Retry, timeout and progress-bar settings of the download."""

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ConfigError(
                f"dataset.variant={self.variant!r} is not a MovieLens release this loader "
                f"reads; choose one of {sorted(VARIANTS)}."
            )
        check_checksum(self.checksum, "dataset.checksum")
        TextTemplate(self.text_template).check_fields(TEMPLATE_FIELDS)


def load_movielens(config: MovieLensConfig, cache_dir: Path) -> Interactions:
    """Return the release's splits, from the processed cache when the same inputs ran before."""
    variant = VARIANTS[config.variant]
    files = ReleaseFiles(_resolve(config, variant, cache_dir), variant)
    sources = {name: files.digest(name, cache_dir) for name in files.needed()}
    exclude = ("source", "url", "download")
    path = split_cache_path(cache_dir, config.name, sources, config, exclude)
    return load_or_build(path, lambda: _build(config, files))


def _resolve(config: MovieLensConfig, variant: Variant, cache_dir: Path) -> Path:
    if config.source:
        source = Path(config.source).expanduser()
        if not source.exists():
            raise DataError(
                f"MovieLens source not found: {source} (dataset.source). Give the release .zip, "
                f"a folder with {variant.ratings} and {variant.movies}, or null to download."
            )
        return source
    url = config.url or f"{BASE_URL}/{variant.folder}.zip"
    return fetch(url, cache_dir, "movielens", config.checksum, config.download, "dataset.checksum")


class ReleaseFiles:
    """The files of one release, read from its .zip or from a folder."""

    def __init__(self, source: Path, variant: Variant) -> None:
        self.source = source
        self.variant = variant

    def needed(self) -> list[str]:
        extra = ["u.genre"] if self.variant.folder == "ml-100k" else []
        return [self.variant.ratings, self.variant.movies, *extra]

    def label(self, name: str) -> str:
        """Name a file for messages, as archive:member or a path."""
        if self.source.is_file():
            return f"{self.source}:{self._member(name)}"
        return str(self._path(name))

    def digest(self, name: str, cache_dir: Path) -> str:
        if self.source.is_file():
            return file_digests(self.source, cache_dir)["sha256"]
        return file_digests(self._path(name), cache_dir)["sha256"]

    def read(self, name: str) -> bytes:
        try:
            if self.source.is_file():
                with zipfile.ZipFile(self.source) as archive:
                    return archive.read(self._member(name))
            return self._path(name).read_bytes()
        except (KeyError, FileNotFoundError, zipfile.BadZipFile) as error:
            raise DataError(
                f"{self.source}: cannot read {name} ({error}). Give the MovieLens "
                f"{self.variant.folder} release .zip or a folder holding its files."
            ) from error

    def _member(self, name: str) -> str:
        return f"{self.variant.folder}/{name}"

    def _path(self, name: str) -> Path:
        nested = self.source / self.variant.folder / name
        return nested if nested.is_file() else self.source / name


def _build(config: MovieLensConfig, files: ReleaseFiles) -> Interactions:
    source = files.label(files.variant.ratings)
    if files.variant.folder == "ml-100k":
        records = _ratings_table(files, "\t", ["user_id", "item_id", "rating", "timestamp"])
        movies = _movies_100k(files)
    elif files.variant.folder == "ml-1m":
        records = _ratings_table(files, "::", ["user_id", "item_id", "rating", "timestamp"])
        movies = _movies_dat(files)
    else:
        records = _ratings_table(files, ",", None)
        movies = _movies_csv(files)
    records = filter_log(records, config.filter, source)

    missing = [item for item in records.item_ids if item not in movies]
    if missing:
        raise DataError(
            f"{files.label(files.variant.movies)}: {len(missing)} rated movies have no line, "
            f"for example {missing[:5]}. The release files do not belong together."
        )
    template = TextTemplate(config.text_template)
    texts = render_texts(template, records.item_ids, movies.__getitem__, source, records.stats)
    return assemble(config.name, records, texts, config.split, source)


def _ratings_table(files: ReleaseFiles, separator: str, names: list[str] | None) -> RatingLog:
    """Read the ratings file into a `RatingLog`; integer ids become strings in the vocabulary."""
    name = files.variant.ratings
    raw = files.read(name)
    if separator == "::":
        # The C parser takes one-character separators only; "::" never occurs inside a field.
        raw, separator = raw.replace(b"::", b"\t"), "\t"
    try:
        table = pd.read_csv(
            io.BytesIO(raw), sep=separator, header=None if names else 0, names=names
        )
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise DataError(f"{files.label(name)}: cannot parse the ratings ({error}).") from error
    if table.shape[1] != 4:
        raise DataError(
            f"{files.label(name)}: expected 4 columns (user, movie, rating, timestamp), found "
            f"{table.shape[1]}."
        )
    table.columns = ["user_id", "item_id", "rating", "timestamp"]
    for column in ("user_id", "item_id"):
        empty = np.flatnonzero(table[column].isna().to_numpy())
        if len(empty):
            line = int(empty[0]) + (1 if names else 2)
            raise DataError(f"{files.label(name)}, line {line}: the {column} field is empty.")
    numbers = {}
    for column in ("rating", "timestamp"):
        values = pd.to_numeric(table[column], errors="coerce")
        bad = np.flatnonzero(values.isna().to_numpy())
        if len(bad):
            line = int(bad[0]) + (1 if names else 2)
            raise DataError(
                f"{files.label(name)}, line {line}: {column} {table[column].iloc[bad[0]]!r} is "
                "not a number."
            )
        numbers[column] = values.to_numpy(dtype=np.float64)
    return log_from_ids(
        table["user_id"].to_numpy(),
        table["item_id"].to_numpy(),
        numbers["rating"],
        numbers["timestamp"],
    )


def _title_fields(title: str) -> dict[str, str]:
    """Split "Toy Story (1995)" into title "Toy Story" and year "1995"."""
    match = _YEAR.match(title.strip())
    if match:
        return {"title": match.group(1), "year": match.group(2)}
    return {"title": title.strip(), "year": ""}


def _movies_100k(files: ReleaseFiles) -> dict[str, dict]:
    """Read u.item (Latin-1, |-separated, 19 genre flags) with genre names from u.genre."""
    genre_names = {}
    for line in files.read("u.genre").decode("latin-1").splitlines():
        if line.strip():
            genre, _, index = line.rpartition("|")
            genre_names[int(index)] = genre
    genres = [genre_names[index] for index in sorted(genre_names)]

    movies = {}
    label = files.label("u.item")
    for number, line in enumerate(files.read("u.item").decode("latin-1").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) != 5 + len(genres):
            raise DataError(
                f"{label}, line {number}: expected {5 + len(genres)} |-separated fields (id, "
                f"title, release date, video release date, IMDb URL, {len(genres)} genre flags), "
                f"found {len(fields)}."
            )
        flags = fields[5:]
        movies[fields[0]] = {
            **_title_fields(fields[1]),
            "genres": [genre for genre, flag in zip(genres, flags, strict=True) if flag == "1"],
        }
        if not movies[fields[0]]["year"] and fields[2][-4:].isdigit():
            movies[fields[0]]["year"] = fields[2][-4:]
    return movies


def _movies_dat(files: ReleaseFiles) -> dict[str, dict]:
    """Read movies.dat of 1M: Latin-1, "MovieID::Title::Genres" with |-separated genres."""
    movies = {}
    label = files.label("movies.dat")
    for number, line in enumerate(files.read("movies.dat").decode("latin-1").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("::")
        if len(fields) != 3:
            raise DataError(
                f"{label}, line {number}: expected 3 ::-separated fields (MovieID, Title, "
                f"Genres), found {len(fields)}."
            )
        movies[fields[0]] = {**_title_fields(fields[1]), "genres": _genre_list(fields[2])}
    return movies


def _movies_csv(files: ReleaseFiles) -> dict[str, dict]:
    """Read movies.csv of 20M and latest-small: UTF-8 CSV with movieId, title, genres."""
    label = files.label("movies.csv")
    try:
        table = pd.read_csv(io.BytesIO(files.read("movies.csv")), dtype=str, encoding="utf-8")
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise DataError(f"{label}: cannot parse the movies ({error}).") from error
    missing = {"movieId", "title", "genres"} - set(table.columns)
    if missing:
        raise DataError(f"{label}: the header lacks the column(s) {sorted(missing)}.")
    table = table.fillna("")
    return {
        movie: {**_title_fields(title), "genres": _genre_list(genres)}
        for movie, title, genres in zip(
            table["movieId"], table["title"], table["genres"], strict=True
        )
    }


def _genre_list(value: str) -> list[str]:
    return [genre for genre in value.strip().split("|") if genre and genre != "(no genres listed)"]
