"""``AsyncCacheRepository`` from any event loop, and no stray cancellation.

One repository serves whichever loop calls it: ``asyncio.run()`` three times in turn (every
CLI that calls it twice, every test suite with a loop per test), and two threads' loops at the
same time. A caller that was not cancelled never sees ``CancelledError``: not after another
caller of the same key gave up, not when ``close()`` stops the flight it waited for.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from at_head import build_at_head
from conftest import ENGINES, SERVER_URLS
from rowdump import claim_rows
from sqlalchemy import make_url

from animedex_store import AsyncCacheRepository, StoreError
from animedex_store.errors import EventLoopError
from animedex_store.testing import FrozenClock


@pytest.fixture(params=[*ENGINES, "memory"])
def url(request: pytest.FixtureRequest, tmp_path: Path, open_sandbox: Callable[[str], str]) -> str:
    """A database at head: a SQLite file, a server sandbox, or ``sqlite://`` in memory."""
    if request.param == "memory":
        return "sqlite://"
    target = f"sqlite:///{tmp_path / 'cache.sqlite'}" if request.param == "sqlite" else open_sandbox(request.param)
    build_at_head(target, SERVER_URLS)
    return target


async def _every_kind_of_call(repository: AsyncCacheRepository, tag: str) -> None:
    """Reads, writes, a batch, a listing and a fetch, several at once."""
    await repository.set("b", f"{tag}-one", b"1", ttl_seconds=60)
    await repository.set_many("b", {f"{tag}-two": b"2", f"{tag}-three": b"3"}, ttl_seconds=60)
    got = await asyncio.gather(*(repository.get("b", f"{tag}-{name}") for name in ("one", "two", "three")))
    assert got == [b"1", b"2", b"3"]
    fetched = await asyncio.gather(
        *(repository.get_or_fetch("b", f"{tag}-fetched", lambda: b"f", ttl_seconds=60) for _ in range(5))
    )
    assert {response.payload for response in fetched} == {b"f"}
    assert [key.signature async for key in repository.keys("b") if key.signature.startswith(tag)] == sorted(
        f"{tag}-{name}" for name in ("fetched", "one", "three", "two")
    )
    assert await repository.delete("b", f"{tag}-one") is True
    assert (await repository.stats()).rows >= 3


def test_three_asyncio_runs_in_turn(url: str) -> None:
    repository = AsyncCacheRepository(url)
    for run in range(3):
        asyncio.run(_every_kind_of_call(repository, f"run{run}"))
    asyncio.run(repository.close())
    assert claim_rows(url) == []


def test_two_threads_loops_at_once(url: str) -> None:
    repository = AsyncCacheRepository(url)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def in_a_loop_of_its_own(tag: str) -> None:
        async def use() -> None:
            barrier.wait(30)
            for round_ in range(5):
                await _every_kind_of_call(repository, f"{tag}{round_}")

        try:
            asyncio.run(use())
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=in_a_loop_of_its_own, args=(tag,)) for tag in ("left", "right")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    asyncio.run(repository.close())
    assert claim_rows(url) == []


def test_a_closed_loops_state_is_dropped_and_the_next_loop_works(url: str) -> None:
    """A loop that ended mid-fetch: the next loop's caller fetches, no claim is left behind."""
    repository = AsyncCacheRepository(url)
    fetching = threading.Event()

    async def abandoned() -> None:
        async def never() -> bytes:
            fetching.set()
            await asyncio.Event().wait()
            return b"never"

        asyncio.ensure_future(repository.get_or_fetch("b", "k", never, ttl_seconds=60, wait_seconds=5))
        while not fetching.is_set():
            await asyncio.sleep(0)
        # asyncio.run cancels the flight as this loop ends; its claim is released as it unwinds.

    asyncio.run(abandoned())

    async def next_loop() -> bytes:
        response = await repository.get_or_fetch("b", "k", lambda: b"fetched", ttl_seconds=60, wait_seconds=5)
        await repository.close()
        return response.payload

    assert asyncio.run(next_loop()) == b"fetched"
    assert claim_rows(url) == []


# -- no stray cancellation --------------------------------------------------------------------------


