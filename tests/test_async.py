"""What only ``AsyncCacheRepository`` does, on every engine: opening without I/O at construction,
never blocking its event loop (a write that waits for another connection's lock), cancellation at
any point, and one fetch per key among coroutines and processes. The behaviours it shares with
``CacheRepository`` run on both classes in the contract tests (``BOTH_FLAVOURS``)."""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import sqlite3
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from at_head import build_at_head
from conftest import ENGINES, SERVER_URLS
from rowdump import claim_rows, plain_engine
from sqlalchemy import make_url, text

from animedex_store import AsyncCacheRepository, StoreError
from animedex_store.core.clock import epoch_millis
from animedex_store.errors import FetchTimeoutError
from animedex_store.fastpath import async_connection
from animedex_store.testing import FrozenClock

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


@pytest.fixture(params=ENGINES)
def url(request: pytest.FixtureRequest, tmp_path: Path, open_sandbox: Callable[[str], str]) -> str:
    """A database at head: a SQLite file, or a server sandbox."""
    target = f"sqlite:///{tmp_path / 'cache.sqlite'}" if request.param == "sqlite" else open_sandbox(request.param)
    build_at_head(target, SERVER_URLS)
    return target


def _claims(url: str) -> list[tuple[Any, ...]]:
    return [claim[:2] for claim in claim_rows(url)]


def _row_count(url: str) -> int:
    engine = plain_engine(url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(text("SELECT count(*) FROM cache_rows")).scalar_one())
    finally:
        engine.dispose()


# -- opening and closing -------------------------------------------------------------------------


def test_constructing_does_no_io_and_checks_the_options_at_once(tmp_path: Path) -> None:
    path = tmp_path / "new" / "cache.sqlite"
    repository = AsyncCacheRepository(path)
    assert not path.parent.exists()  # nothing opened yet
    with pytest.raises(TypeError, match="max_bytes must be int"):
        AsyncCacheRepository(path, max_bytes="big")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="compression"):
        AsyncCacheRepository(path, compression="lz4")
    with pytest.raises(TypeError, match="backend must be str"):
        repository.keys(5)  # type: ignore[arg-type]  # checked when called, before any open
    assert not path.parent.exists()

    async def use() -> bytes | None:
        async with repository:
            await repository.set("b", "k", b"v", ttl_seconds=60)
            return await repository.get("b", "k")

    assert run(use()) == b"v" and path.exists()


def test_the_first_calls_open_it_once_and_a_closed_one_refuses(url: str) -> None:
    repository = AsyncCacheRepository(url)

    async def use() -> None:
        results = await asyncio.gather(*(repository.get("b", f"k{number}") for number in range(20)))
        assert results == [None] * 20
        assert repository.target is not None and "cache" in repr(repository) or repository.target
        await repository.close()
        await repository.close()  # idempotent
        with pytest.raises(StoreError, match="is closed"):
            await repository.get("b", "k")

    run(use())


def test_the_deprecated_name_warns_at_the_awaiting_line(tmp_path: Path) -> None:
    async def use() -> None:
        async with AsyncCacheRepository(tmp_path / "cache.sqlite") as repository:
            with pytest.warns(DeprecationWarning, match="allow_stale=") as warned:
                await repository.get_with_meta("b", "k", allow_stale=True)
            assert warned[0].filename == __file__

    run(use())


# -- the loop keeps running while a write waits -------------------------------------------------

#: Ticks of a 1 ms ticker the loop must run while the write waits (about 1.5 s or more).
TICKS_WHILE_WAITING = 1_500


class _LockHolder:
    """Another connection holding the write lock on the row ``("b", "k")`` until :meth:`release`."""

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        self.backend = parsed.get_backend_name()
        if self.backend == "sqlite":
            self.connection: Any = sqlite3.connect(parsed.database, isolation_level=None, check_same_thread=False)
            self.connection.execute("BEGIN IMMEDIATE")  # the database's write lock
        else:
            self.engine = plain_engine(url)
            self.connection = self.engine.connect()
            self.connection.begin()  # the row's lock, until commit
            self.connection.execute(text("UPDATE cache_rows SET payload = payload WHERE signature = 'k'"))

    def release(self) -> None:
        if self.backend == "sqlite":
            self.connection.execute("COMMIT")
            self.connection.close()
        else:
            self.connection.commit()
            self.connection.close()
            self.engine.dispose()


