"""Features beyond the seed (README, "Beyond the seed"), on every engine: serve-stale, delete/clear,
stats, size cap, vacuum."""

from __future__ import annotations

import copy
import json
import pickle
import random
import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from rowdump import dump_rows, plain_engine, rows
from sqlalchemy import Engine, text, update

from animedex_store import CacheRepository, StoreError
from animedex_store.core.stats import BackendStats, CachedResponse, CacheStats
from animedex_store.rules import size_cap as eviction
from animedex_store.sql.models import KEY_MAX_LENGTH
from animedex_store.testing import FROZEN_AT, FrozenClock

#: Each test that opens repositories runs on CacheRepository and AsyncCacheRepository (conftest).
BOTH_FLAVOURS = True

MakeRepository = Callable[..., CacheRepository]
LONG_KEY = "k" * (KEY_MAX_LENGTH + 1)


def keys(database: Engine) -> list[tuple[str, str]]:
    """Every stored key, expired rows included, sorted in Python (engines collate text differently)."""
    return sorted((row[0], row[1]) for row in dump_rows(database))


# -- serve stale --------------------------------------------------------------------------------


def test_fresh_row_is_a_cached_response_that_unpacks_as_the_seed_tuple(
    repo: CacheRepository, frozen_clock: FrozenClock
) -> None:
    repo.set_with_meta("anilist", "q", b"body", response_headers={"ETag": "v1"}, ttl_seconds=60)
    result = repo.get_with_meta("anilist", "q")
    payload, headers, fetched_at = result
    assert (payload, headers, fetched_at) == (b"body", {"ETag": "v1"}, FROZEN_AT)
    assert result == (b"body", {"ETag": "v1"}, FROZEN_AT) and len(result) == 3 and isinstance(result, tuple)
    assert isinstance(result, CachedResponse)
    assert (result.payload, result.headers, result.fetched_at) == (b"body", {"ETag": "v1"}, FROZEN_AT)
    assert result.expires_at == FROZEN_AT + timedelta(seconds=60)
    assert result.is_stale is False


def test_expired_row_is_served_only_when_stale_is_allowed(
    repo: CacheRepository, frozen_clock: FrozenClock, database: Engine
) -> None:
    repo.set_with_meta("anilist", "q", b"last good", response_headers={"ETag": "v1"}, ttl_seconds=60)
    frozen_clock.advance(60)  # expires_at <= now: expired
    assert repo.get("anilist", "q") is None
    assert repo.get_with_meta("anilist", "q") is None
    stale = repo.get_with_meta("anilist", "q", include_expired=True)
    assert stale == (b"last good", {"ETag": "v1"}, FROZEN_AT)
    assert stale.is_stale is True
    assert stale.expires_at == FROZEN_AT + timedelta(seconds=60)
    assert keys(database) == [("anilist", "q")]  # reading stale deletes nothing


def test_include_expired_on_a_fresh_row_is_not_stale(repo: CacheRepository, frozen_clock: FrozenClock) -> None:
    repo.set("b", "s", b"x", ttl_seconds=60)
    frozen_clock.advance(59)
    assert repo.get_with_meta("b", "s", include_expired=True).is_stale is False


def test_include_expired_still_misses_missing_rows(repo: CacheRepository) -> None:
    assert repo.get_with_meta("b", "missing", include_expired=True) is None


def test_stale_pre_v2_row_reads_empty_headers_and_no_fetched_at(
    repo: CacheRepository, frozen_clock: FrozenClock, database: Engine
) -> None:
    repo.set("b", "s", b"old", ttl_seconds=1)
    with database.begin() as connection:
        connection.execute(update(rows).values(response_headers=None, fetched_at=None))
    frozen_clock.advance(10)
    assert repo.get_with_meta("b", "s", include_expired=True) == (b"old", {}, None)


def test_include_expired_is_keyword_only(repo: CacheRepository) -> None:
    with pytest.raises(TypeError):
        repo.get_with_meta("b", "s", True)


def test_allow_stale_is_the_old_name_of_include_expired_and_warns(
    repo: CacheRepository, frozen_clock: FrozenClock, flavour: str
) -> None:
    repo.set("b", "s", b"old", ttl_seconds=1)
    frozen_clock.advance(10)
    with pytest.warns(DeprecationWarning, match="allow_stale= is deprecated.*include_expired=") as warned:
        stale = repo.get_with_meta("b", "s", allow_stale=True)
    if flavour == "sync":  # the async one is awaited on the view's loop here: tests/test_async.py checks it
        assert warned[0].filename == __file__  # points at the caller
    assert stale is not None and stale.is_stale
    with pytest.warns(DeprecationWarning):
        assert repo.get_with_meta("b", "s", include_expired=True, allow_stale=False) is None  # the old name wins


