"""State that belongs to one event loop, kept per loop so a repository works from any loop.

An asyncio object belongs to the loop it was made on: a driver's connection
(its transport is registered with that loop's selector), a ``Semaphore`` or
``Lock`` waited on there, a task, a future. An async repository is used from
whichever loop calls it: a new loop after ``asyncio.run()`` ended, a new loop
per test, loops in several threads at once. So everything of that kind is made
per loop, on first use from that loop, by :class:`PerLoop`; and when a loop is
gone (closed), what it held is dropped without awaiting anything on it
(:func:`call_on` says when that is still possible).

Imports ``asyncio``: only the async side loads this module.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from asyncio import get_running_loop
from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["PerLoop", "LoopLock", "call_on", "same_process", "schedule_on", "runs_now_and_then"]

T = TypeVar("T")
Loop = asyncio.AbstractEventLoop
#: ``schedule(seconds, callback)``: run ``callback()`` on a loop that much later.
Schedule = Callable[[float, Callable[[], object]], object]
_occasional: weakref.WeakKeyDictionary[Loop, Schedule] = weakref.WeakKeyDictionary()


def schedule_on(loop: Loop) -> Schedule:
    """How to have ``callback()`` run on ``loop`` in ``seconds``: the loop's own timers, or, for a loop
    that runs only now and then (:func:`runs_now_and_then`), its thread's scheduler."""
    return _occasional.get(loop) or loop.call_later


def runs_now_and_then(loop: Loop, schedule: Schedule) -> None:
    """``loop`` runs only when its thread has something for it (a background thread's, one lease
    renewal at a time): its timers would not fire on time, so :func:`schedule_on` gives ``schedule``."""
    _occasional[loop] = schedule


class PerLoop(Generic[T]):
    """One ``T`` per event loop that asks for it: ``make()`` builds it on that loop, ``drop(state, loop)``
    releases it without awaiting (the loop may be closed, or running in another thread).

    States of loops that closed since are dropped whenever a new loop asks; the
    rest when :meth:`drop_all` runs (the repository closes, or is collected).
    """

    def __init__(self, make: Callable[[], T], drop: Callable[[T, Loop], None]) -> None:
        self._make = make
        self._drop = drop
        self._states: dict[Loop, T] = {}
        self._lock = threading.Lock()
        # (loop, state) of the last ask, in one attribute: a thread reading it sees one pair, never
        # one thread's loop with another's state.
        self._last: tuple[Loop | None, T | None] = (None, None)

    def get(self) -> T:
        """The running loop's state, made on its first ask."""
        loop = get_running_loop()
        last_loop, last = self._last
        if last_loop is loop:
            return last  # type: ignore[return-value]  # set together with its loop
        state = self._states.get(loop)
        if state is None:
            state = self._new(loop)
        self._last = (loop, state)
        return state

    def current(self) -> T | None:
        """The running loop's state if it made one; ``None`` otherwise (or outside a loop)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        return self._states.get(loop)

    def _new(self, loop: Loop) -> T:
        with self._lock:
            dead = [(old, state) for old, state in self._states.items() if old.is_closed()]
            for old, _state in dead:
                del self._states[old]
            state = self._states.get(loop)
            if state is None:
                state = self._states[loop] = self._make()
        for old, old_state in dead:
            self._drop(old_state, old)
        return state

    def states(self) -> list[T]:
        """Every loop's state, as it is now."""
        return list(self._states.values())

    def drop_all(self) -> None:
        """Drop every loop's state (see the class docstring); later asks make new ones."""
        with self._lock:
            states, self._states = self._states, {}
            self._last = (None, None)
        for loop, state in states.items():
            self._drop(state, loop)


def call_on(loop: Loop, callback: Callable[[], Any]) -> bool:
    """Run ``callback`` on ``loop``: now when it is this thread's running loop, else as soon as the
    loop runs (thread-safe). ``False`` when the loop is closed: nothing will ever run there, so the
    caller releases what it holds without it."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        callback()
        return True
    try:
        loop.call_soon_threadsafe(callback)
    except RuntimeError:  # closed
        return False
    return True


def same_process(pid: int) -> bool:
    """Whether this is still the process ``pid`` (after ``os.fork`` the child inherits objects whose
    sockets are the parent's: it must neither use nor close them, only forget them)."""
    return os.getpid() == pid


class LoopLock:
    """A lock for async code on any loop: an ``asyncio.Lock`` per loop (one loop's coroutines exclude
    each other; loops in other threads have their own). ``async with lock: ...``"""

    def __init__(self) -> None:
        self._locks: PerLoop[asyncio.Lock] = PerLoop(asyncio.Lock, _nothing_to_drop)

    async def __aenter__(self) -> None:
        await self._locks.get().acquire()

    async def __aexit__(self, *_exc_info: object) -> None:
        self._locks.get().release()


def _nothing_to_drop(_state: object, _loop: Loop) -> None:
    """A state that holds nothing of its loop's but itself."""
