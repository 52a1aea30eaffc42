"""``animedex_store.sqlite``: the drop-in for animedex's raw-``sqlite3`` cache module
(README, "Switching from the seed module").

The tests are written the way animedex's own suite uses the seed: the module's
``_utcnow`` and ``_user_cache_dir`` monkeypatched, rows read directly through
``cache._lock`` / ``cache._conn`` with ``?`` placeholders.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from legacy import NOW, SeedState, open_like_seed, write_seed_file

import animedex_store.sqlite as cache_module
from animedex_store.errors import StoreError
from animedex_store.sqlite import SqliteCache, default_cache_path, default_ttl_seconds, selftest

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
SEED_PUBLIC_NAMES = ("SqliteCache", "default_ttl_seconds", "default_cache_path", "selftest")
SEED_METHODS = ("set", "set_with_meta", "get", "get_with_meta", "purge_expired", "close", "__enter__", "__exit__")
ROW_SQL = "SELECT payload, expires_at, response_headers, fetched_at FROM cache_rows WHERE backend = ? AND signature = ?"


class Clock:
    """A fake ``_utcnow`` as animedex's tests write it: a settable aware datetime."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(cache_module, "_utcnow", fake)
    return fake


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "user-cache"
    monkeypatch.setattr(cache_module, "_user_cache_dir", lambda: str(directory))
    return directory


@pytest.fixture
def cache(tmp_path: Path, clock: Clock) -> Iterator[SqliteCache]:
    with SqliteCache(tmp_path / "cache.sqlite") as opened:
        yield opened


def read_row(cache: SqliteCache, backend: str, signature: str) -> tuple | None:
    """The row as animedex's tests read it: straight through the private connection."""
    with cache._lock:
        return cache._conn.execute(ROW_SQL, (backend, signature)).fetchone()


# -- the seed's surface ------------------------------------------------------------
def test_same_public_names_as_the_seed() -> None:
    assert set(SEED_PUBLIC_NAMES) <= set(cache_module.__all__)
    for name in (*SEED_PUBLIC_NAMES, "_utcnow", "_user_cache_dir"):
        assert callable(getattr(cache_module, name)), name
    for method in SEED_METHODS:
        assert callable(getattr(SqliteCache, method)), method
    assert list(inspect.signature(SqliteCache).parameters) == ["path"]
    assert inspect.signature(SqliteCache).parameters["path"].default is None


def test_default_ttls_are_the_seeds() -> None:
    assert default_ttl_seconds("metadata") == 72 * 3600
    assert default_ttl_seconds("list") == 24 * 3600
    assert default_ttl_seconds("schedule") == default_ttl_seconds("trending") == 3600
    assert default_ttl_seconds("offline_dump") == 30 * 86400
    assert default_ttl_seconds("something-else") == 72 * 3600


def test_the_real_utcnow_is_aware_utc() -> None:
    now = cache_module._utcnow()
    assert now.utcoffset() == timedelta(0)


# -- _user_cache_dir / default location --------------------------------------------
def test_user_cache_dir_controls_the_default_path(cache_dir: Path, clock: Clock) -> None:
    assert default_cache_path() == cache_dir / "cache.sqlite"
    with SqliteCache() as cache:
        assert cache.path == cache_dir / "cache.sqlite"
        cache.set("anilist", "k", b"v", ttl_seconds=60)
    assert (cache_dir / "cache.sqlite").is_file()
    with SqliteCache(cache_dir / "cache.sqlite") as again:
        assert again.get("anilist", "k") == b"v"


def test_the_environment_variable_does_not_redirect_the_drop_in(
    cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: Clock
) -> None:
    """``SqliteCache()`` keeps the seed's meaning: the file under ``_user_cache_dir()``."""
    monkeypatch.setenv("ANIMEDEX_STORE_URL", str(tmp_path / "elsewhere.sqlite"))
    with SqliteCache() as cache:
        assert cache.path == cache_dir / "cache.sqlite"
    assert not (tmp_path / "elsewhere.sqlite").exists()