def test_a_write_waiting_for_another_connections_lock_leaves_the_loop_ticking(url: str) -> None:
    async def use() -> tuple[int, bool]:
        async with AsyncCacheRepository(url, timeout=120) as repository:
            await repository.set("b", "k", b"before", ttl_seconds=60)
            holder = _LockHolder(url)
            write = asyncio.ensure_future(repository.set("b", "k", b"after", ttl_seconds=60))
            ticks = 0
            while ticks < TICKS_WHILE_WAITING:
                await asyncio.sleep(0.001)
                ticks += 1
            waited = not write.done()  # it was waiting for the lock all along
            holder.release()
            await write
            assert await repository.get("b", "k") == b"after"
            return ticks, waited

    ticks, waited = run(use())
    assert ticks == TICKS_WHILE_WAITING and waited


@pytest.mark.parametrize(("budget", "passes"), [(3600.0, 1), (-1.0, 10)])
def test_inline_reads_share_each_pass_of_the_loop_up_to_a_budget(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, budget: float, passes: int
) -> None:
    """Ten coroutines reading at once read in one pass of the loop while the pass has budget left
    (3600 s), and one per pass when it is spent at once (-1 s): the loop's timers run between."""
    monkeypatch.setattr(async_connection, "PASS_BUDGET_SECONDS", budget)

    async def use() -> set[int]:
        loop = asyncio.get_running_loop()
        current = 0

        def count_passes() -> None:  # runs once in every pass of the loop
            nonlocal current
            current += 1
            loop.call_soon(count_passes)

        async with AsyncCacheRepository(tmp_path / "cache.sqlite") as repository:
            await repository.set("b", "k", b"v", ttl_seconds=60)
            read_in: set[int] = set()

            async def read() -> None:
                assert await repository.get("b", "k") == b"v"
                read_in.add(current)

            loop.call_soon(count_passes)
            await asyncio.gather(*(read() for _ in range(10)))
            return read_in

    assert len(run(use())) == passes


# -- cancellation ---------------------------------------------------------------------------------


async def _cancel_after(task: asyncio.Future[Any], steps: int) -> None:
    """Cancel ``task`` once the loop has run ``steps`` rounds, and let it finish."""
    for _ in range(steps):
        await asyncio.sleep(0)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass


def _in_use(repository: AsyncCacheRepository) -> int:
    """Server connections taken by calls still under way (SQLite: none to count)."""
    return len(getattr(repository._ops.db, "in_use", ()))  # type: ignore[union-attr]


@pytest.mark.parametrize("seed", range(4))
def test_a_cancelled_batch_leaves_all_its_rows_or_none(url: str, seed: int) -> None:
    rows = {f"k{number:05d}": b"x" * 64 for number in range(10_000)}
    steps = random.Random(seed).randrange(0, 400)

    async def use() -> int:
        async with AsyncCacheRepository(url) as repository:
            batch = asyncio.ensure_future(repository.set_many("b", rows, ttl_seconds=600))
            await _cancel_after(batch, steps)
            assert _in_use(repository) == 0
            await repository.set("b", "after", b"ok", ttl_seconds=60)  # the repository still works
            return await repository.count("b")

    stored = run(use()) - 1
    assert stored in (0, len(rows)), f"{stored} rows of a batch of {len(rows)}"
    if make_url(url).get_backend_name() == "sqlite":
        with sqlite3.connect(make_url(url).database) as connection:
            assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)


