"""Whatever is not an up-to-date file still takes the slow path, and behaves as before
(``animedex_store.fastpath.opening``).

A seed v1 file, a file one revision behind head and a missing file are opened
in a fresh interpreter (:mod:`fresh_interpreter`): SQLAlchemy and Alembic load
(lock, adoption, migration), every row is kept byte for byte and the file ends
at head. Files we refuse (not a database; a database with a table of its own)
raise the same errors as before and are left exactly as they were. Each case
runs through ``CacheRepository`` and the drop-in ``SqliteCache``.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import fields
from pathlib import Path

import pytest
from alembic_runner import migrate_file, revisions
from dbfiles import fingerprint, rows, schema
from fresh_interpreter import run_fresh
from legacy import SeedRow, SeedState, insert_like_seed, planned_row, write_foreign_database, write_seed_file

from animedex_store.migrations.revisions import HEAD_REVISION

OPENERS = ["CacheRepository", "SqliteCache"]

# Opens argv's file, reads one key; reports the payload or the error, and the heavy packages loaded.
OPEN_AND_GET = """
from animedex_store.errors import StoreError

opener, path, backend, signature = sys.argv[1:5]
if opener == "CacheRepository":
    from animedex_store import CacheRepository as Open
else:
    from animedex_store.sqlite import SqliteCache as Open
outcome = {}
try:
    cache = Open(path)
    try:
        payload = cache.get(backend, signature)
        outcome["payload"] = None if payload is None else payload.hex()
    finally:
        cache.close()
except StoreError as exc:
    outcome["error"] = [cls.__name__ for cls in type(exc).__mro__]
    outcome["message"] = str(exc)
    outcome["target"] = exc.target
outcome["loaded"] = heavy_loaded()
print(json.dumps(outcome))
"""


def _open_and_get(tmp_path: Path, opener: str, path: Path, row: SeedRow | None = None) -> dict:
    key = (row.backend, row.signature) if row is not None else ("anilist", "missing")
    return run_fresh(OPEN_AND_GET, opener, str(path), *key, cwd=tmp_path)


def _first_live(stored: list[SeedRow], now: int) -> SeedRow:
    return next(row for row in stored if not row.expired(now) and row.payload)


def _assert_migrated(probe: dict, path: Path, rows_before: list[tuple], live: SeedRow | None) -> None:
    assert "error" not in probe, probe
    assert {"sqlalchemy", "alembic"} <= set(probe["loaded"])  # the slow path: lock, adoption, Alembic
    assert probe["payload"] == (None if live is None else live.payload.hex())
    assert rows(path) == rows_before  # every row, expired ones too, byte for byte
    assert schema(path).alembic_versions == (HEAD_REVISION,)


@pytest.mark.parametrize("opener", OPENERS)
def test_a_seed_v1_file_is_adopted_on_the_slow_path(tmp_path: Path, opener: str) -> None:
    path = tmp_path / "cache.sqlite"
    now = int(time.time())  # the child reads with the real clock
    stored = write_seed_file(path, SeedState.V1, rows=60, now=now)
    before = rows(path)
    assert len(before) == 60

    probe = _open_and_get(tmp_path, opener, path, _first_live(stored, now))

    _assert_migrated(probe, path, before, _first_live(stored, now))


def _behind_head(path: Path, now: int) -> list[SeedRow]:
    """A file one revision behind head holding rows in every column it has at that revision."""
    migrate_file(path, revisions()[-2])
    names = {field.name for field in fields(SeedRow)}
    conn = sqlite3.connect(path)
    try:
        columns = tuple(info[1] for info in conn.execute("PRAGMA table_info(cache_rows)") if info[1] in names)
        stored = [insert_like_seed(conn, planned_row(index, now), columns) for index in range(60)]
        conn.commit()
    finally:
        conn.close()
    return stored


@pytest.mark.parametrize("opener", OPENERS)
def test_a_file_one_revision_behind_is_upgraded_on_the_slow_path(tmp_path: Path, opener: str) -> None:
    path = tmp_path / "cache.sqlite"
    now = int(time.time())
    stored = _behind_head(path, now)
    assert schema(path).alembic_versions == (revisions()[-2],)
    before = rows(path)

    probe = _open_and_get(tmp_path, opener, path, _first_live(stored, now))

    _assert_migrated(probe, path, before, _first_live(stored, now))


@pytest.mark.parametrize("opener", OPENERS)
def test_a_missing_file_is_created_on_the_slow_path(tmp_path: Path, opener: str) -> None:
    path = tmp_path / "new" / "cache.sqlite"

    probe = _open_and_get(tmp_path, opener, path)

    _assert_migrated(probe, path, [], None)


def _not_a_database(path: Path) -> None:
    path.write_bytes(b"not a database, just notes\n" * 50)


REFUSED = [
    pytest.param(_not_a_database, "NotADatabaseError", "not a SQLite database", id="not-a-database"),
    pytest.param(write_foreign_database, "UnknownSchemaError", "(notes)", id="foreign-table"),
]


@pytest.mark.parametrize("opener", OPENERS)
@pytest.mark.parametrize(("make", "error", "says"), REFUSED)
def test_a_foreign_file_is_refused_on_the_slow_path_and_left_untouched(
    tmp_path: Path, opener: str, make, error: str, says: str
) -> None:
    path = tmp_path / "cache.sqlite"
    make(path)
    before = fingerprint(path)

    probe = _open_and_get(tmp_path, opener, path)

    assert "payload" not in probe, probe
    assert error in probe["error"] and "StoreError" in probe["error"]
    assert probe["target"] == str(path)
    assert str(path) in probe["message"] and says in probe["message"]
    assert "sqlalchemy" in probe["loaded"]  # refused where it always was: on the slow path
    assert fingerprint(path) == before  # content, modification time, no journal files beside it
