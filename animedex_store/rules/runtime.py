"""What the rules need of the side that runs them, besides the database (:class:`Runtime`), and the
blocking side's (:class:`BlockingRuntime`).

The blocking runtime of :class:`~animedex_store.CacheRepository` sleeps and locks
the calling thread; the asynchronous one of
:class:`~animedex_store.AsyncCacheRepository`
(:mod:`animedex_store.rules.async_runtime`) awaits ``asyncio.sleep``, takes a
lock per event loop and shares one key's flight among the coroutines of a loop.
Both renew a fetch's lease from the repository's background thread
(:mod:`animedex_store.rules.background`). The rules never import either side.
Standard library only; ``asyncio`` is not imported here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from ..core.blocking import run_blocking

if TYPE_CHECKING:
    from ..core.response import CachedResponse
    from .background import Background

__all__ = ["Runtime", "Lock", "Key", "FlightGone", "BlockingRuntime"]

#: ``(backend, signature)``.
Key = tuple[str, str]


class FlightGone(Exception):
    """The in-process flight a caller waited for was cancelled, not by that caller: by the
    repository's ``close()``, or with its event loop. The caller starts over (and a closed repository
    then refuses it with its :class:`~animedex_store.errors.StoreError`): a caller that was not
    cancelled never sees ``CancelledError``."""


class Lock(Protocol):
    """Mutual exclusion across an ``await``: ``async with lock: ...``."""

    async def __aenter__(self) -> Any: ...

    async def __aexit__(self, *exc_info: Any) -> Any: ...


class Runtime(Protocol):
    """Waiting, mutual exclusion, calling a user's ``fetch`` while its claim is kept alive, and
    sharing one key's flight among the callers of one process that can share it."""

    def new_lock(self) -> Lock:
        """A new lock for one piece of shared state (the size cap's running total)."""

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of real time."""

    async def fetch(
        self, fetch: Callable[[], Any], renew: Callable[[], Coroutine[Any, Any, bool]], every: float
    ) -> Any:
        """``fetch()``'s result (awaited if it is awaitable), ``renew()`` called every ``every`` seconds
        from the background thread while it runs, until ``renew()`` says ``False`` (the claim was
        lost). Returns as soon as ``fetch`` does: never waits for a renewal in progress."""

    async def to_the_end(self, step: Coroutine[Any, Any, None]) -> None:
        """Run ``step`` to its end even if the caller is cancelled meanwhile (a claim's release while a
        flight unwinds: a second cancellation must not cut it short); the cancellation is raised after."""

    def in_flight(self, key: Key) -> bool:
        """Whether a flight of ``key`` started here (:meth:`lead`) is under way, for callers to join."""

    async def join(self, key: Key, wait: float) -> CachedResponse:
        """The result of the flight of ``key`` under way; ``TimeoutError`` after ``wait`` seconds,
        :class:`FlightGone` if it was cancelled by someone else."""

    async def lead(self, key: Key, flight: Coroutine[Any, Any, CachedResponse]) -> CachedResponse:
        """``flight``'s result, which the callers that :meth:`join` meanwhile share."""

    def stop(self) -> None:
        """The repository closed: stop its background thread, without waiting."""


class BlockingRuntime:
    """:class:`Runtime` of :class:`~animedex_store.CacheRepository`, on the calling thread; one per
    repository (its background thread is made on the first fetch that needs renewing)."""

    __slots__ = ("_name", "_background")

    def __init__(self, name: str) -> None:
        self._name = name
        self._background: Background | None = None

    @property
    def background(self) -> Background:
        """The repository's background thread (made on first ask, started on first use)."""
        if self._background is None:
            from .background import Background

            self._background = Background(self._name)
        return self._background

    def call_later(self, seconds: float, callback: Callable[[], object]) -> object:
        """Run ``callback()`` on the background thread in ``seconds``
        (:data:`~animedex_store.core.connections.Schedule`)."""
        return self.background.call_later(seconds, callback)

    def new_lock(self) -> BlockingLock:
        return BlockingLock()

    async def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    async def fetch(
        self, fetch: Callable[[], Any], renew: Callable[[], Coroutine[Any, Any, bool]], every: float
    ) -> Any:
        # renew()'s coroutine never suspends on blocking connections: the background thread runs it whole.
        renewal = self.background.every(every, lambda: run_blocking(renew()))
        try:
            return fetch()
        finally:
            renewal.cancel()

    async def to_the_end(self, step: Coroutine[Any, Any, None]) -> None:
        await step  # a blocking call is never cancelled part way

    # Threads of one process agree through the database's claim, as processes do.
    def in_flight(self, key: Key) -> bool:
        return False

    async def join(self, key: Key, wait: float) -> CachedResponse:
        raise RuntimeError("the blocking runtime shares no flight in process")

    async def lead(self, key: Key, flight: Coroutine[Any, Any, CachedResponse]) -> CachedResponse:
        return await flight

    def stop(self) -> None:
        if self._background is not None:
            self._background.stop()


class BlockingLock:
    """A ``threading.Lock`` as an async context manager whose awaits never suspend."""

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.Lock()

    async def __aenter__(self) -> None:
        self._lock.acquire()

    async def __aexit__(self, *exc_info: Any) -> None:
        self._lock.release()
