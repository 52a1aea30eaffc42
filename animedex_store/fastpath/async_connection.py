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
* :class:`InlineConnections`: an in-memory database, every call inline: no
  other connection can lock it, so nothing waits.

A call that runs inline first yields to the loop once: a coroutine reading row
after row would otherwise never let the others (or a lease's renewal) run. And
the inline calls of one pass of the loop share a budget of time
(:data:`PASS_BUDGET_SECONDS`): once it is spent, the others wait for a later
pass. The loop runs its timers and I/O only between passes, and sixty-four
coroutines each reading once in the same pass would otherwise hold them back
for the sum of their reads. Standard library only.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ..core.blocking import run_blocking
from ..core.compiled import Compiled
from ..core.connections import AsyncConnections, BlockingConnections
from ..errors import DatabaseLockedError
from .connection import SharedSqliteConnection
from .sqlite_file import connect

__all__ = ["ThreadedConnections", "SqliteFileConnections", "InlineConnections"]

T = TypeVar("T")

#: How long inline calls may keep one pass of the event loop before the rest wait for a later pass.
PASS_BUDGET_SECONDS = 0.0005


class LoopPasses:
    """Turns for inline calls: each pass of the event loop runs them for :data:`PASS_BUDGET_SECONDS`."""

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


class ThreadedConnections(AsyncConnections):
    """``blocking``'s calls on a thread of their own, one at a time."""

    def __init__(self, blocking: BlockingConnections) -> None:
        self.blocking = blocking
        self.target = blocking.target
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="animedex-store")

    async def _on_thread(self, operation: Coroutine[Any, Any, T]) -> T:
        # A cancelled caller stops waiting; the call itself runs to its end on the thread all the
        # same (a batch commits whole, a claim's release happens), and the next call queues behind it.
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

    async def vacuum(self) -> int | None:
        return await self._on_thread(self.blocking.vacuum())

    async def close(self) -> None:
        """Close the blocking connections on their thread (after any call still running), then the thread."""
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._thread, self.blocking.close)
        finally:
            self._thread.shutdown(wait=False)


class SqliteFileConnections(ThreadedConnections):
    """A SQLite file: writes on the thread, reads inline through a connection that never waits."""

    blocking: SharedSqliteConnection

    def __init__(self, writer: SharedSqliteConnection) -> None:
        super().__init__(writer)
        assert writer.path is not None
        reader = connect(writer.path, timeout=0, create=False)
        self._passes = LoopPasses()
        self._reader = SharedSqliteConnection(reader, writer.target, reader.close, writer.path)

    async def fetchone(self, statement: Compiled, values: Sequence[Any]) -> Sequence[Any] | None:
        await self._passes.turn()
        try:
            return self._reader.read_one(statement, values)
        except DatabaseLockedError:  # it would have had to wait: on the thread, with the busy timeout
            return await super().fetchone(statement, values)

    async def fetchall(self, statement: Compiled, values: Sequence[Any]) -> list[Sequence[Any]]:
        await self._passes.turn()
        try:
            return self._reader.read_all(statement, values)
        except DatabaseLockedError:
            return await super().fetchall(statement, values)

    async def close(self) -> None:
        self._reader.close()
        await super().close()


class InlineConnections(AsyncConnections):
    """``blocking``'s calls inline on the loop (an in-memory database), each after one yield to it."""

    def __init__(self, blocking: BlockingConnections) -> None:
        self.blocking = blocking
        self.target = blocking.target
        self._passes = LoopPasses()

    async def fetchone(self, statement: Compiled, values: Sequence[Any]) -> Sequence[Any] | None:
        await self._passes.turn()
        return await self.blocking.fetchone(statement, values)

    async def fetchall(self, statement: Compiled, values: Sequence[Any]) -> list[Sequence[Any]]:
        await self._passes.turn()
        return await self.blocking.fetchall(statement, values)

    async def execute(self, statement: Compiled, values: Sequence[Any]) -> int:
        await self._passes.turn()
        return await self.blocking.execute(statement, values)

    async def executemany(self, statement: Compiled, rows: Sequence[Sequence[Any]]) -> int:
        await self._passes.turn()
        return await self.blocking.executemany(statement, rows)

    async def vacuum(self) -> int | None:
        await self._passes.turn()
        return await self.blocking.vacuum()

    async def close(self) -> None:
        self.blocking.close()
