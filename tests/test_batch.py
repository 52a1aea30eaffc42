"""Batch operations (``get_many``/``set_many``) and batched ``purge_expired``, on every engine."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from alembic_runner import migrate_file
from rowdump import dump_rows, plain_engine, row_count
from sqlalchemy import Engine, inspect

from animedex_store import CacheRepository, StoreError
from animedex_store.rules import operations
from animedex_store.sql.models import KEY_MAX_LENGTH
from animedex_store.testing import FROZEN_AT, FrozenClock

#: Each test that opens repositories runs on CacheRepository and AsyncCacheRepository (conftest).
BOTH_FLAVOURS = True

LONG_KEY = "k" * (KEY_MAX_LENGTH + 1)


# -- set_many ---------------------------------------------------------------------------------


def test_set_many_from_a_mapping_reads_back_like_set(repo: CacheRepository, frozen_clock: FrozenClock) -> None:
    repo.set_many("anilist", {"a": b"1", "b": bytearray(b"2"), "c": memoryview(b"3")}, ttl_seconds=60)
    assert repo.get_many("anilist", ["a", "b", "c"]) == {"a": b"1", "b": b"2", "c": b"3"}
    # Same row shape as set(): empty headers, fetched_at = now, expires_at = now + ttl.
    assert tuple(repo.get_with_meta("anilist", "b")) == (b"2", {}, FROZEN_AT)
    assert repo.get_with_meta("anilist", "b").expires_at == FROZEN_AT + timedelta(seconds=60)
    frozen_clock.advance(60)
    assert repo.get_many("anilist", ["a", "b", "c"]) == {}


def test_set_many_from_pairs_last_repeat_wins_and_overwrites(repo: CacheRepository, database: Engine) -> None:
    repo.set("jikan", "a", b"old", ttl_seconds=5)
    repo.set_many("jikan", iter([("a", b"first"), ("b", b"x"), ("a", b"second")]), ttl_seconds=60)
    assert repo.get_many("jikan", ["a", "b"]) == {"a": b"second", "b": b"x"}
    assert row_count(database) == 2


def test_set_many_with_nothing_writes_nothing(repo: CacheRepository, database: Engine) -> None:
    repo.set_many("b", {}, ttl_seconds=60)
    repo.set_many("b", [], ttl_seconds=60)
    assert row_count(database) == 0


def test_set_many_of_thousands_of_rows(repo: CacheRepository, database: Engine) -> None:
    items = {f"query:{number}": number.to_bytes(4, "big") for number in range(2_500)}
    repo.set_many("anilist", items, ttl_seconds=60)
    assert row_count(database) == 2_500
    assert repo.get_many("anilist", items) == items


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda r: r.set_many(1, {"a": b"x"}, ttl_seconds=60), TypeError),
        (lambda r: r.set_many(LONG_KEY, {"a": b"x"}, ttl_seconds=60), ValueError),
        (lambda r: r.set_many("b", {"a": b"x", 2: b"y"}, ttl_seconds=60), TypeError),
        (lambda r: r.set_many("b", {"a": b"x", LONG_KEY: b"y"}, ttl_seconds=60), ValueError),
        (lambda r: r.set_many("b", {"a": b"x", "b": "text"}, ttl_seconds=60), TypeError),
        (lambda r: r.set_many("b", [("a", b"x"), ("b", b"y", b"z")], ttl_seconds=60), TypeError),
        (lambda r: r.set_many("b", [("a", b"x"), None], ttl_seconds=60), TypeError),
        (lambda r: r.set_many("b", "ab", ttl_seconds=60), TypeError),
        (lambda r: r.set_many("b", 5, ttl_seconds=60), TypeError),
        (lambda r: r.set_many("b", {"a": b"x"}, ttl_seconds=True), TypeError),
        (lambda r: r.set_many("b", {"a": b"x"}, ttl_seconds=1.5), TypeError),
        (lambda r: r.set_many("b", {"a": b"x"}, ttl_seconds=-1), ValueError),
    ],
)
def test_set_many_checks_every_item_before_writing_any(
    repo: CacheRepository, database: Engine, call: Callable[[CacheRepository], object], error: type[Exception]
) -> None:
    repo.set("b", "a", b"before", ttl_seconds=60)
    before = dump_rows(database)
    with pytest.raises(error):
        call(repo)
    assert dump_rows(database) == before


# A trigger refusing the signature 'boom', in each engine's dialect.
REFUSE_BOOM = {
    "sqlite": [
        "CREATE TRIGGER refuse_boom BEFORE INSERT ON cache_rows WHEN NEW.signature = 'boom' "
        "BEGIN SELECT RAISE(ABORT, 'refused'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION refuse_boom() RETURNS trigger AS $$ BEGIN "
        "IF NEW.signature = 'boom' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER refuse_boom BEFORE INSERT ON cache_rows FOR EACH ROW EXECUTE FUNCTION refuse_boom()",
    ],
    "mysql": [
        "CREATE TRIGGER refuse_boom BEFORE INSERT ON cache_rows FOR EACH ROW BEGIN "
        "IF NEW.signature = 'boom' THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused'; END IF; END"
    ],
}


def test_set_many_is_one_transaction(repo: CacheRepository, database: Engine) -> None:
    """A row refused by the database half-way through leaves none of the batch behind, and
    the connection is left clean: later writes commit and other connections see them."""
    repo.set("b", "kept", b"before", ttl_seconds=60)
    with database.begin() as connection:
        for statement in REFUSE_BOOM[database.dialect.name]:
            connection.exec_driver_sql(statement)
    # 700 KB rows: PyMySQL splits the batch into several INSERTs (1 MB each at most), so the
    # first row is sent, and would stay, on its own if the batch were not one transaction.
    large = bytes(700_000)
    batch = [("first", large), ("kept", large), ("boom", b"x"), ("last", b"2")]
    with pytest.raises(StoreError):
        repo.set_many("b", batch, ttl_seconds=60)
    assert repo.get_many("b", ["first", "kept", "boom", "last"]) == {"kept": b"before"}
    repo.set_many("b", {"after": b"3"}, ttl_seconds=60)
    repo.set("b", "single", b"4", ttl_seconds=60)
    assert [(row[1], row[2]) for row in dump_rows(database)] == [("after", b"3"), ("kept", b"before"), ("single", b"4")]


def test_set_many_under_a_size_cap(
    make_repository: Callable[..., CacheRepository], frozen_clock: FrozenClock, database: Engine
) -> None:
    """A payload larger than the cap is refused before anything is written; a batch
    that takes the total over the cap evicts the rows closest to expiry, not its own."""
    capped = make_repository(max_bytes=100)
    capped.set_many("b", {"old": b"x" * 40, "older": b"x" * 40}, ttl_seconds=10)
    before = dump_rows(database)
    with pytest.raises(ValueError, match="max_bytes=100"):
        capped.set_many("b", {"fits": b"x", "too big": b"x" * 101}, ttl_seconds=60)
    assert dump_rows(database) == before
    frozen_clock.advance(1)
    capped.set_many("b", {"new1": b"x" * 30, "new2": b"x" * 30}, ttl_seconds=60)  # 140 bytes: over
    assert sorted(row[1] for row in dump_rows(database)) == ["new1", "new2"]
    assert capped.stats().payload_bytes == 60


# -- get_many ---------------------------------------------------------------------------------


def test_get_many_returns_only_live_rows_of_that_backend(repo: CacheRepository, frozen_clock: FrozenClock) -> None:
    repo.set("anilist", "live", b"1", ttl_seconds=60)
    repo.set("anilist", "expiring", b"2", ttl_seconds=10)
    repo.set("jikan", "other-backend", b"3", ttl_seconds=60)
    frozen_clock.advance(10)
    wanted = ["live", "expiring", "other-backend", "missing", "live"]
    assert repo.get_many("anilist", wanted) == {"live": b"1"}
    assert repo.get_many("anilist", []) == {}


def test_get_many_keys_compare_exactly(repo: CacheRepository) -> None:
    repo.set("b", "Key", b"1", ttl_seconds=60)
    assert repo.get_many("b", ["key", "Key ", "KEY", "Key"]) == {"Key": b"1"}


@pytest.mark.parametrize("count", [1, 3, 511, 512, 513, 1_300])
def test_get_many_across_query_chunks(repo: CacheRepository, count: int) -> None:
    stored = {f"s{number}": bytes([number % 256]) for number in range(0, count, 2)}
    repo.set_many("b", stored, ttl_seconds=60)
    assert repo.get_many("b", (f"s{number}" for number in range(count))) == stored


def test_get_many_is_a_pure_read(repo: CacheRepository, frozen_clock: FrozenClock, database: Engine) -> None:
    repo.set_many("b", {"a": b"1", "b": b"2"}, ttl_seconds=10)
    frozen_clock.advance(20)
    before = dump_rows(database)
    assert repo.get_many("b", ["a", "b"]) == {}
    assert dump_rows(database) == before


@pytest.mark.parametrize(
    ("backend", "signatures", "error"),
    [
        (None, ["a"], TypeError),
        (LONG_KEY, ["a"], ValueError),
        ("b", "abc", TypeError),
        ("b", ["a", 1], TypeError),
        ("b", ["a", LONG_KEY], ValueError),
        ("b", 42, TypeError),
    ],
)
def test_get_many_validates(repo: CacheRepository, backend: object, signatures: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        repo.get_many(backend, signatures)


# -- purge_expired in batches -----------------------------------------------------------------


@pytest.mark.parametrize("batch", [7, 1_000])
@pytest.mark.parametrize("expired", [0, 6, 7, 21, 30])
def test_purge_removes_every_expired_row_whatever_the_batch(
    repo: CacheRepository,
    frozen_clock: FrozenClock,
    database: Engine,
    monkeypatch: pytest.MonkeyPatch,
    batch: int,
    expired: int,
) -> None:
    monkeypatch.setattr(operations, "PURGE_BATCH", batch)
    repo.set_many("b", {f"old{number}": b"x" for number in range(expired)}, ttl_seconds=10)
    repo.set_many("b", {f"new{number}": b"y" for number in range(5)}, ttl_seconds=100)
    frozen_clock.advance(10)
    assert repo.purge_expired() == expired
    assert [signature for _b, signature, *_ in dump_rows(database)] == [f"new{number}" for number in range(5)]
    assert repo.purge_expired() == 0


def test_purge_finds_expired_rows_through_the_expires_at_index(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    with CacheRepository(path) as repo:
        statement = repo._sql.purge_expired.sql
    connection = sqlite3.connect(path)
    plan = " | ".join(row[3] for row in connection.execute(f"EXPLAIN QUERY PLAN {statement}", (0, 10)))
    connection.close()
    # Through the index (a covering one while cache_rows was WITHOUT ROWID; since revision 0005
    # the index holds expires_at and the rowid, and the keys come from the table's first columns).
    assert "USING INDEX ix_cache_rows_expires_at" in plan or "USING COVERING INDEX ix_cache_rows_expires_at" in plan
    assert "SCAN cache_rows" not in plan


# -- revision 0003 ----------------------------------------------------------------------------


def _expires_at_indexes(database: Engine) -> list[tuple[str, list[str]]]:
    indexes = inspect(database).get_indexes("cache_rows")
    return [(index["name"], index["column_names"]) for index in indexes if "expires_at" in index["column_names"]]


def test_expires_at_is_indexed_on_every_engine(repo: CacheRepository, database: Engine) -> None:
    # 0003's index for purging every backend, 0006's for one backend's rows by expiry.
    assert sorted(_expires_at_indexes(database)) == [
        ("ix_cache_rows_backend_expires_at", ["backend", "expires_at", "signature"]),
        ("ix_cache_rows_expires_at", ["expires_at"]),
    ]


def test_revision_0003_downgrades_to_no_index_and_upgrades_again(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    CacheRepository(path).close()
    engine = plain_engine(f"sqlite:///{path}")
    try:
        migrate_file(path, "0002", downgrade=True)
        assert _expires_at_indexes(engine) == []
        with engine.connect() as connection:
            table_sql = connection.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = 'cache_rows'").scalar()
        assert "WITHOUT ROWID" in table_sql
        # An index left by an interrupted run (MariaDB commits DDL at once) does not stop the upgrade.
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE INDEX ix_cache_rows_expires_at ON cache_rows (expires_at)")
        migrate_file(path, "0003")
        assert _expires_at_indexes(engine) == [("ix_cache_rows_expires_at", ["expires_at"])]
    finally:
        engine.dispose()