def test_cached_response_is_immutable_and_copies_with_its_extras(
    repo: CacheRepository, frozen_clock: FrozenClock
) -> None:
    repo.set("b", "s", b"x", ttl_seconds=5)
    frozen_clock.advance(5)
    stale = repo.get_with_meta("b", "s", include_expired=True)
    with pytest.raises(AttributeError):
        stale.is_stale = False
    for clone in (copy.copy(stale), copy.deepcopy(stale), pickle.loads(pickle.dumps(stale))):  # noqa: S301 - own bytes
        assert clone == stale
        assert (clone.expires_at, clone.is_stale) == (stale.expires_at, True)
    assert "is_stale=True" in repr(stale)


# -- delete and clear ---------------------------------------------------------------------------


def test_delete_removes_one_row_and_reports_whether_it_existed(repo: CacheRepository, database: Engine) -> None:
    repo.set("anilist", "q", b"1", ttl_seconds=60)
    repo.set("anilist", "q ", b"2", ttl_seconds=60)  # keys compare exactly: a different row
    repo.set("jikan", "q", b"3", ttl_seconds=60)
    assert repo.delete("anilist", "q") is True
    assert repo.delete("anilist", "q") is False
    assert keys(database) == [("anilist", "q "), ("jikan", "q")]


def test_delete_removes_expired_rows_too(repo: CacheRepository, frozen_clock: FrozenClock, database: Engine) -> None:
    repo.set("b", "s", b"x", ttl_seconds=1)
    frozen_clock.advance(5)
    assert repo.delete("b", "s") is True
    assert keys(database) == []


def test_clear_one_backend_then_all(repo: CacheRepository, frozen_clock: FrozenClock, database: Engine) -> None:
    for backend, count in (("anilist", 3), ("jikan", 2), ("kitsu", 1)):
        for i in range(count):
            repo.set(backend, f"q{i}", b"x", ttl_seconds=1 + i)
    frozen_clock.advance(1)  # some rows expired: clear removes them as well
    assert repo.clear("anilist") == 3
    assert repo.clear("missing") == 0
    assert keys(database) == [("jikan", "q0"), ("jikan", "q1"), ("kitsu", "q0")]
    assert repo.clear() == 3
    assert keys(database) == []
    assert repo.clear() == 0


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda r: r.delete(1, "s"), TypeError),
        (lambda r: r.delete("b", None), TypeError),
        (lambda r: r.delete("b", LONG_KEY), ValueError),
        (lambda r: r.clear(b"b"), TypeError),
        (lambda r: r.clear(LONG_KEY), ValueError),
    ],
)
def test_delete_and_clear_validate_and_change_nothing(repo: CacheRepository, database: Engine, call, error) -> None:
    repo.set("b", "s", b"x", ttl_seconds=60)
    with pytest.raises(error):
        call(repo)
    assert keys(database) == [("b", "s")]


# -- stats --------------------------------------------------------------------------------------


def test_stats_of_an_empty_cache(repo: CacheRepository) -> None:
    assert repo.stats() == CacheStats()
    assert repo.stats().as_dict() == {
        "rows": 0,
        "expired_rows": 0,
        "payload_bytes": 0,
        "oldest_fetched_at": None,
        "newest_fetched_at": None,
        "backends": {},
        "claims_held": 0,
    }


def test_stats_totals_and_per_backend(repo: CacheRepository, frozen_clock: FrozenClock, database: Engine) -> None:
    repo.set("jikan", "a", b"12345", ttl_seconds=10)
    frozen_clock.advance(100)
    repo.set("anilist", "a", b"1", ttl_seconds=10)
    frozen_clock.advance(100)
    repo.set("anilist", "b", b"12", ttl_seconds=1000)
    repo.set("anilist", "pre-v2", b"123", ttl_seconds=1000)
    with database.begin() as connection:  # a row from before v2 has no fetched_at: not oldest nor newest
        connection.execute(update(rows).where(rows.c.signature == "pre-v2").values(fetched_at=None))
    start = FROZEN_AT
    stats = repo.stats()
    assert stats.backends == {
        "anilist": BackendStats(3, 1, 6, start + timedelta(seconds=100), start + timedelta(seconds=200)),
        "jikan": BackendStats(1, 1, 5, start, start),
    }
    assert list(stats.backends) == ["anilist", "jikan"]
    assert (stats.rows, stats.expired_rows, stats.payload_bytes) == (4, 2, 11)
    assert (stats.oldest_fetched_at, stats.newest_fetched_at) == (start, start + timedelta(seconds=200))
    assert stats.oldest_fetched_at.tzinfo is not None
    frozen_clock.advance(1000)
    assert repo.stats().expired_rows == 4