@pytest.mark.parametrize("seed", range(4))
def test_a_cancelled_get_or_fetch_leaves_no_claim(url: str, seed: int) -> None:
    steps = random.Random(seed).randrange(0, 60)

    async def use() -> None:
        async with AsyncCacheRepository(url) as repository:
            never = asyncio.Event()

            async def fetch() -> bytes:
                await never.wait()
                return b"never"

            flight = asyncio.ensure_future(repository.get_or_fetch("b", "k", fetch, ttl_seconds=60))
            await _cancel_after(flight, steps)
            connections = repository._ops.db  # type: ignore[union-attr]
        assert len(getattr(connections, "in_use", ())) == 0  # after close: every flight has ended

    run(use())
    assert _claims(url) == [] and _row_count(url) == 0


# -- single flight --------------------------------------------------------------------------------


def test_a_hundred_coroutines_share_one_fetch(url: str) -> None:
    calls: list[int] = []

    async def use() -> set[bytes]:
        release = asyncio.Event()

        async def fetch() -> bytes:
            calls.append(1)
            await release.wait()
            return b"fetched"

        async with AsyncCacheRepository(url) as repository:
            waiters = [
                asyncio.ensure_future(repository.get_or_fetch("b", "k", fetch, ttl_seconds=60)) for _ in range(100)
            ]
            while not calls:
                await asyncio.sleep(0)
            for _ in range(20):  # let every waiter reach the flight before it ends
                await asyncio.sleep(0)
            release.set()
            return {response.payload for response in await asyncio.gather(*waiters)}

    assert run(use()) == {b"fetched"} and len(calls) == 1
    assert _claims(url) == []


def test_a_raising_fetch_reaches_every_waiter_or_the_stale_row_does(url: str) -> None:
    clock = FrozenClock()

    async def use(serve_stale: bool) -> list[Any]:
        async def fetch() -> bytes:
            await asyncio.sleep(0)
            raise ConnectionError("upstream down")

        async with AsyncCacheRepository(url, clock=clock) as repository:
            waiters = [
                repository.get_or_fetch("b", "k", fetch, ttl_seconds=60, serve_stale=serve_stale) for _ in range(10)
            ]
            return await asyncio.gather(*waiters, return_exceptions=True)

    failures = run(use(serve_stale=False))
    assert all(isinstance(failure, ConnectionError) for failure in failures)

    async def store_and_expire() -> None:
        async with AsyncCacheRepository(url, clock=clock) as repository:
            await repository.set("b", "k", b"last good", ttl_seconds=60)
        clock.advance(61)

    run(store_and_expire())
    stale = run(use(serve_stale=True))
    assert [(response.payload, response.is_stale) for response in stale] == [(b"last good", True)] * 10
    assert _claims(url) == []


def _fifty_coroutines(url: str, fetched: Any, started: Any, go: Any) -> None:
    """A process of its own: 50 coroutines ask for one key; the fetch counts itself in ``fetched``."""

    async def use() -> None:
        async def fetch() -> bytes:
            with fetched.get_lock():
                fetched.value += 1
            while not go.is_set():  # the other process must be asking meanwhile
                await asyncio.sleep(0.005)
            return b"fetched once"

        async with AsyncCacheRepository(url) as repository:
            waiters = [repository.get_or_fetch("b", "k", fetch, ttl_seconds=60, wait_seconds=60) for _ in range(50)]
            gathered = asyncio.gather(*waiters)
            await asyncio.sleep(0)
            started.release()
            assert {response.payload for response in await gathered} == {b"fetched once"}

    asyncio.run(use())


@pytest.mark.slow
def test_two_processes_of_fifty_coroutines_fetch_once(url: str) -> None:
    context = multiprocessing.get_context("spawn")
    fetched, started, go = context.Value("i", 0), context.Semaphore(0), context.Event()
    processes = [context.Process(target=_fifty_coroutines, args=(url, fetched, started, go)) for _ in range(2)]
    for process in processes:
        process.start()
    for _ in processes:
        assert started.acquire(timeout=60)  # both are asking
    go.set()
    for process in processes:
        process.join(timeout=120)
        assert process.exitcode == 0
    assert fetched.value == 1
    assert _claims(url) == []


