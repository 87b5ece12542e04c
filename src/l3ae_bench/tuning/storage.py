"""Optuna storage: where studies live, how processes open them, and the lock they share.

A study is stored in an SQLAlchemy database (SQLite file by default) or an Optuna journal file,
so it outlives the process: rerunning a job resumes its study, and several processes can work
on one study. Creating a trial and counting the trials happen under a file lock next to the
storage file, which keeps the total at `search.n_trials` exactly when workers race for the
last trials.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.exc
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

from l3ae_bench.errors import ConfigError

log = logging.getLogger(__name__)

JOURNAL_PREFIX = "journal:"
SQLITE_PREFIX = "sqlite:///"
SQLITE_BUSY_TIMEOUT_S = 60
STUDY_SETTINGS_ATTR = "l3ae_bench.settings"
PARENT_RUN_ATTR = "l3ae_bench.mlflow_parent_run_id"
# Not ".lock": Optuna's journal file backend creates `<file>.lock` as its own lock.
LOCK_SUFFIX = ".l3ae-lock"


def default_storage_url(root: str | Path) -> str:
    """Return the SQLite storage under `<root>/optuna/optuna.db` (absolute path)."""
    return f"{SQLITE_PREFIX}{(Path(root) / 'optuna' / 'optuna.db').resolve()}"


@dataclass(frozen=True)
class StorageLocation:
    """A parsed storage setting: the URL and the local file behind it, if any."""

    url: str
    file: Path | None
    """The SQLite or journal file; None for database servers."""
    journal: bool


def parse_storage(url: str) -> StorageLocation:
    """Check a storage setting: journal files and SQLite files need absolute paths."""
    if url.startswith(JOURNAL_PREFIX):
        path = url.removeprefix(JOURNAL_PREFIX)
        path = path.removeprefix("//") if path.startswith("///") else path
        return StorageLocation(url, _absolute(Path(path), url), journal=True)
    if url.startswith(SQLITE_PREFIX):
        path = url.removeprefix(SQLITE_PREFIX)
        if path in ("", ":memory:"):
            raise ConfigError(
                f"search.storage={url!r} is an in-memory database, which no rerun or second "
                "process can open; give a file, such as sqlite:////abs/path/optuna.db."
            )
        return StorageLocation(url, _absolute(Path(path), url), journal=False)
    if "://" not in url:
        raise ConfigError(
            f"search.storage={url!r} is neither a database URL (sqlite:////abs/optuna.db, "
            "postgresql://host/db) nor a journal file (journal:/abs/optuna.log)."
        )
    return StorageLocation(url, None, journal=False)


def _absolute(path: Path, url: str) -> Path:
    if not path.is_absolute():
        raise ConfigError(
            f"search.storage={url!r} names the relative path {path}, which would depend on the "
            "working directory; give an absolute path (sqlite:////abs/optuna.db has four "
            "slashes, journal:/abs/optuna.log one)."
        )
    return path


def open_storage(location: StorageLocation) -> BaseStorage:
    """Open (and create, the first time) the storage."""
    if location.file is not None:
        location.file.parent.mkdir(parents=True, exist_ok=True)
    if location.journal:
        return JournalStorage(JournalFileBackend(str(location.file)))
    engine_kwargs: dict[str, Any] = {}
    if location.file is not None:
        # Several jobs write to one SQLite file; wait for its lock instead of failing at once.
        engine_kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
    try:
        return RDBStorage(location.url, engine_kwargs=engine_kwargs)
    except (ImportError, ValueError, sqlalchemy.exc.SQLAlchemyError) as error:
        raise ConfigError(
            f"Cannot open the Optuna storage search.storage={redact_url(location.url)}: "
            f"{error}. Check the URL, the database driver and that the server is reachable."
        ) from error


def redact_url(url: str) -> str:
    """Hide the password of a database URL."""
    head, at, tail = url.rpartition("@")
    if not at or "://" not in head:
        return url
    scheme, _, credentials = head.partition("://")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{tail}"


class StorageLock:
    """An exclusive lock shared by every process that opens the same storage.

    NOTE: `fcntl.flock` serializes processes on one host and on shared filesystems that
    support it. Workers on hosts without such a filesystem may overshoot `search.n_trials`
    by up to one trial per extra worker.
    """

    def __init__(self, location: StorageLocation, fallback_folder: Path) -> None:
        if location.file is not None:
            self.path = location.file.with_name(location.file.name + LOCK_SUFFIX)
        else:
            digest = hashlib.sha256(location.url.encode()).hexdigest()[:16]
            self.path = fallback_folder / f"storage-{digest}{LOCK_SUFFIX}"

    @contextmanager
    def hold(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        with open(self.path, "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            waited = time.perf_counter() - started
            if waited > 1.0:
                log.debug("Waited %.1fs for the storage lock %s", waited, self.path)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def open_study(
    storage: BaseStorage, name: str, direction: str, settings: Mapping[str, Any]
) -> optuna.Study:
    """Create the study, or load it and check that it was created for the same settings.

    `settings` are the values that decide what the objective measures (data, encoder,
    evaluation, objective). A study created for other values raises ConfigError instead of
    mixing incomparable trials.
    """
    study = optuna.create_study(
        study_name=name, storage=storage, direction=direction, load_if_exists=True
    )
    # Compare in the JSON form the storage keeps (lists, not tuples).
    settings = json.loads(json.dumps(dict(settings)))
    stored = study.user_attrs.get(STUDY_SETTINGS_ATTR)
    if stored is None:
        study.set_user_attr(STUDY_SETTINGS_ATTR, settings)
        log.info("Created Optuna study %r", name)
        return study
    differences = _differences(stored, settings)
    stored_direction = study.direction.name.lower()
    if stored_direction != direction:
        differences.append(f"direction: stored {stored_direction}, now {direction}")
    if differences:
        raise ConfigError(
            f"Optuna study {name!r} was created for other settings ({'; '.join(differences)}). "
            "Set search.study_suffix=<text> to start a separate study, or delete the old one "
            f"with `optuna delete-study --study-name {name!r} --storage <url>`."
        )
    log.info("Resuming Optuna study %r with %d trials", name, len(study.get_trials()))
    return study


def _differences(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    keys = sorted(set(stored) | set(current))
    return [
        f"{key}: stored {stored.get(key)!r}, now {current.get(key)!r}"
        for key in keys
        if stored.get(key) != current.get(key)
    ]