def test_stats_is_frozen_and_json_ready(repo: CacheRepository) -> None:
    repo.set("b", "s", b"xy", ttl_seconds=60)
    stats = repo.stats()
    with pytest.raises(AttributeError):
        stats.rows = 0
    with pytest.raises(TypeError):
        stats.backends["other"] = BackendStats()
    decoded = json.loads(json.dumps(stats.as_dict()))
    assert decoded["backends"]["b"]["payload_bytes"] == 2
    assert decoded["oldest_fetched_at"] == FROZEN_AT.isoformat()


# -- size cap -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("max_bytes", "error"), [("100", TypeError), (True, TypeError), (0, ValueError), (-1, ValueError)]
)
def test_max_bytes_is_validated(make_repository: MakeRepository, max_bytes, error) -> None:
    with pytest.raises(error, match="max_bytes"):
        make_repository(max_bytes=max_bytes)


def test_payload_larger_than_the_cap_is_refused_and_nothing_changes(
    make_repository: MakeRepository, database: Engine
) -> None:
    capped = make_repository(max_bytes=10)
    capped.set("b", "keep", b"x" * 10, ttl_seconds=60)
    with pytest.raises(ValueError, match="max_bytes=10"):
        capped.set("b", "big", b"x" * 11, ttl_seconds=60)
    assert keys(database) == [("b", "keep")]


def test_writes_under_the_cap_evict_nothing(make_repository: MakeRepository, database: Engine) -> None:
    capped = make_repository(max_bytes=100)
    for i in range(10):
        capped.set("b", f"k{i}", b"x" * 10, ttl_seconds=60)
    assert len(keys(database)) == 10
    assert capped.stats().payload_bytes == 100


def test_overwrites_count_the_difference_and_evict_nothing(make_repository: MakeRepository, database: Engine) -> None:
    capped = make_repository(max_bytes=100)
    for i in range(9):
        capped.set("b", f"k{i}", b"x" * 10, ttl_seconds=60)
    for _ in range(50):
        capped.set("b", "hot", b"x" * 10, ttl_seconds=60)
    assert len(keys(database)) == 10


def test_over_the_cap_evicts_expired_rows_first_then_closest_to_expiry(
    make_repository: MakeRepository, frozen_clock: FrozenClock, database: Engine
) -> None:
    capped = make_repository(max_bytes=100)
    # Written in an order unrelated to expiry; "expired" expires first but is written last.
    for name, ttl in (("late", 500), ("soon", 20), ("later", 400), ("sooner", 10), ("mid", 300)):
        capped.set("b", name, b"x" * 10, ttl_seconds=ttl)
    frozen_clock.advance(5)
    for i in range(4):
        capped.set("b", f"fill{i}", b"x" * 10, ttl_seconds=1000)
    capped.set("b", "expired", b"x" * 10, ttl_seconds=0)
    assert capped.stats().payload_bytes == 100  # at the cap, not over it
    capped.set("b", "new", b"x" * 25, ttl_seconds=1000)  # 125 bytes: over, evict down to 90
    # 125 > 100: evict in expiry order until at most 90 remain: expired, sooner, soon, then mid (95 > 90).
    remaining = {signature for _, signature in keys(database)}
    assert remaining == {"late", "later", "fill0", "fill1", "fill2", "fill3", "new"}
    assert capped.stats().payload_bytes == 85


def test_the_row_just_written_is_never_evicted_by_its_own_write(
    make_repository: MakeRepository, database: Engine
) -> None:
    capped = make_repository(max_bytes=100)
    capped.set("b", "old", b"x" * 50, ttl_seconds=1000)
    capped.set("b", "new", b"x" * 95, ttl_seconds=1)  # closest to expiry, but just written
    assert capped.get("b", "new") == b"x" * 95
    assert keys(database) == [("b", "new")]


def test_the_cap_counts_rows_already_in_the_database(make_repository: MakeRepository, database: Engine) -> None:
    uncapped = make_repository()
    for i in range(10):
        uncapped.set("b", f"k{i}", b"x" * 10, ttl_seconds=100 + i)
    capped = make_repository(max_bytes=100)
    capped.set("b", "new", b"x" * 10, ttl_seconds=1000)
    assert len(keys(database)) == 9  # 110 -> evicted the two closest to expiry, down to 90
    assert ("b", "k0") not in keys(database) and ("b", "k1") not in keys(database)