def test_path_given_as_str_and_parents_created(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "a" / "b" / "cache.sqlite"
    with SqliteCache(str(path)) as cache:
        assert cache.path == path
        cache.set("anilist", "k", b"v", ttl_seconds=60)
    assert path.is_file()


# -- selftest -----------------------------------------------------------------------
def test_selftest_twice_returns_true_and_leaves_no_file(cache_dir: Path) -> None:
    assert selftest() is True
    assert selftest() is True
    assert list(cache_dir.iterdir()) == []


def test_selftest_works_on_a_patched_frozen_clock(cache_dir: Path, clock: Clock) -> None:
    assert selftest() is True
    assert list(cache_dir.iterdir()) == []


# -- _lock and _conn -------------------------------------------------------------
def test_lock_is_a_lock(cache: SqliteCache) -> None:
    assert isinstance(cache._lock, type(threading.Lock()))
    with cache._lock:
        assert cache._lock.locked()
    assert not cache._lock.locked()


def test_conn_reads_rows_written_through_the_api(cache: SqliteCache, clock: Clock) -> None:
    cache.set_with_meta("anilist", "media:1", b"\x00payload", response_headers={"ETag": '"1"'}, ttl_seconds=60)
    epoch = int(T0.timestamp())
    assert read_row(cache, "anilist", "media:1") == (b"\x00payload", epoch + 60, b'{"ETag": "\\"1\\""}', epoch)
    assert read_row(cache, "anilist", "media:2") is None


def test_writes_through_conn_are_seen_by_the_api(cache: SqliteCache, clock: Clock) -> None:
    """Autocommit: no transaction left open on ``_conn`` to block or hide writes."""
    with cache._lock:
        cache._conn.execute(
            "INSERT INTO cache_rows (backend, signature, payload, expires_at) VALUES (?, ?, ?, ?)",
            ("jikan", "old", b"v1 row", int(T0.timestamp()) + 10),
        )
        assert not cache._conn.in_transaction
    assert cache.get_with_meta("jikan", "old") == (b"v1 row", {}, None)


# -- the seed's behaviour --------------------------------------------------------
def test_round_trip(cache: SqliteCache) -> None:
    cache.set("anilist", "media:1", b'{"id": 1}', ttl_seconds=60)
    assert cache.get("anilist", "media:1") == b'{"id": 1}'
    assert cache.get("anilist", "media:2") is None
    assert cache.get("jikan", "media:1") is None


def test_expiry_at_exactly_expires_at(cache: SqliteCache, clock: Clock) -> None:
    cache.set("anilist", "k", b"v", ttl_seconds=60)
    clock.tick(59)
    assert cache.get("anilist", "k") == b"v"
    clock.tick(1)  # now == expires_at
    assert cache.get("anilist", "k") is None
    assert cache.get_with_meta("anilist", "k") is None


def test_ttl_zero_is_expired_at_once(cache: SqliteCache) -> None:
    cache.set("anilist", "k", b"v", ttl_seconds=0)
    assert cache.get("anilist", "k") is None


def test_a_naive_utcnow_is_taken_as_utc(cache: SqliteCache, clock: Clock) -> None:
    clock.now = datetime(2026, 1, 1)
    cache.set("anilist", "k", b"v", ttl_seconds=60)
    assert read_row(cache, "anilist", "k")[1] == int(T0.timestamp()) + 60


def test_get_is_a_pure_read(cache: SqliteCache, clock: Clock) -> None:
    cache.set("anilist", "k", b"v", ttl_seconds=10)
    clock.tick(3600)
    assert cache.get("anilist", "k") is None
    assert read_row(cache, "anilist", "k")[0] == b"v"  # still stored until purged


def test_overwrite_replaces_payload_expiry_and_meta(cache: SqliteCache, clock: Clock) -> None:
    cache.set_with_meta("anilist", "k", b"old", response_headers={"ETag": "a"}, ttl_seconds=10)
    clock.tick(5)
    cache.set("anilist", "k", b"new", ttl_seconds=100)
    assert cache.get_with_meta("anilist", "k") == (b"new", {}, T0 + timedelta(seconds=5))
    clock.tick(50)
    assert cache.get("anilist", "k") == b"new"
    with cache._lock:
        assert cache._conn.execute("SELECT COUNT(*) FROM cache_rows").fetchone() == (1,)


def test_purge_expired_returns_the_count(cache: SqliteCache, clock: Clock) -> None:
    for index in range(5):
        cache.set("anilist", f"short:{index}", b"x", ttl_seconds=10)
    for index in range(3):
        cache.set("anilist", f"long:{index}", b"x", ttl_seconds=1000)
    assert cache.purge_expired() == 0
    clock.tick(10)
    assert cache.purge_expired() == 5
    assert cache.purge_expired() == 0
    assert [cache.get("anilist", f"long:{index}") for index in range(3)] == [b"x"] * 3


def test_meta_round_trip_with_non_ascii_headers(cache: SqliteCache, clock: Clock) -> None:
    headers = {"Content-Type": "application/json; charset=utf-8", "X-Title": "進撃の巨人", "Link": "<é>; rel=next"}
    cache.set_with_meta("anilist", "media:16498", b"{}", response_headers=headers, ttl_seconds=60)
    assert cache.get_with_meta("anilist", "media:16498") == (b"{}", headers, T0)
    # Stored as the seed stored it: UTF-8 JSON, not \\u escapes.
    assert "進撃の巨人".encode() in read_row(cache, "anilist", "media:16498")[2]


def test_set_gives_empty_headers_and_now(cache: SqliteCache, clock: Clock) -> None:
    clock.tick(7)
    cache.set("anilist", "k", b"v", ttl_seconds=60)
    payload, headers, fetched_at = cache.get_with_meta("anilist", "k")
    assert (payload, headers, fetched_at) == (b"v", {}, T0 + timedelta(seconds=7))
    assert fetched_at.tzinfo is not None


def test_corrupt_headers_blob_reads_as_empty(cache: SqliteCache) -> None:
    cache.set_with_meta("anilist", "k", b"v", response_headers={"a": "b"}, ttl_seconds=60)
    with cache._lock:
        cache._conn.execute("UPDATE cache_rows SET response_headers = ? WHERE signature = ?", (b"\xff{not json", "k"))
    assert cache.get_with_meta("anilist", "k") == (b"v", {}, T0)


def test_context_manager_closes(tmp_path: Path, clock: Clock) -> None:
    with SqliteCache(tmp_path / "cache.sqlite") as cache:
        assert isinstance(cache, SqliteCache)
        cache.set("anilist", "k", b"v", ttl_seconds=60)
    with pytest.raises(StoreError, match="closed"):
        cache.get("anilist", "k")
    cache.close()  # closing twice is harmless


def test_two_caches_on_one_file_see_each_others_writes(tmp_path: Path, clock: Clock) -> None:
    with SqliteCache(tmp_path / "cache.sqlite") as first, SqliteCache(tmp_path / "cache.sqlite") as second:
        first.set("anilist", "k", b"from first", ttl_seconds=60)
        assert second.get("anilist", "k") == b"from first"
        second.set("anilist", "k", b"from second", ttl_seconds=60)
        assert first.get("anilist", "k") == b"from second"


def test_threads_share_one_cache(cache: SqliteCache) -> None:
    """The seed's reason for ``check_same_thread=False``: backend retry helpers run on worker threads."""

    def work(worker: int) -> None:
        for index in range(50):
            cache.set("anilist", f"{worker}:{index}", f"{worker}/{index}".encode(), ttl_seconds=60)
            assert cache.get("anilist", f"{worker}:{index}") == f"{worker}/{index}".encode()

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(work, range(8), timeout=60))  # re-raises a worker's failure
    with cache._lock:
        assert cache._conn.execute("SELECT COUNT(*) FROM cache_rows").fetchone() == (400,)