def test_a_cancelled_waiter_then_a_new_caller(url: str) -> None:
    """The usual pattern: a caller gives up (``wait_for`` timed out), and the next asks again. The
    next caller starts a flight of its own, never joins the dying one."""

    async def use() -> bytes:
        async with AsyncCacheRepository(url) as repository:
            started = asyncio.Event()

            async def hanging() -> bytes:
                started.set()
                await asyncio.Event().wait()  # the upstream never answers
                return b"never"

            first = asyncio.ensure_future(repository.get_or_fetch("b", "k", hanging, ttl_seconds=60))
            await started.wait()
            first.cancel()
            with pytest.raises(asyncio.CancelledError):
                await first
            again = await repository.get_or_fetch("b", "k", lambda: b"second try", ttl_seconds=60, wait_seconds=10)
            return again.payload

    assert asyncio.run(use()) == b"second try"
    assert claim_rows(url) == []


def test_a_wait_for_timeout_then_a_retry(url: str) -> None:
    async def use() -> bytes:
        async with AsyncCacheRepository(url) as repository:

            async def slow() -> bytes:
                await asyncio.Event().wait()
                return b"never"

            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(repository.get_or_fetch("b", "k", slow, ttl_seconds=60), 0.05)
            retried = await repository.get_or_fetch("b", "k", lambda: b"retried", ttl_seconds=60, wait_seconds=10)
            return retried.payload

    assert asyncio.run(use()) == b"retried"


def test_a_joiner_that_gives_up_leaves_the_flight_to_the_others(url: str) -> None:
    """Cancelling one of two callers cancels nothing for the other."""

    async def use() -> list[bytes]:
        async with AsyncCacheRepository(url) as repository:
            release, started = asyncio.Event(), asyncio.Event()

            async def fetch() -> bytes:
                started.set()
                await release.wait()
                return b"shared"

            leader = asyncio.ensure_future(repository.get_or_fetch("b", "k", fetch, ttl_seconds=60))
            await started.wait()
            joiners = [
                asyncio.ensure_future(repository.get_or_fetch("b", "k", fetch, ttl_seconds=60)) for _ in range(3)
            ]
            for _ in range(5):
                await asyncio.sleep(0)  # every joiner is waiting
            joiners[0].cancel()
            leader.cancel()
            release.set()
            results = await asyncio.gather(*joiners[1:])
            assert leader.cancelled() and joiners[0].cancelled()
            return [response.payload for response in results]

    assert asyncio.run(use()) == [b"shared", b"shared"]


def test_callers_of_a_flight_stopped_by_close_get_the_closed_error(url: str) -> None:
    async def use() -> list[BaseException]:
        repository = await AsyncCacheRepository(url).open()
        started = asyncio.Event()

        async def hanging() -> bytes:
            started.set()
            await asyncio.Event().wait()
            return b"never"

        callers = [asyncio.ensure_future(repository.get_or_fetch("b", "k", hanging, ttl_seconds=60)) for _ in range(3)]
        await started.wait()
        await repository.close()
        return list(await asyncio.gather(*callers, return_exceptions=True))

    outcomes = asyncio.run(use())
    assert [type(outcome) for outcome in outcomes] == [StoreError] * 3
    assert all("is closed" in str(outcome) for outcome in outcomes)
    assert claim_rows(url) == []


# -- a caller's AsyncEngine -------------------------------------------------------------------------


def test_a_pooled_async_engine_from_another_loop_says_what_to_do(server_url: str) -> None:
    """A caller's ``AsyncEngine`` keeps connections of the loop that made them: from another loop the
    call fails with an :class:`EventLoopError` naming the ways out, never a bare ``RuntimeError``."""
    from sqlalchemy.ext.asyncio import create_async_engine

    build_at_head(server_url, SERVER_URLS)
    parsed = make_url(server_url)
    if parsed.get_backend_name() == "postgresql":
        schema = parsed.query["options"].split("search_path=")[1].split()[0]
        engine = create_async_engine(
            parsed.set(drivername="postgresql+asyncpg").difference_update_query(["options"]),
            connect_args={"server_settings": {"search_path": schema}},
        )
    else:
        engine = create_async_engine(parsed.set(drivername="mysql+asyncmy").difference_update_query(["ssl_disabled"]))
    repository = AsyncCacheRepository(engine, clock=FrozenClock())

    async def first() -> None:
        await repository.set("b", "k", b"v", ttl_seconds=60)

    async def second() -> None:
        with pytest.raises(EventLoopError, match="NullPool"):
            for _ in range(3):  # whichever pooled connection comes out, it is the first loop's
                await repository.get("b", "k")
        await repository.close()
        await engine.dispose()

    asyncio.run(first())
    asyncio.run(second())
