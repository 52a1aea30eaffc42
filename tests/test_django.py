"""``animedex_store.integrations.django.StoreCache``: what it does beyond Django's own tests
(:mod:`test_django_contract`), on every engine: culling without a count per write, expired rows
removed, ``add``/``incr``/``get_or_set`` across processes, the native async methods, planted rows,
namespaces, configuration, keys."""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import pickle
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.cache.backends.base import BaseCache  # noqa: I001 - the optional library, after ours
from django.core.cache.backends.locmem import LocMemCache
from django.core.exceptions import ImproperlyConfigured
from reliability import context, run_children
from rowdump import dump_rows, plain_engine

from animedex_store import AsyncCacheRepository, CacheRepository
from animedex_store.core.compiled import Compiled
from animedex_store.integrations.django import PURGE_EVERY_WRITES, StoreCache, close_repositories, signature
from animedex_store.testing import FrozenClock

BACKEND = "animedex_store.integrations.django.StoreCache"
LOGGER = "animedex_store.integrations.django"


@pytest.fixture(autouse=True)
def _close_repositories() -> Iterator[None]:
    """Every test's caches share repositories per LOCATION (as Django's instances do): closed after it."""
    yield
    close_repositories()


def cache_on(location: str, **options: Any) -> StoreCache:
    """A StoreCache as Django makes it from ``CACHES``: ``(LOCATION, the rest of the entry)``."""
    return StoreCache(location, {"OPTIONS": options})