def test_a_fetch_lasting_three_leases_is_fetched_once(url: str) -> None:
    """The holder renews its lease while it fetches; another repository (as another process would
    be) never takes the key over, however long the fetch lasts by the repositories' clock."""
    clock = FrozenClock()
    lease = 0.3

    async def use() -> list[int]:
        async with AsyncCacheRepository(url, clock=clock) as holder, AsyncCacheRepository(url, clock=clock) as other:
            other_fetches: list[int] = []

            async def other_fetch() -> bytes:
                other_fetches.append(1)
                return b"twice"

            async def slow_fetch() -> bytes:
                for _ in range(3):
                    clock.advance(lease)  # one whole lease passes while we fetch...
                    await _renewed(url, clock, lease)  # ...and our renewal keeps the claim
                    with pytest.raises(FetchTimeoutError):
                        await other.get_or_fetch("b", "k", other_fetch, ttl_seconds=60, wait_seconds=0)
                return b"once"

            got = await holder.get_or_fetch("b", "k", slow_fetch, ttl_seconds=60, lease_seconds=lease)
            assert got.payload == b"once"
            return other_fetches

    assert run(use()) == []
    assert _claims(url) == []


async def _renewed(url: str, clock: FrozenClock, lease: float) -> None:
    """Wait, polling the claim (deadline: 30 s), until its lease ends after the clock's now."""
    engine = plain_engine(url)
    try:
        for _ in range(3_000):
            with engine.connect() as connection:
                lease_until = connection.execute(text("SELECT lease_until FROM cache_locks")).scalar()
            if lease_until is not None and lease_until > epoch_millis(clock()) + lease * 500:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the holder never renewed its lease")
    finally:
        engine.dispose()


def test_closing_while_it_opens_closes_what_the_open_made(tmp_path: Path) -> None:
    async def use() -> None:
        repository = AsyncCacheRepository(tmp_path / "cache.sqlite")
        opening = asyncio.ensure_future(repository.open())
        await asyncio.sleep(0)  # the open is under way (on its thread)
        await repository.close()
        await opening
        assert repository._ops is None  # nothing left open
        with pytest.raises(StoreError, match="is closed"):
            await repository.get("b", "k")

    run(use())


def _async_engine_on(url: str) -> Any:
    """A caller's ``AsyncEngine`` on the database ``url`` names (the sandbox's schema as a server setting)."""
    from sqlalchemy.ext.asyncio import create_async_engine

    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return create_async_engine(parsed.set(drivername="sqlite+aiosqlite"))
    if backend == "postgresql":
        options = parsed.query["options"]
        schema = options.split("search_path=")[1].split()[0]
        return create_async_engine(
            parsed.set(drivername="postgresql+asyncpg").difference_update_query(["options"]),
            connect_args={"server_settings": {"search_path": schema}},
        )
    return create_async_engine(parsed.set(drivername="mysql+asyncmy").difference_update_query(["ssl_disabled"]))


@pytest.mark.parametrize("migrated", [True, False], ids=["at-head", "new"])
def test_an_async_engine_is_used_as_it_is(engine_url: str, migrated: bool) -> None:
    if migrated:
        build_at_head(engine_url, SERVER_URLS)

    async def use() -> None:
        engine = _async_engine_on(engine_url)
        try:
            async with AsyncCacheRepository(engine) as repository:  # migrates a new database on its loop
                await repository.set_many("b", {"k1": b"one", "k2": b"two"}, ttl_seconds=60)
                assert await repository.get_many("b", ["k1", "k2", "k3"]) == {"k1": b"one", "k2": b"two"}
                assert [key.signature async for key in repository.keys("b")] == ["k1", "k2"]
                fetched = await repository.get_or_fetch("b", "k3", lambda: b"three", ttl_seconds=60)
                assert fetched.payload == b"three" and await repository.delete("b", "k1")
            async with engine.connect() as connection:  # not disposed by the repository
                assert (await connection.exec_driver_sql("SELECT count(*) FROM cache_rows")).scalar() == 2
        finally:
            await engine.dispose()

    run(use())
