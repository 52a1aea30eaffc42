"""Blocking connections under :class:`~animedex_store.AsyncCacheRepository`, kept off its event loop.

* :class:`ThreadedConnections`: every call of a blocking connections object runs
  on a thread of the repository's own, one at a time (a caller's sync server
  ``Engine``), so nothing that can wait runs on the loop.
* :class:`SqliteFileConnections`: a SQLite file. Writes, batches and vacuum run
  on that thread, on the connection the sync open path made (busy timeout as
  configured: waiting for another process's write lock happens there). Reads
  run inline on the loop through a second connection whose busy timeout is
  zero: in WAL mode a read never waits for a writer, and a thread hop costs
  several times the read; if SQLite still reports busy (a file not in WAL, a
  recovery), that read goes to the thread instead.
* :class:`InlineConnections`: an in-memory database: every call inline first
  (no other connection can lock it), on a thread when it runs long.

**Never holding the loop.** What runs inline runs under a time bound that SQLite
itself enforces: a progress handler looks at the clock every
:data:`PROGRESS_STEPS` steps of SQLite's virtual machine and stops the statement
once it has run :data:`INLINE_STATEMENT_SECONDS`. A stopped read has changed
nothing, and a stopped write is rolled back by SQLite (an autocommit statement,
or a batch's whole transaction), so it runs again, to its end, on the thread;
and that statement (per compiled statement and kind of call) goes straight to
the thread from then on: the calls a table's size makes long (``stats``,
``count``, a page of ``keys`` sorted by size, a chunk of ``get_many``,
``purge_expired``, ``clear``, ``vacuum`` in memory) are found by measuring them,
not by their names. An inline call also never waits for the connection's lock:
while the thread holds it, the call queues on the thread.

A call that runs inline first yields to the loop once: a coroutine reading row
after row would otherwise never let the others (or a lease's renewal) run. And
the inline calls of one pass of the loop share a budget of time
(:data:`PASS_BUDGET_SECONDS`): once it is spent, the others wait for a later
pass. The loop runs its timers and I/O only between passes, and sixty-four
coroutines each reading once in the same pass would otherwise hold them back
for the sum of their reads. That state is kept per event loop
(:class:`~animedex_store.rules.loops.PerLoop`): the connections work from any
loop. Standard library only.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, cast

from ..core.blocking import run_blocking
from ..core.compiled import Compiled
from ..core.connections import AsyncConnections, BlockingConnections, Connections
from ..errors import DatabaseLockedError, StoreError, sqlite_result_code
from ..rules.loops import PerLoop
from .connection import SharedSqliteConnection
from .sqlite_file import connect

__all__ = [
    "ThreadedConnections",
    "SqliteFileConnections",
    "InlineConnections",
    "LoopPasses",
    "PASS_BUDGET_SECONDS",
    "INLINE_STATEMENT_SECONDS",
    "LONG_FOR_SECONDS",
    "PROGRESS_STEPS",
]

T = TypeVar("T")

#: How long inline calls may keep one pass of the event loop before the rest wait for a later pass.
PASS_BUDGET_SECONDS = 0.0005
#: How long one statement may run inline before SQLite stops it and it runs again on the thread.
#: With :data:`PASS_BUDGET_SECONDS`, no pass of the loop is held much past 1.5 ms.
INLINE_STATEMENT_SECONDS = 0.001
#: How long a statement the bound stopped goes straight to the thread, before it is tried inline again
#: (the table may have shrunk; a stop may have been a one-off: a cold cache, a schema reload).
LONG_FOR_SECONDS = 60.0
#: SQLite virtual-machine steps between two looks at the clock while a statement runs inline: about
#: 15 µs of a scan here, and a look costs 0.3 µs. SQLite counts a cached statement's steps across its
#: runs: a ``get`` (17 steps) looks once in about sixty runs.
PROGRESS_STEPS = 1_000
# SQLite's primary result code when a progress handler stopped a statement.
_SQLITE_INTERRUPT = 9


class LoopPasses:
    """Turns for inline calls on one loop: each pass of it runs them for :data:`PASS_BUDGET_SECONDS`."""

    def __init__(self) -> None:
        self._started: float | None = None  # when this pass's first inline call began
        self._waiting: deque[asyncio.Future[None]] = deque()

    async def turn(self) -> None:
        """Yield to the loop once, then wait for a pass whose budget is not spent."""
        await asyncio.sleep(0)  # the others' turn first
        while self._started is not None and time.perf_counter() - self._started > PASS_BUDGET_SECONDS:
            waiter = asyncio.get_running_loop().create_future()
            self._waiting.append(waiter)
            await waiter
        if self._started is None:
            self._started = time.perf_counter()
            asyncio.get_running_loop().call_soon(self._next_pass)

    def _next_pass(self) -> None:
        self._started = None
        waiting, self._waiting = self._waiting, deque()
        for waiter in waiting:
            if not waiter.done():  # a waiter cancelled since
                waiter.set_result(None)


def _no_state_to_drop(_passes: LoopPasses, _loop: asyncio.AbstractEventLoop) -> None:
    """A loop's passes hold nothing but futures of that loop."""


