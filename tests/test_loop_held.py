"""``AsyncCacheRepository`` never holds its event loop: not on a 1,000,000-row SQLite file, not in
memory, not while a plain ``fetch`` runs, and nothing the caller does starves a lease's renewal.

Each call runs beside a ticker (a coroutine sleeping 1 ms at a time) that records its worst
lateness: a call that kept the loop for ``x`` seconds makes it ``x`` late. The bound is generous
(:data:`LATENESS_BOUND`: a loaded 2-core machine preempts a process for tens of milliseconds now and
then), and the calls that held the loop held it for hundreds of milliseconds (``stats`` 0.35 s,
a ``keys`` page 0.15-0.25 s, ``clear`` in memory 2 s). The deterministic check beside it: a statement
that ran long inline is stopped by SQLite and remembered as one for the thread
(``_long``; with the bound at 0 s every statement of more than ``PROGRESS_STEPS`` steps is).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import ENGINES, SERVER_URLS
from million import copy_of, million_rows_file, signatures
from rowdump import claim_rows

from animedex_store import AsyncCacheRepository
from animedex_store.core.clock import epoch_millis
from animedex_store.fastpath import async_connection
from animedex_store.testing import FrozenClock
from benchmarks.loop_held import worst_lateness

#: The worst lateness of the ticker that a call may cause (see the module docstring).
LATENESS_BOUND = 0.1


@pytest.fixture(scope="session")
def million(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 1,000,000-row file, one per session (xdist workers share the session's base directory)."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent
    return million_rows_file(shared)


async def _listed(repository: AsyncCacheRepository, **arguments: Any) -> int:
    return len([key async for key in repository.keys("b", limit=1_000, **arguments)])


#: What each call does, on a repository over the 1,000,000 rows.
READS: dict[str, Callable[[AsyncCacheRepository], Awaitable[Any]]] = {
    "stats": lambda repository: repository.stats(),
    "count": lambda repository: repository.count("b"),
    "keys-by-signature": lambda repository: _listed(repository),
    "keys-by-size": lambda repository: _listed(repository, order_by="size"),
    "get_many": lambda repository: repository.get_many("b", signatures(512)),
    "contains_many": lambda repository: repository.contains_many("b", signatures(512)),
}
WRITES: dict[str, Callable[[AsyncCacheRepository], Awaitable[Any]]] = {
    "purge_expired": lambda repository: repository.purge_expired(),
    "delete_many": lambda repository: repository.delete_many("b", signatures(512)),
    "clear": lambda repository: repository.clear("b"),
    "vacuum": lambda repository: repository.vacuum(),
}


@pytest.fixture(params=["file", "memory"])
def where(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def _on_the_rows(million: Path, where: str, directory: Path, *, copy: bool) -> AsyncCacheRepository:
    """A repository on the rows: the file itself (or a copy, for a test that changes rows), or an
    in-memory database loaded from it."""
    if where == "file":
        return await AsyncCacheRepository(copy_of(million, directory) if copy else million).open()
    repository = await AsyncCacheRepository("sqlite://").open()
    rows = sqlite3.connect(million)
    try:
        rows.backup(repository._ops.db.blocking.conn)  # type: ignore[union-attr]
    finally:
        rows.close()
    return repository


def _long(repository: AsyncCacheRepository) -> set[Any]:
    """The statements the time bound sent to the thread so far."""
    long = repository._ops.db._long  # type: ignore[union-attr]
    return {(kind, statement) for kind, statements in long.items() for statement in statements}


def _never_holds_the_loop(
    million: Path,
    where: str,
    directory: Path,
    call: Callable[[AsyncCacheRepository], Awaitable[Any]],
    monkeypatch: pytest.MonkeyPatch,
    *,
    pure: bool,
) -> None:
    """``call`` leaves the ticker on time, and its long statement went to the thread: it ran past
    the bound (a write in memory, which runs inline first: at 1,000,000 rows it always does), or with
    the bound at 0 s when it is ``pure`` (run again)."""

    async def use() -> None:
        repository = await _on_the_rows(million, where, directory, copy=not pure)
        try:
            before = _long(repository)
            assert await worst_lateness(lambda: call(repository)) < LATENESS_BOUND
            if pure:
                with monkeypatch.context() as bounded:
                    bounded.setattr(async_connection, "INLINE_STATEMENT_SECONDS", 0.0)
                    await call(repository)
            if pure or where == "memory":  # a file's writes run on the thread anyway
                assert _long(repository) > before
        finally:
            await repository.close()

    asyncio.run(use())


@pytest.mark.parametrize("name", READS)
def test_a_read_of_a_million_rows_never_holds_the_loop(
    million: Path, where: str, name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _never_holds_the_loop(million, where, tmp_path, READS[name], monkeypatch, pure=True)


@pytest.mark.parametrize("name", WRITES)
def test_a_write_over_a_million_rows_never_holds_the_loop(
    million: Path, where: str, name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _never_holds_the_loop(million, where, tmp_path, WRITES[name], monkeypatch, pure=False)


def test_opening_a_million_rows_never_holds_the_loop(million: Path) -> None:
    async def use() -> None:
        repository = AsyncCacheRepository(million)
        try:
            assert await worst_lateness(repository.open) < LATENESS_BOUND
            assert await repository.get("b", "k0000001") == bytes(32)
        finally:
            await repository.close()

    asyncio.run(use())


# -- fetch ------------------------------------------------------------------------------------------


def test_a_plain_fetch_runs_on_a_worker_thread(tmp_path: Path) -> None:
    """A 0.2 s plain ``fetch`` (a blocking HTTP client's call) leaves the loop ticking; an ``async``
    one runs on the loop."""
    threads: list[int] = []

    def blocking_fetch() -> bytes:
        threads.append(threading.get_ident())
        time.sleep(0.2)  # the upstream's answer, as a blocking client waits for it
        return b"fetched"

    async def async_fetch() -> bytes:
        threads.append(threading.get_ident())
        return b"fetched too"

    async def use() -> tuple[float, int]:
        async with AsyncCacheRepository(tmp_path / "cache.sqlite") as repository:
            lateness = await worst_lateness(
                lambda: repository.get_or_fetch("b", "plain", blocking_fetch, ttl_seconds=60)
            )
            assert (await repository.get_or_fetch("b", "async", async_fetch, ttl_seconds=60)).payload == b"fetched too"
            assert await repository.get("b", "plain") == b"fetched"
            return lateness, threading.get_ident()

    lateness, loop_thread = asyncio.run(use())
    assert lateness < LATENESS_BOUND
    assert threads[0] != loop_thread and threads[1] == loop_thread


@pytest.fixture(params=ENGINES)
def url(request: pytest.FixtureRequest, tmp_path: Path, open_sandbox: Callable[[str], str]) -> str:
    from at_head import build_at_head

    target = f"sqlite:///{tmp_path / 'cache.sqlite'}" if request.param == "sqlite" else open_sandbox(request.param)
    build_at_head(target, SERVER_URLS)
    return target


def _lease_until(url: str) -> int | None:
    held = claim_rows(url)
    return held[0][3] if held else None


def _blocked_until_renewed(url: str, clock: FrozenClock, lease_ms: int) -> bool:
    """Block the calling thread (the event loop's) until the claim is renewed past the clock's now,
    polling the database (deadline: 20 s); whether it was."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        lease_until = _lease_until(url)
        if lease_until is not None and lease_until > epoch_millis(clock()) + lease_ms // 2:
            return True
        time.sleep(0.01)  # polling for the background thread's write, not waiting for time to pass
    return False


def test_a_fetch_that_blocks_the_loop_cannot_starve_its_renewal(url: str) -> None:
    """The lease is renewed from the repository's background thread: an ``async`` fetch that never
    yields to its loop (it blocks it) still keeps its claim through a whole lease."""
    clock = FrozenClock()
    lease = 0.3

    async def use() -> bytes:
        async with AsyncCacheRepository(url, clock=clock) as repository:

            async def blocking_fetch() -> bytes:
                clock.advance(lease)  # a whole lease passes while we fetch, the loop blocked all along
                assert _blocked_until_renewed(url, clock, int(lease * 1000)), "the renewal never came"
                return b"once"

            got = await repository.get_or_fetch("b", "k", blocking_fetch, ttl_seconds=60, lease_seconds=lease)
            return got.payload

    assert asyncio.run(use()) == b"once"
    assert _lease_until(url) is None  # released