class StatementLog:
    """A repository's connections, recording the SQL of every statement run through them (every other
    attribute is the connections' own)."""

    def __init__(self, connections: Any) -> None:
        self.inner = connections
        self.sql: list[str] = []

    def counts(self) -> int:
        """How many ``SELECT count(*)`` statements ran."""
        return sum(1 for sql in self.sql if "count(" in sql.lower())

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if not inspect.iscoroutinefunction(attribute):
            return attribute

        async def logged(statement: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(statement, Compiled):
                self.sql.append(statement.sql)
            return await attribute(statement, *args, **kwargs)

        return logged


def logged_repository(target: str, **options: Any) -> tuple[CacheRepository, StatementLog]:
    repository = CacheRepository(target, **options)
    log = repository._ops.db = StatementLog(repository._ops.db)
    return repository, log


# -- culling ------------------------------------------------------------------------------------


def test_culling_at_100000_entries_counts_rarely(engine_url: str) -> None:
    """Writes to a namespace of 100,000 entries, ``MAX_ENTRIES`` at 100,000: it culls a third when it
    reaches it, as LocMemCache does, having counted the rows twice (``DatabaseCache``: once a write)."""
    repository, log = logged_repository(engine_url)
    with repository:
        cache = StoreCache("", {"OPTIONS": {"MAX_ENTRIES": 100_000}}, repository=repository)
        for start in range(0, 99_990, 1_000):
            cache.set_many({f"bulk{i}": i for i in range(start, min(start + 1_000, 99_990))}, 3_600)
        for i in range(20):
            cache.set(f"single{i}", i, 7_200)  # the 11th reaches 100,000
        assert log.counts() == 2  # the first write's, and the one at 100,000
        # Expired rows and the rows closest to expiry went first: the later, longer-lived ones stay.
        assert all(cache.has_key(f"single{i}") for i in range(20))
        statements = len(log.sql)
        for i in range(1_000):
            cache.set(f"more{i}", i, 7_200)
        assert log.counts() == 2  # the room left after the cull is far from used up
        assert len(log.sql) - statements == 1_000 + 1  # one statement a write, and a purge
        assert repository.count("django", include_expired=True) == 100_000 - 100_000 // 3 + 10 + 1_000


@pytest.mark.parametrize("frequency", [3, 0, 2, 1])
@pytest.mark.parametrize("max_entries", [30, 7])
def test_culling_reaching_max_entries_as_locmem(engine_url: str, frequency: int, max_entries: int) -> None:
    """Django's own culling test (MAX_ENTRIES 30, CULL_FREQUENCY 3 and 0) and others: as many entries are
    left as Django's LocMemCache leaves."""
    options = {"MAX_ENTRIES": max_entries, "CULL_FREQUENCY": frequency}
    caches = [cache_on(engine_url, **options), LocMemCache(f"cull-{uuid.uuid4()}", {"OPTIONS": options})]
    for cache in caches:
        for i in range(1, 50):
            cache.set(f"cull{i}", "value", 1_000)
    ours, locmem = (sum(cache.has_key(f"cull{i}") for i in range(1, 50)) for cache in caches)
    assert ours == locmem


def test_culling_removes_expired_rows_before_live_ones(engine_url: str, frozen_clock: FrozenClock) -> None:
    with CacheRepository(engine_url, clock=frozen_clock) as repository:
        cache = StoreCache("", {"OPTIONS": {"MAX_ENTRIES": 10}}, repository=repository)
        for i in range(5):
            cache.set(f"short{i}", i, 10)
        for i in range(5):
            cache.set(f"long{i}", i, 1_000)
        frozen_clock.advance(10)
        cache.set("new", "x", 1_000)  # reaches 10: the 5 expired rows are enough
        assert [cache.has_key(f"long{i}") for i in range(5)] == [True] * 5
        assert repository.count("django", include_expired=True) == 6


def test_expired_rows_are_removed_below_max_entries(engine_url: str, frozen_clock: FrozenClock) -> None:
    """``DatabaseCache`` leaves expired rows below MAX_ENTRIES for ever; here every PURGE_EVERY_WRITES
    writes of a process delete its namespace's expired ones (and only its namespace's)."""
    with CacheRepository(engine_url, clock=frozen_clock) as repository:
        cache = StoreCache("", {"OPTIONS": {"MAX_ENTRIES": 1_000_000}}, repository=repository)
        repository.set("animedex", "old", b"x", ttl_seconds=1)
        cache.set_many({f"old{i}": i for i in range(50)}, 5)
        frozen_clock.advance(5)
        for i in range(PURGE_EVERY_WRITES):
            cache.set(f"live{i}", i, 60)
        assert repository.count("django", expired_only=True) == 0
        assert repository.count("animedex", expired_only=True) == 1


def test_each_namespace_is_culled_and_cleared_alone(engine_url: str) -> None:
    small = cache_on(engine_url, MAX_ENTRIES=5, CULL_FREQUENCY=0, namespace="small")
    other = cache_on(engine_url, namespace="other")
    other.set_many({f"k{i}": i for i in range(20)})
    for i in range(6):
        small.set(f"k{i}", i)
    assert small.get_many([f"k{i}" for i in range(6)]) == {"k5": 5}  # emptied on reaching 5
    assert len(other.get_many([f"k{i}" for i in range(20)])) == 20
    small.clear()
    assert len(other.get_many([f"k{i}" for i in range(20)])) == 20
    other.clear()
    assert other.get("k1") is None


# -- across processes ---------------------------------------------------------------------------

RACERS = 4
ROUNDS = 25


def _race(location: str, kind: str, barrier: Any, results: Any) -> None:
    cache = cache_on(location)
    barrier.wait(60)
    if kind == "add":
        results.put([cache.add(f"k{i}", os.getpid()) for i in range(ROUNDS)])
    else:
        results.put([cache.incr("counter") for _ in range(ROUNDS)])
    close_repositories()


@pytest.mark.parametrize("kind", ["add", "incr"])
def test_processes_racing_add_and_incr(engine_url: str, kind: str) -> None:
    """Processes adding the same keys: each is stored by one of them, whose value stays. Processes
    incrementing one counter at once: every increment counts, and each saw a different value."""
    cache = cache_on(engine_url)
    cache.set("counter", 0, None)
    close_repositories()  # nothing open across the fork
    barrier = context().Barrier(RACERS)
    outcomes = run_children(_race, [(engine_url, kind, barrier)] * RACERS)
    if kind == "add":
        assert [sum(outcome[i] for outcome in outcomes) for i in range(ROUNDS)] == [1] * ROUNDS
    else:
        assert sorted(value for outcome in outcomes for value in outcome) == list(range(1, RACERS * ROUNDS + 1))
        assert cache.get("counter") == RACERS * ROUNDS


def _computed_once(location: str, log: str, barrier: Any, results: Any) -> None:
    def compute() -> dict[str, int]:
        with open(log, "a", encoding="utf-8") as out:
            out.write(f"{os.getpid()}\n")
        time.sleep(0.5)  # a slow computation: the other callers arrive while it runs
        return {"computed by": os.getpid()}

    cache = cache_on(location)
    barrier.wait(60)
    results.put(cache.get_or_set("expensive", compute, 60))
    close_repositories()


def test_get_or_set_from_processes_calls_the_function_once(engine_url: str, tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    cache_on(engine_url).delete("expensive")  # migrated before the children start
    close_repositories()
    barrier = context().Barrier(RACERS)
    outcomes = run_children(_computed_once, [(engine_url, str(log), barrier)] * RACERS)
    calls = log.read_text(encoding="utf-8").split()
    assert len(calls) == 1
    assert outcomes == [{"computed by": int(calls[0])}] * RACERS


# -- async --------------------------------------------------------------------------------------


@pytest.fixture
def no_thread_hops(monkeypatch: pytest.MonkeyPatch) -> None:
    """BaseCache's async defaults hop to a thread through sync_to_async: make any such hop fail."""
    from django.core.cache.backends import base

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("an async method went through sync_to_async")

    monkeypatch.setattr(base, "sync_to_async", refuse)


def test_every_async_method_of_base_cache_is_native_or_built_on_native_ones() -> None:
    """StoreCache has its own of every async method of BaseCache but those BaseCache builds on the
    others (adecr, aincr_version, adecr_version; Django 6.1's hop to a thread only where the sync
    method is overridden, and those are not): test_the_async_methods calls each, hops refused."""
    async_methods = {name for name, member in vars(BaseCache).items() if inspect.iscoroutinefunction(member)}
    assert len(async_methods) >= 16  # the check can fail: BaseCache has them
    assert async_methods - set(vars(StoreCache)) <= {"adecr", "aincr_version", "adecr_version"}
    assert not {"decr", "incr_version", "decr_version"} & set(vars(StoreCache))


@pytest.mark.asyncio
@pytest.mark.usefixtures("no_thread_hops")
async def test_the_async_methods(engine_url: str) -> None:
    cache = cache_on(engine_url)
    try:
        await cache.aset("a", {"x": 1})
        assert await cache.aget("a") == {"x": 1}
        assert await cache.aget("missing", "default") == "default"
        assert await cache.aadd("a", 2) is False
        assert await cache.aadd("n", 41) is True
        assert await cache.aincr("n") == 42
        assert await cache.adecr("n", 2) == 40
        with pytest.raises(ValueError, match="not found"):
            await cache.aincr("missing")
        assert await cache.aset_many({"b": 2, "c": 3}) == []
        assert await cache.aget_many(["a", "b", "c", "d"]) == {"a": {"x": 1}, "b": 2, "c": 3}
        assert await cache.ahas_key("b") is True
        assert await cache.atouch("b", 100) is True
        assert await cache.atouch("missing") is False
        assert await cache.aget_or_set("d", lambda: "computed") == "computed"
        assert await cache.aget_or_set("d", lambda: "again") == "computed"
        assert await cache.aget_or_set("e", "plain") == "plain"
        assert await cache.aincr_version("b") == 2
        assert await cache.aget("b", version=2) == 2
        assert await cache.adecr_version("b", version=2) == 1
        assert await cache.adelete("a") is True
        await cache.adelete_many(["b", "c"])
        assert await cache.aget_many(["a", "b", "c"]) == {}
        await cache.aclear()
        assert await cache.aget("d") is None
        await cache.aclose()
        assert cache.get("d") is None and await cache.aget("d") is None  # the sync side sees the same rows
    finally:
        await cache._store.awaiting().close()  # type: ignore[attr-defined]  # this loop's connections


@pytest.mark.asyncio
async def test_async_get_or_set_shares_one_call_among_coroutines(engine_url: str) -> None:
    cache = cache_on(engine_url)
    calls: list[int] = []

    def compute() -> str:
        calls.append(1)
        return "value"

    try:
        results = await asyncio.gather(*(cache.aget_or_set("shared", compute, 60) for _ in range(10)))
        assert results == ["value"] * 10
        assert calls == [1]
    finally:
        await cache._store.awaiting().close()  # type: ignore[attr-defined]


@pytest.mark.asyncio
async def test_async_methods_on_a_borrowed_repository(engine_url: str) -> None:
    async with AsyncCacheRepository(engine_url) as repository:
        cache = StoreCache("", {}, async_repository=repository)
        await cache.aset("k", "v")
        assert await repository.get("django", ":1:k") == pickle.dumps("v", pickle.HIGHEST_PROTOCOL)
        with pytest.raises(TypeError, match="pass repository= too"):
            cache.get("k")


# -- planted and damaged rows -------------------------------------------------------------------

PLANTED = {
    "not a pickle": b"hello, not a pickle",
    "a damaged pickle": pickle.dumps({"a": list(range(100))}, pickle.HIGHEST_PROTOCOL)[:40],
    "empty": b"",
}


def _warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The records of warnings and worse (opening a database may log alembic's lines at INFO)."""
    return [record for record in caplog.records if record.levelno >= logging.WARNING]


@pytest.mark.parametrize("planted", sorted(PLANTED))
def test_planted_rows_read_as_a_miss_and_are_logged(
    engine_url: str, planted: str, caplog: pytest.LogCaptureFixture
) -> None:
    cache = cache_on(engine_url)
    with CacheRepository(engine_url) as repository:
        repository.set_many("django", {":1:bad": PLANTED[planted], ":1:n": PLANTED[planted]}, ttl_seconds=60)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert cache.get("bad", "default") == "default"
        assert cache.get_many(["bad", "other"]) == {}
        with pytest.raises(ValueError, match="not found"):
            cache.incr("n")
        assert cache.get_or_set("bad", lambda: "recomputed") == "recomputed"
    assert cache.get("bad") == "recomputed"  # replaced
    warnings = _warnings(caplog)
    assert [record.name for record in warnings] == [LOGGER] * 4
    assert all("unreadable row" in record.getMessage() and "':1:bad'" in record.getMessage() for record in warnings[:2])


def test_planted_rows_read_as_a_miss_from_the_async_methods(engine_url: str, caplog: pytest.LogCaptureFixture) -> None:
    cache = cache_on(engine_url)
    cache.set("bad", "good")
    with CacheRepository(engine_url) as repository:
        repository.set("django", ":1:bad", b"\x80\x05garbage", ttl_seconds=60)

    async def read() -> Any:
        try:
            return await cache.aget("bad", "default"), await cache.aget_many(["bad"])
        finally:
            await cache._store.awaiting().close()  # type: ignore[attr-defined]

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert asyncio.run(read()) == ("default", {})
    assert [record.name for record in _warnings(caplog)] == [LOGGER] * 2


# -- semantics Django's tests leave open --------------------------------------------------------


def test_incr_keeps_the_expiry_and_is_refused_for_a_value_without_plus(
    engine_url: str, frozen_clock: FrozenClock
) -> None:
    with CacheRepository(engine_url, clock=frozen_clock) as repository:
        cache = StoreCache("", {}, repository=repository)
        cache.set("n", 1, 10)
        frozen_clock.advance(9)
        assert cache.incr("n", 10) == 11
        frozen_clock.advance(1)
        assert cache.get("n") is None  # expired when set() said: incr did not renew it
        cache.set("s", "text")
        with pytest.raises(TypeError):
            cache.incr("s")
        cache.set("f", 1.5)
        assert cache.incr("f") == 2.5


def test_timeouts_are_whole_seconds_rounded_up(engine_url: str, frozen_clock: FrozenClock) -> None:
    frozen_clock.advance(0.25)
    with CacheRepository(engine_url, clock=frozen_clock) as repository:
        cache = StoreCache("", {"TIMEOUT": 60}, repository=repository)
        cache.set("default", 1)
        cache.set("float", 1, 0.5)
        cache.set("forever", 1, None)
        cache.set("zero", 1, 0)
        cache.set("negative", 1, -5)
        stored = {row[1]: row[3] for row in dump_rows(plain_engine(engine_url))}
        now = frozen_clock.timestamp()  # whole seconds: a quarter of a second before the clock
        # Never early: at least the timeout from the clock's moment.
        assert stored[":1:default"] == now + 61 and stored[":1:float"] == now + 1
        assert stored[":1:forever"] > now + 10**12
        assert stored[":1:zero"] == stored[":1:negative"] == now
        assert cache.get_many(["default", "float", "forever", "zero", "negative"]) == {
            "default": 1,
            "float": 1,
            "forever": 1,
        }


def test_keys_too_long_or_unfit_for_a_row_are_hashed(engine_url: str) -> None:
    cache = cache_on(engine_url)
    keys = ["k" * 300, "nul\x00inside", "surrogate\udc80", "sha256:looks-hashed", "清 with spaces"]
    with pytest.warns(Warning):  # CacheKeyWarning, as every Django backend warns for memcached's sake
        for key in keys:
            cache.set(key, key)
    with pytest.warns(Warning):
        assert cache.get_many(keys) == {key: key for key in keys}
    assert signature(":1:" + "k" * 300).startswith("sha256:") and len(signature("x" * 300)) == 71
    assert signature(":1:清 with spaces") == ":1:清 with spaces"
    assert signature("sha256:x") != "sha256:x"


def test_caches_on_one_location_share_one_repository_and_survive_close(engine_url: str) -> None:
    """Django makes a StoreCache per thread and alias, and calls close() after every request: they
    share one repository, which close() leaves open; close_repositories() closes it, and the next
    call opens it again."""
    first, second = cache_on(engine_url), cache_on(engine_url, namespace="other")
    first.set("k", 1)
    assert first._store is second._store
    first.close()
    assert first.get("k") == 1
    close_repositories()
    assert first.get("k") == 1 and second.get("k") is None


def test_an_empty_location_is_the_default_cache_file(cache_dir: Path) -> None:
    cache = cache_on("")
    cache.set("k", "v")
    assert (cache_dir / "cache.sqlite").is_file()
    assert "the default cache" not in repr(cache) and str(cache_dir) in repr(cache)


def test_repr_names_django_and_masks_a_password() -> None:
    cache = cache_on("postgresql+psycopg://app:secret@db.invalid/cache", namespace="sessions")
    assert (
        repr(cache)
        == "<Django cache StoreCache on postgresql+psycopg://app:***@db.invalid/cache, namespace 'sessions'>"
    )


@pytest.mark.parametrize(
    ("params", "repository", "error"),
    [
        ({"OPTIONS": {"MAX_ENTRY": 10}}, False, ImproperlyConfigured),
        ({"OPTIONS": {"namespace": ""}}, False, ValueError),
        ({"OPTIONS": {"namespace": 5}}, False, TypeError),
        ({"OPTIONS": {"compression": "lzma"}}, False, ValueError),
        ({"OPTIONS": {"max_connections": 0}}, False, ValueError),
        ({"OPTIONS": {"compression": "zlib"}}, True, ImproperlyConfigured),
    ],
)
def test_bad_configuration_is_refused_when_the_cache_is_made(
    tmp_path: Path, params: dict[str, Any], repository: bool, error: type[Exception]
) -> None:
    with CacheRepository(tmp_path / "c.sqlite") as borrowed, pytest.raises(error):
        StoreCache("", params, repository=borrowed if repository else None)


def test_a_borrowed_repository_is_never_closed(tmp_path: Path) -> None:
    with CacheRepository(tmp_path / "c.sqlite") as repository:
        cache = StoreCache("", {}, repository=repository)
        cache.set("k", 1)
        cache.close()
        close_repositories()
        assert cache.get("k") == 1
        with pytest.raises(TypeError, match="pass async_repository= too"):
            asyncio.run(cache.aget("k"))


def test_values_are_pickles_under_the_django_namespace(engine_url: str) -> None:
    cache = cache_on(engine_url, compression="zlib")
    cache.set("k", {"v": 1}, version=3)
    with CacheRepository(engine_url) as repository:
        assert pickle.loads(repository.get("django", ":3:k")) == {"v": 1}  # noqa: S301 - ours