def test_eviction_reads_candidates_in_batches(
    make_repository: MakeRepository, database: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(eviction, "EVICTION_BATCH", 3)
    capped = make_repository(max_bytes=20)
    for i in range(20):
        capped.set("b", f"k{i:02}", b"x", ttl_seconds=100 + i)
    capped.set("b", "big", b"x" * 10, ttl_seconds=1)  # 30 bytes: evict 12 one-byte rows over 4+ batches
    assert keys(database) == [("b", "big")] + [("b", f"k{i:02}") for i in range(12, 20)]


def test_eviction_notices_writes_from_other_repositories(make_repository: MakeRepository, database: Engine) -> None:
    capped = make_repository(max_bytes=100)
    capped.set("b", "mine", b"x" * 50, ttl_seconds=1000)
    other = make_repository()  # no cap: its writes are seen at the capped repository's next count
    for i in range(5):
        other.set("b", f"theirs{i}", b"x" * 10, ttl_seconds=10 + i)
    capped.set("b", "mine2", b"x" * 45, ttl_seconds=1000)  # tracked 95: no count yet, 145 stored
    assert capped.stats().payload_bytes == 145
    capped.set("b", "mine3", b"x" * 10, ttl_seconds=1000)  # tracked 105: the exact count finds 155
    # Evicted in expiry order down to at most 90: theirs (50 bytes), then "mine" (50): 55 left.
    assert {signature for _, signature in keys(database)} == {"mine2", "mine3"}
    assert capped.stats().payload_bytes == 55


def test_a_failed_eviction_raises_keeps_the_write_and_evicts_at_the_next_one(
    make_repository: MakeRepository, database: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    capped = make_repository(max_bytes=100)
    for i in range(10):
        capped.set("b", f"k{i}", b"x" * 10, ttl_seconds=100 + i)

    def broken(*_args):
        raise StoreError("simulated failure")

    with monkeypatch.context() as patch:
        patch.setattr(capped._db, "fetchall", broken)
        with pytest.raises(StoreError, match="simulated"):
            capped.set("b", "new", b"x" * 10, ttl_seconds=1000)
    assert len(keys(database)) == 11  # the write committed; nothing evicted yet
    capped.set("b", "newer", b"x" * 10, ttl_seconds=1000)
    assert capped.stats().payload_bytes == 90
    assert ("b", "new") in keys(database) and ("b", "k2") not in keys(database)


# -- vacuum -------------------------------------------------------------------------------------


def _wait_for_transactions_older_than_now(url: str, deadline_seconds: float = 60.0) -> None:
    """Until every transaction running anywhere on the PostgreSQL server now has ended.

    VACUUM FULL keeps the deleted rows that a transaction older than the delete
    might still see: one with an id, and one without an id that holds a snapshot
    taken before it (``backend_xmin``), in any session of the server: other tests'
    sessions (their migrations, their lock tests, their reads) would otherwise
    decide how much this one reclaims. A condition, polled, with a deadline.
    """
    engine = plain_engine(url)
    try:
        with engine.connect() as connection:
            now = connection.exec_driver_sql("SELECT pg_current_xact_id()::text::bigint").scalar_one()
            connection.rollback()
            # pg_stat_activity shows 32-bit xids: compare within the current epoch.
            older = text(
                "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
                " AND (backend_xid::text::bigint <= :now OR backend_xmin::text::bigint <= :now)"
            )
            give_up = time.monotonic() + deadline_seconds
            while True:
                running = connection.execute(older, {"now": now % 2**32}).scalar_one()
                connection.rollback()
                if running == 0:
                    return
                assert time.monotonic() < give_up, f"a transaction older than {now} ran for {deadline_seconds} s"
                time.sleep(0.01)
    finally:
        engine.dispose()


def test_vacuum_gives_space_back_and_keeps_rows(repo: CacheRepository, engine_url: str) -> None:
    for i in range(40):
        repo.set("b", f"k{i}", random.Random(i).randbytes(100_000), ttl_seconds=60)  # incompressible
    repo.clear("b")
    repo.set("b", "kept", b"payload", ttl_seconds=60)
    if engine_url.startswith("postgresql"):
        _wait_for_transactions_older_than_now(engine_url)
    reclaimed = repo.vacuum()
    if engine_url.startswith("mysql"):
        assert reclaimed is None  # OPTIMIZE TABLE ran; MariaDB gives no reliable size
    else:
        assert reclaimed > 2_000_000
        assert repo.vacuum() < 100_000  # nothing left to reclaim
    assert repo.get("b", "kept") == b"payload"
    assert repo.stats().rows == 1


def test_vacuum_on_the_in_memory_fixture(cache_repository: CacheRepository) -> None:
    cache_repository.set("b", "big", b"x" * 500_000, ttl_seconds=60)
    cache_repository.delete("b", "big")
    assert cache_repository.vacuum() > 400_000
