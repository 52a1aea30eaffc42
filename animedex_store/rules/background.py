"""A repository's background thread: what must happen on time while its callers do something else.

One thread per repository, started on first need and stopped when the
repository closes (or is collected), runs timed callbacks:

* the lease renewals of ``get_or_fetch`` calls whose ``fetch()`` is under way
  (:mod:`animedex_store.rules.flight`): from here, not from the caller's thread
  or event loop, so nothing the caller does (a ``fetch`` that blocks its loop)
  can starve them, and a finished fetch never waits for a renewal in progress;
* closing server connections that sat idle too long
  (:data:`animedex_store.sql.servers.IDLE_CONNECTION_SECONDS`), for
  :class:`~animedex_store.CacheRepository` (an async repository's connections
  belong to their event loop, which times them itself).

A callback runs on the thread; an async repository's renewal runs its coroutine
to the end on an event loop of the thread's own (:meth:`Background.run_async`),
whose connections it keeps between renewals. Standard library only; ``asyncio``
is imported when an async repository first asks.
"""

from __future__ import annotations

import heapq
import itertools
import os
import threading
import time
import weakref
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import asyncio

__all__ = ["Background", "Timer"]

T = TypeVar("T")


class Timer:
    """A callback due at a time; :meth:`cancel` stops it (never waits for a run in progress)."""

    __slots__ = ("callback", "interval", "cancelled")

    def __init__(self, callback: Callable[[], object], interval: float | None) -> None:
        self.callback = callback
        self.interval = interval  # None: once; else again that many seconds after each run
        self.cancelled = False

    def cancel(self) -> None:
        """No further run; one already running finishes on its own."""
        self.cancelled = True
        # It stays in the queue until it would have been due: what the callback refers to (a fetch's
        # flight, its repository's connections) must not stay alive as long.
        self.callback = _nothing


def _nothing() -> None:
    """What a cancelled timer would run."""


class Background:
    """A thread running timed callbacks for one repository (see the module docstring).

    After ``os.fork`` the child has no such thread: the next callback asked for
    there starts one of its own, with nothing of the parent's pending."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._order = itertools.count()  # ties in time run in the order they were asked for
        self._stopped = False
        self._forget()
        _EVERY.add(self)

    def _forget(self) -> None:
        """No thread, nothing due (new, or in a child process after ``os.fork``)."""
        self._wake = threading.Condition(threading.Lock())  # the parent's may have been held at the fork
        self._due: list[tuple[float, int, Timer]] = []
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the thread's own, made on first run_async

    def call_later(self, seconds: float, callback: Callable[[], object]) -> Timer:
        """Run ``callback()`` on the thread in ``seconds``; thread-safe."""
        return self._add(Timer(callback, None), seconds)

    def every(self, seconds: float, callback: Callable[[], object]) -> Timer:
        """Run ``callback()`` every ``seconds`` until cancelled or it returns ``False``."""
        return self._add(Timer(callback, seconds), seconds)

    def _add(self, timer: Timer, seconds: float) -> Timer:
        with self._wake:
            if self._stopped:
                timer.cancel()  # a closed repository schedules nothing
                return timer
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            heapq.heappush(self._due, (time.monotonic() + seconds, next(self._order), timer))
            self._wake.notify()
        return timer

    def stop(self) -> None:
        """Stop the thread after the callback it runs, if any; pending ones never run. Never waits."""
        with self._wake:
            self._stopped = True
            self._due.clear()
            self._wake.notify()

    def run_async(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` to its end on this thread's own event loop (only from a callback). The
        loop runs only then: what is timed on it (closing idle connections) is timed here
        (:func:`~animedex_store.rules.loops.runs_now_and_then`)."""
        if self._loop is None:
            import asyncio

            from .loops import runs_now_and_then

            self._loop = asyncio.new_event_loop()
            runs_now_and_then(self._loop, self._later_on_loop)
        return self._loop.run_until_complete(coroutine)

    def _later_on_loop(self, seconds: float, callback: Callable[[], object]) -> Timer:
        return self.call_later(seconds, lambda: self.run_async(_then_one_pass(callback)))

    def _run(self) -> None:
        try:
            while True:
                timer = self._next()
                if timer is None:
                    return
                try:
                    again = timer.callback()
                except Exception:  # a callback's own failures are its to report; this one was not
                    import logging

                    logging.getLogger(__name__).exception("%s: a background task failed", self._name)
                    again = False
                if timer.interval is not None and again is not False and not timer.cancelled:
                    with self._wake:
                        if not self._stopped:
                            heapq.heappush(self._due, (time.monotonic() + timer.interval, next(self._order), timer))
        finally:
            self._close_loop()

    def _next(self) -> Timer | None:
        """The next timer due, waiting for it; ``None`` once stopped."""
        with self._wake:
            while not self._stopped:
                if self._due:
                    when, _order, timer = self._due[0]
                    wait = when - time.monotonic()
                    if timer.cancelled:
                        heapq.heappop(self._due)
                        continue
                    if wait <= 0:
                        heapq.heappop(self._due)
                        return timer
                    self._wake.wait(wait)
                else:
                    self._wake.wait()
            return None

    def _close_loop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return
        # What was handed to the loop from other threads (connections dropped at close) runs first.
        loop.run_until_complete(_one_pass())
        loop.close()


_EVERY: weakref.WeakSet[Background] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for background in list(_EVERY):
        background._forget()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)


async def _then_one_pass(callback: Callable[[], object]) -> None:
    """``callback()`` on the loop, then one pass of it (what the callback handed the loop runs too)."""
    callback()
    await _one_pass()


async def _one_pass() -> None:
    """Let a loop run the callbacks already scheduled on it."""
    import asyncio

    await asyncio.sleep(0)
