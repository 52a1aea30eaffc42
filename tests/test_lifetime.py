"""Nothing leaked: a failed open closes what it opened, a repository nobody references gives its server
sessions back at once (no reference cycle keeps it, its finalizer closes what is left, without a
loop where the loop is gone), and held connections close once idle. Sessions are counted from the
server's side (:mod:`sessions`); the garbage collector is off where it would hide a leak."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from at_head import build_at_head
from conftest import SERVER_URLS
from rowdump import plain_engine
from sessions import sessions, sessions_settle, tagged
from sqlalchemy import text

from animedex_store import AsyncCacheRepository, CacheRepository, StoreError
from animedex_store.async_repository import close_outside_loop
from animedex_store.sql import servers

TRIES = 5


@contextlib.contextmanager
def no_garbage_collector() -> Iterator[None]:
    """Only reference counts free objects meanwhile: what a cycle keeps alive stays alive."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@pytest.fixture
def url(server_url: str) -> str:
    """A sandbox whose sessions can be counted, empty."""
    return tagged(server_url)


def _unknown_tables(url: str) -> None:
    engine = plain_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE somebody_elses (id integer)"))
    finally:
        engine.dispose()


@pytest.mark.parametrize("side", ["sync", "async"])
@pytest.mark.parametrize("case", ["behind", "unknown-tables"])
def test_a_failed_open_leaves_no_session(url: str, side: str, case: str) -> None:
    """``migrate=False`` on an empty database, or tables we do not know: each open fails, and closes
    what it opened first."""
    if case == "unknown-tables":
        _unknown_tables(url)
    with no_garbage_collector():
        for _ in range(TRIES):
            with pytest.raises(StoreError):
                if side == "sync":
                    CacheRepository(url, migrate=case != "behind")
                else:
                    asyncio.run(AsyncCacheRepository(url, migrate=case != "behind").open())
        assert sessions_settle(url, 0) == 0


def _use_sync(url: str) -> CacheRepository:
    repository = CacheRepository(url)
    repository.set("b", "k", b"v", ttl_seconds=60)
    repository.get_or_fetch("b", "fetched", lambda: b"f", ttl_seconds=60)
    assert [key.signature for key in repository.keys("b")] == ["fetched", "k"]
    return repository


async def _use_async(url: str) -> AsyncCacheRepository:
    repository = AsyncCacheRepository(url)
    await repository.set("b", "k", b"v", ttl_seconds=60)
    await repository.get_or_fetch("b", "fetched", lambda: b"f", ttl_seconds=60)
    assert [key.signature async for key in repository.keys("b")] == ["fetched", "k"]
    return repository


def test_a_dropped_repository_gives_its_sessions_back_at_once(url: str) -> None:
    build_at_head(url, SERVER_URLS)
    with no_garbage_collector():
        repository = _use_sync(url)
        assert sessions(url) >= 1
        dropped = weakref.ref(repository)
        del repository
        assert dropped() is None  # no cycle keeps it alive
        assert sessions_settle(url, 0) == 0


def test_a_dropped_async_repository_gives_its_sessions_back_while_its_loop_runs(url: str) -> None:
    build_at_head(url, SERVER_URLS)

    async def use() -> int:
        repository = await _use_async(url)
        assert await asyncio.to_thread(sessions, url) >= 1
        dropped = weakref.ref(repository)
        del repository
        assert dropped() is None
        return await asyncio.to_thread(sessions_settle, url, 0)

    with no_garbage_collector():
        assert asyncio.run(use()) == 0


def test_a_dropped_async_repository_gives_its_sessions_back_after_its_loop_closed(url: str) -> None:
    """The loop its connections belong to is closed: they are closed without it (their sockets)."""
    build_at_head(url, SERVER_URLS)
    with no_garbage_collector():
        repository = asyncio.run(_use_async(url))
        assert sessions(url) >= 1
        dropped = weakref.ref(repository)
        del repository
        assert dropped() is None
        assert sessions_settle(url, 0) == 0


def test_closing_outside_the_loop_after_it_closed(url: str) -> None:
    """What the pytest plugin's teardown does: the test's loop is gone, the repository closes anyway."""
    build_at_head(url, SERVER_URLS)
    repository = asyncio.run(_use_async(url))
    assert sessions(url) >= 1
    close_outside_loop(repository)
    assert sessions_settle(url, 0) == 0
    with pytest.raises(StoreError, match="is closed"):
        asyncio.run(repository.get("b", "k"))


def test_connections_of_a_closed_loop_are_dropped_when_the_next_loop_comes(url: str) -> None:
    build_at_head(url, SERVER_URLS)
    repository = AsyncCacheRepository(url)
    for _ in range(TRIES):
        asyncio.run(repository.set("b", "k", b"v", ttl_seconds=60))
    assert sessions_settle(url, 1) == 1  # the last loop's, closed: the next loop's caller drops it
    asyncio.run(repository.close())
    assert sessions_settle(url, 0) == 0


@pytest.fixture
def short_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(servers, "IDLE_CONNECTION_SECONDS", 0.2)


@pytest.mark.usefixtures("short_idle")
def test_idle_connections_close_after_the_idle_timeout(url: str) -> None:
    build_at_head(url, SERVER_URLS)
    with CacheRepository(url) as repository:
        threads = [
            threading.Thread(target=repository.set, args=("b", f"k{index}", b"v"), kwargs={"ttl_seconds": 60})
            for index in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sessions(url) >= 1
        assert sessions_settle(url, 0) == 0  # the repository is open, and holds nothing
        assert repository.get("b", "k0") == b"v"  # a new connection when needed


@pytest.mark.usefixtures("short_idle")
def test_idle_async_connections_close_after_the_idle_timeout(url: str) -> None:
    build_at_head(url, SERVER_URLS)

    async def use() -> None:
        async with AsyncCacheRepository(url) as repository:
            await asyncio.gather(*(repository.set("b", f"k{index}", b"v", ttl_seconds=60) for index in range(8)))
            assert await asyncio.to_thread(sessions, url) >= 1
            assert await asyncio.to_thread(sessions_settle, url, 0) == 0  # the loop runs meanwhile
            assert await repository.get("b", "k0") == b"v"

    asyncio.run(use())


@pytest.mark.parametrize("side", ["sync", "async"])
def test_no_reference_cycle_keeps_a_repository_alive(tmp_path: Path, side: str) -> None:
    """After every kind of call (a miss of ``get_or_fetch`` included), dropping the last reference
    frees the repository: reference counts alone, no garbage collector."""
    path = tmp_path / "cache.sqlite"
    with no_garbage_collector():
        repository: Any = (
            _use_sync(f"sqlite:///{path}") if side == "sync" else asyncio.run(_use_async(f"sqlite:///{path}"))
        )
        for thread in threading.enumerate():  # the thread that opened the file holds it until it has ended
            if thread.name == "animedex-store open":
                thread.join()
        dropped, its_operations = weakref.ref(repository), weakref.ref(repository._ops)
        del repository
        assert dropped() is None and its_operations() is None  # nor what holds its connections


def test_closing_stops_the_background_thread(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    with CacheRepository(tmp_path / "cache.sqlite") as repository:
        repository.get_or_fetch("b", "k", lambda: b"f", ttl_seconds=60)  # a miss: the thread starts
        (started,) = [thread for thread in set(threading.enumerate()) - before if "background" in thread.name]
    started.join(10)
    assert not started.is_alive()