# -- files the seed wrote ----------------------------------------------------------
@pytest.mark.parametrize("state", [SeedState.V1, SeedState.V2])
def test_a_seed_written_file_opens_with_rows_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, state: SeedState
) -> None:
    path = tmp_path / "cache.sqlite"
    stored = write_seed_file(path, state, rows=120)
    monkeypatch.setattr(cache_module, "_utcnow", lambda: datetime.fromtimestamp(NOW, timezone.utc))
    with SqliteCache(path) as cache:
        for row in stored:
            found = cache.get_with_meta(row.backend, row.signature)
            if row.expired():
                assert found is None
                assert read_row(cache, row.backend, row.signature)[:2] == (row.payload, row.expires_at)
            else:
                fetched = None if row.fetched_at is None else datetime.fromtimestamp(row.fetched_at, timezone.utc)
                assert found == (row.payload, row.headers(), fetched)
        with cache._lock:
            assert cache._conn.execute("SELECT COUNT(*) FROM cache_rows").fetchone() == (len(stored),)


def test_the_seed_can_still_open_a_file_the_drop_in_wrote(tmp_path: Path, clock: Clock) -> None:
    """An older animedex opening the same cache file must keep working."""
    path = tmp_path / "cache.sqlite"
    with SqliteCache(path) as cache:
        cache.set_with_meta("anilist", "k", b"v", response_headers={"ETag": "x"}, ttl_seconds=60)
    conn = open_like_seed(path)
    try:
        assert conn.execute("SELECT value FROM cache_meta WHERE key = 'schema_version'").fetchone() == ("2",)
        conn.execute(
            "INSERT OR REPLACE INTO cache_rows (backend, signature, payload, expires_at, response_headers, fetched_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            ("jikan", "s", b"seed", int(T0.timestamp()) + 60, b"{}", int(T0.timestamp())),
        )
        conn.commit()
    finally:
        conn.close()
    with SqliteCache(path) as cache:
        assert cache.get("jikan", "s") == b"seed"
        assert cache.get_with_meta("anilist", "k") == (b"v", {"ETag": "x"}, T0)