class _OnThread:
    """What :meth:`_InlineFirst._inline_first` returns when the call is to run on the thread."""


ON_THREAD = _OnThread()


class _Busy(Exception):
    """The connection's lock is held (by the thread): the call goes there instead of waiting."""


class _Deadline:
    """A ``sqlite3`` connection's progress handler: past ``deadline`` (a ``perf_counter`` time), SQLite
    stops the statement. Installed once; a call that runs inline sets the deadline, and a connection
    at rest has none (``inf``)."""

    __slots__ = ("deadline",)

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.deadline = math.inf
        connection.set_progress_handler(self.passed, PROGRESS_STEPS)

    def passed(self) -> bool:
        return time.perf_counter() > self.deadline


def _bounded(connection: SharedSqliteConnection, deadline: _Deadline, call: Callable[..., T], *args: Any) -> T:
    """``call(*args)``, a driver call of ``connection`` that takes no lock, inline under the time bound
    (see the module docstring); :class:`_Busy` instead of waiting for the connection's lock."""
    lock = connection.lock
    if not lock.acquire(blocking=False):
        raise _Busy
    deadline.deadline = time.perf_counter() + INLINE_STATEMENT_SECONDS
    try:
        return call(*args)
    finally:
        deadline.deadline = math.inf
        lock.release()


def _interrupted(error: StoreError) -> bool:
    """Whether ``error`` is SQLite stopping a statement at our progress handler's request."""
    return sqlite_result_code(error.__cause__) == _SQLITE_INTERRUPT if error.__cause__ is not None else False


class ThreadedConnections(AsyncConnections):
    """``blocking``'s calls on a thread of their own, one at a time."""

    def __init__(self, blocking: BlockingConnections) -> None:
        self.blocking = blocking
        self.target = blocking.target
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="animedex-store")
        self._thread_used = False  # the executor starts its thread on first use

    async def _on_thread(self, operation: Coroutine[Any, Any, T]) -> T:
        # A cancelled caller stops waiting; the call itself runs to its end on the thread all the
        # same (a batch commits whole, a claim's release happens), and the next call queues behind it.
        self._thread_used = True
        call = asyncio.get_running_loop().run_in_executor(self._thread, run_blocking, operation)
        return await asyncio.shield(call)

    async def fetchone(self, statement: Compiled, values: Sequence[Any]) -> Sequence[Any] | None:
        return await self._on_thread(self.blocking.fetchone(statement, values))

    async def fetchall(self, statement: Compiled, values: Sequence[Any]) -> list[Sequence[Any]]:
        return await self._on_thread(self.blocking.fetchall(statement, values))

    async def execute(self, statement: Compiled, values: Sequence[Any]) -> int:
        return await self._on_thread(self.blocking.execute(statement, values))

    async def executemany(self, statement: Compiled, rows: Sequence[Sequence[Any]]) -> int:
        return await self._on_thread(self.blocking.executemany(statement, rows))

    async def remove(self, statement: Compiled, values: Sequence[Any]) -> bool:
        return await self._on_thread(self.blocking.remove(statement, values))

    async def execute_once(self, statement: Compiled, values: Sequence[Any]) -> int:
        return await self._on_thread(self.blocking.execute_once(statement, values))

    async def vacuum(self) -> int | None:
        return await self._on_thread(self.blocking.vacuum())

    async def close(self) -> None:
        """Close the blocking connections on their thread (after any call still running), then the thread."""
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._thread, self.blocking.close)
        except RuntimeError:  # the thread was shut down already (closed before): nothing left to close
            pass
        finally:
            self._thread.shutdown(wait=False)

    def close_now(self) -> None:
        try:
            self._thread.submit(self.blocking.close)  # after any call still queued
        except RuntimeError:  # shut down already
            pass
        self._thread.shutdown(wait=False)


class _InlineFirst(ThreadedConnections):
    """Calls run inline on the loop under the time bound, else (stopped, or the lock busy) on the thread.

    What the bound stopped is remembered per kind of call (``_long``: kind -> statement -> until when)
    and goes straight to the thread meanwhile."""

    # SQLite never runs a statement twice: both are execute's, inline first like it.
    remove = Connections.remove
    execute_once = Connections.execute_once

    def __init__(self, blocking: BlockingConnections) -> None:
        super().__init__(blocking)
        self._passes: PerLoop[LoopPasses] = PerLoop(LoopPasses, _no_state_to_drop)
        self._long: dict[str, dict[object, float]] = {}

    async def _inline_first(
        self,
        kind: str,
        connection: SharedSqliteConnection,
        deadline: _Deadline,
        call: Callable[..., T],
        statement: object,
        *args: Any,
    ) -> T | _OnThread:
        """``call(*args)`` inline, else :data:`ON_THREAD` (the caller runs it there); ``statement``
        names the statement among those of its ``kind`` of call."""
        long = self._long.get(kind)
        until = None if long is None else long.get(statement)
        if until is None or until < time.monotonic():
            await self._passes.get().turn()
            try:
                return _bounded(connection, deadline, call, *args)
            except _Busy:
                pass
            except DatabaseLockedError:
                pass  # it would have had to wait: on the thread, with the busy timeout
            except StoreError as exc:
                if not _interrupted(exc):
                    raise
                self._long.setdefault(kind, {})[statement] = time.monotonic() + LONG_FOR_SECONDS
        return ON_THREAD


