"""The rules' :class:`~animedex_store.rules.runtime.Runtime` for :class:`~animedex_store.AsyncCacheRepository`.

* **In-process flights.** Coroutines of one event loop asking ``get_or_fetch``
  for one key share one fetch (a task); each loop has its own table of flights
  (:class:`~animedex_store.rules.loops.PerLoop`). When the last caller waiting
  for a flight leaves (cancelled, or its ``wait_seconds`` ran out), the flight
  leaves the table at once and is cancelled: the next caller starts a flight of
  its own (its claim waits for the dying one's release, which comes as it
  unwinds). A caller waits with ``asyncio.wait``, so its own cancellation never
  cancels the flight for the others, and a flight cancelled by someone else
  (``close()``, its loop shutting down) raises
  :class:`~animedex_store.rules.runtime.FlightGone`: the operation starts over,
  so a caller that was not cancelled never sees ``CancelledError``.
* **Fetching.** A coroutine function (``async def``) is awaited on the caller's
  loop; any other callable runs in a worker thread (``asyncio.to_thread``), so a
  slow plain ``fetch`` never holds the loop (what it returns is awaited if it is
  awaitable).
* **Lease renewal** runs from the repository's background thread
  (:mod:`animedex_store.rules.background`) on the thread's own event loop, so a
  ``fetch`` that blocks its loop cannot starve it. Connections bound to one
  loop (a caller's pooled ``AsyncEngine``) renew on the caller's loop instead,
  sent there from the background thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
from collections.abc import Callable, Coroutine
from typing import Any

from ..core.response import CachedResponse
from .background import Background
from .loops import LoopLock, PerLoop, call_on
from .runtime import FlightGone, Key

__all__ = ["AsyncRuntime", "UNWIND_GRACE_SECONDS"]

#: How long a cancelled flight still waits for its claim's release before it gives up (the claim then
#: waits out its lease): a release never makes a cancellation hang.
UNWIND_GRACE_SECONDS = 5.0


class _Shared:
    """One key's flight on one loop, and how many callers wait for it."""

    __slots__ = ("task", "waiters")

    def __init__(self, task: asyncio.Future[CachedResponse]) -> None:
        self.task = task
        self.waiters = 0


class _Flights:
    """One loop's flights: those callers can join (``table``), and every one still running, joinable
    or not (a flight nobody waits for any more unwinds, releasing its claim: ``close()`` waits for it)."""

    __slots__ = ("table", "running")

    def __init__(self) -> None:
        self.table: dict[Key, _Shared] = {}
        self.running: set[asyncio.Future[CachedResponse]] = set()


class AsyncRuntime:
    """See the module docstring. ``any_loop=False``: the repository's connections work only on the
    loop that made them (renewals then run there)."""

    def __init__(self, name: str) -> None:
        self.background = Background(name)
        self.any_loop = True
        self._flights: PerLoop[_Flights] = PerLoop(_Flights, _cancel_flights)

    def new_lock(self) -> LoopLock:
        return LoopLock()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def fetch(
        self, fetch: Callable[[], Any], renew: Callable[[], Coroutine[Any, Any, bool]], every: float
    ) -> Any:
        background = self.background
        if self.any_loop:
            renewal = background.every(every, lambda: background.run_async(renew()))
        else:
            loop = asyncio.get_running_loop()
            renewal = background.every(every, lambda: _on_loop(loop, renew(), every))
        try:
            result = fetch() if _is_coroutine_function(fetch) else await asyncio.to_thread(fetch)
            return await result if inspect.isawaitable(result) else result
        finally:
            renewal.cancel()

    async def to_the_end(self, step: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(step)
        give_up_at: float | None = None  # once cancelled: the step gets UNWIND_GRACE_SECONDS, no more
        loop = asyncio.get_running_loop()
        while not task.done():
            timeout = None if give_up_at is None else give_up_at - loop.time()
            if timeout is not None and timeout <= 0:
                task.cancel()  # a step that hangs (a server gone silent) must not make the cancel hang
                break
            try:
                await asyncio.wait((task,), timeout=timeout)
            except asyncio.CancelledError:
                if give_up_at is None:
                    give_up_at = loop.time() + UNWIND_GRACE_SECONDS
        if give_up_at is not None:
            raise asyncio.CancelledError
        task.result()

    def in_flight(self, key: Key) -> bool:
        return key in self._flights.get().table

    async def join(self, key: Key, wait: float) -> CachedResponse:
        table = self._flights.get().table
        return await _wait(table, key, table[key], wait)

    async def lead(self, key: Key, flight: Coroutine[Any, Any, CachedResponse]) -> CachedResponse:
        flights = self._flights.get()
        table = flights.table
        task = asyncio.ensure_future(flight)
        shared = table[key] = _Shared(task)
        flights.running.add(task)

        def done(_task: object) -> None:
            flights.running.discard(task)
            if table.get(key) is shared:
                del table[key]

        task.add_done_callback(done)
        return await _wait(table, key, shared, None)

    async def stop_flights(self) -> None:
        """Cancel every flight under way and wait for this loop's to end (each releases its claim as
        it unwinds); other loops' are cancelled there, without waiting."""
        here = self._flights.current()
        tasks = list(here.running) if here is not None else []
        self._flights.drop_all()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def abandon_flights(self) -> None:
        """:meth:`stop_flights` without waiting for any (no loop at hand)."""
        self._flights.drop_all()

    def stop(self) -> None:
        self.background.stop()


async def _wait(table: dict[Key, _Shared], key: Key, shared: _Shared, timeout: float | None) -> CachedResponse:
    """``shared``'s result; the last caller to leave takes the flight off ``table`` and cancels it."""
    shared.waiters += 1
    try:
        done, _pending = await asyncio.wait((shared.task,), timeout=timeout)
    finally:
        shared.waiters -= 1
        if shared.waiters == 0 and not shared.task.done():
            # Nobody wants it any more: not in flight for the next caller, whose claim waits for
            # this one's release as it unwinds.
            if table.get(key) is shared:
                del table[key]
            shared.task.cancel()
    if not done:
        raise TimeoutError
    if shared.task.cancelled():
        raise FlightGone
    return shared.task.result()


def _cancel_flights(flights: _Flights, loop: asyncio.AbstractEventLoop) -> None:
    """Cancel a loop's flights there (a loop that closed has none left running)."""
    tasks = list(flights.running)
    flights.table.clear()
    if tasks:
        call_on(loop, lambda: [task.cancel() for task in tasks])


def _is_coroutine_function(fetch: Callable[[], Any]) -> bool:
    """``async def`` (a partial of one, or an object whose ``__call__`` is one)."""
    call = type(fetch).__call__ if not inspect.isroutine(fetch) else None
    return inspect.iscoroutinefunction(fetch) or inspect.iscoroutinefunction(call)


def _on_loop(loop: asyncio.AbstractEventLoop, renewal: Coroutine[Any, Any, bool], timeout: float) -> bool:
    """Run ``renewal`` on ``loop`` from the background thread; a loop that is gone, or too busy to
    run it within ``timeout``, leaves the lease to run on (the claim is never held past it)."""
    if loop.is_closed():
        renewal.close()
        return False
    future = asyncio.run_coroutine_threadsafe(renewal, loop)
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:  # not yet the builtin TimeoutError before Python 3.11
        future.cancel()
        return True