class SqliteFileConnections(_InlineFirst):
    """A SQLite file: writes on the thread, reads inline through a connection that never waits."""

    blocking: SharedSqliteConnection

    def __init__(self, writer: SharedSqliteConnection, *, timeout: float) -> None:
        super().__init__(writer)
        assert writer.path is not None
        # Set up waiting as long as the writer would (this runs on the thread that opens; with no
        # wait, a writer's lock of the moment failed the open: "database is locked"), then never.
        reader = connect(writer.path, timeout=timeout, create=False)
        try:
            # SQLite reads the schema on a connection's first statement: here, not under the bound.
            reader.execute("SELECT 1 FROM cache_rows LIMIT 0").fetchall()
            reader.execute("PRAGMA busy_timeout = 0")
        except BaseException:
            reader.close()
            raise
        self._reader = SharedSqliteConnection(reader, writer.target, reader.close, writer.path)
        self._deadline = _Deadline(reader)  # the reader runs inline only: its handler stays

    async def fetchone(self, statement: Compiled, values: Sequence[Any]) -> Sequence[Any] | None:
        reader = self._reader
        row = await self._inline_first(
            "one", reader, self._deadline, reader.unlocked_read_one, statement, statement, values
        )
        return await super().fetchone(statement, values) if row is ON_THREAD else cast("Sequence[Any] | None", row)

    async def fetchall(self, statement: Compiled, values: Sequence[Any]) -> list[Sequence[Any]]:
        reader = self._reader
        rows = await self._inline_first(
            "all", reader, self._deadline, reader.unlocked_read_all, statement, statement, values
        )
        return await super().fetchall(statement, values) if rows is ON_THREAD else cast("list[Sequence[Any]]", rows)

    async def close(self) -> None:
        self._reader.close()
        await super().close()

    def close_now(self) -> None:
        self._reader.close()
        super().close_now()


class InlineConnections(_InlineFirst):
    """An in-memory database (one ``sqlite3`` connection): every call inline first, on the thread when
    it runs long (with the progress handler off there: each look at the clock would wait for the GIL
    the loop holds, and slow the statement down by the loop's work)."""

    blocking: SharedSqliteConnection

    def __init__(self, blocking: SharedSqliteConnection) -> None:
        super().__init__(blocking)
        self._deadline = _Deadline(blocking.conn)

    async def _unbounded(self, call: Callable[..., T], *args: Any) -> T:
        """``call(*args)`` (a driver call that takes no lock) on the thread, the handler off meanwhile."""
        db, deadline = self.blocking, self._deadline

        def run() -> T:
            with db.lock:
                db.conn.set_progress_handler(None, 0)
                try:
                    return call(*args)
                finally:
                    db.conn.set_progress_handler(deadline.passed, PROGRESS_STEPS)

        self._thread_used = True
        return await asyncio.shield(asyncio.get_running_loop().run_in_executor(self._thread, run))

    async def _either(self, kind: str, call: Callable[..., T], statement: object, *args: Any) -> T:
        done = await self._inline_first(kind, self.blocking, self._deadline, call, statement, *args)
        return await self._unbounded(call, *args) if done is ON_THREAD else cast(T, done)

    async def fetchone(self, statement: Compiled, values: Sequence[Any]) -> Sequence[Any] | None:
        return await self._either("one", self.blocking.unlocked_read_one, statement, statement, values)

    async def fetchall(self, statement: Compiled, values: Sequence[Any]) -> list[Sequence[Any]]:
        return await self._either("all", self.blocking.unlocked_read_all, statement, statement, values)

    async def execute(self, statement: Compiled, values: Sequence[Any]) -> int:
        return await self._either("execute", self.blocking.unlocked_write, statement, statement, values)

    async def executemany(self, statement: Compiled, rows: Sequence[Sequence[Any]]) -> int:
        return await self._either("many", self.blocking.unlocked_write_many, statement, statement, rows)

    async def vacuum(self) -> int | None:
        return await self._either("vacuum", self.blocking.unlocked_compact, None)

    async def close(self) -> None:
        if self._thread_used:
            await super().close()
        else:
            self.close_now()

    def close_now(self) -> None:
        if self._thread_used:
            super().close_now()  # after whatever the thread still has to run
        else:  # the usual case (the pytest plugin's per-test copies): no thread started only to close
            self._thread.shutdown(wait=False)
            self.blocking.close()
