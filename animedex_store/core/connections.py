"""How a repository reaches its database for each call: the interface every engine implements.

Each method is a coroutine, because every operation is written once and awaits
them (:mod:`animedex_store.rules.operations`). The blocking implementations,
which :class:`~animedex_store.CacheRepository` runs on, never suspend: the SQLite
one in :mod:`animedex_store.fastpath.connection`, the server ones in
:mod:`animedex_store.sql.servers`. The asynchronous ones, under
:class:`~animedex_store.AsyncCacheRepository`, await a thread of their own or a
native async driver: :mod:`animedex_store.fastpath.async_connection`,
:mod:`animedex_store.sql.async_drivers`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from ..errors import StoreError
from .compiled import Compiled, StatementSet

__all__ = ["Connections", "BlockingConnections", "AsyncConnections", "ClosedConnections", "Database", "Schedule"]

#: ``schedule(seconds, callback)``: have ``callback()`` run that much later, on the repository's
#: background thread (see :mod:`animedex_store.rules.background`).
Schedule = Callable[[float, Callable[[], object]], object]


class Connections:
    """Run compiled statements: ``fetchone``/``fetchall`` read, ``execute``/``executemany`` commit
    (a batch in one transaction: all of it or none).

    ``target`` names the database in messages (file path, or URL with the password masked).
    """

    target: str

    async def fetchone(self, statement: Compiled, values: Sequence[Any]) -> Sequence[Any] | None:
        raise NotImplementedError

    async def fetchall(self, statement: Compiled, values: Sequence[Any]) -> list[Sequence[Any]]:
        raise NotImplementedError

    async def execute(self, statement: Compiled, values: Sequence[Any]) -> int:
        raise NotImplementedError

    async def executemany(self, statement: Compiled, rows: Sequence[Sequence[Any]]) -> int:
        raise NotImplementedError

    async def remove(self, statement: Compiled, values: Sequence[Any]) -> bool:
        """Run a ``DELETE`` of one row: whether the row is gone because of this call.

        Where a statement can run twice (a server statement whose reply was lost
        with its connection runs again on a fresh one), the second run finds the
        row gone, and the answer is ``True``: the first run deleted it, or
        another caller did in between, which nobody can tell apart.
        """
        return await self.execute(statement, values) > 0

    async def execute_once(self, statement: Compiled, values: Sequence[Any]) -> int:
        """:meth:`execute` for a statement whose second run would not have the effect of one (a
        compare-and-swap, an insert only where no row is): never run twice.

        Where a statement can run twice (a server statement whose reply was lost with its connection
        runs again on a fresh one), this one is not run again: the call raises
        :class:`~animedex_store.errors.ConnectionFailedError`, and whether the write took effect is then
        unknown (it took effect once, or not at all). A held connection the server dropped while it
        sat idle is found out first (one round trip), so that case is not a failure.
        """
        return await self.execute(statement, values)

    async def vacuum(self) -> int | None:
        """Give deleted rows' space back: bytes reclaimed, or ``None`` where the engine cannot tell."""
        raise NotImplementedError

    def close_now(self) -> None:
        """Release the connection(s) without awaiting anything, from any thread (what a repository's
        finalizer runs): what belongs to an event loop that is gone is closed without it."""
        raise NotImplementedError


class BlockingConnections(Connections):
    """Connections whose coroutines never suspend: each runs its driver call to the end on the
    calling thread (:func:`animedex_store.core.blocking.run_blocking` takes the result)."""

    def close(self) -> None:
        """Release the connection(s) and whatever was opened for them (an engine we created)."""
        raise NotImplementedError

    def close_now(self) -> None:
        self.close()  # it awaits nothing

    def schedule_with(self, schedule: Schedule) -> None:
        """Hand over the repository's background thread, for what must happen while nobody calls
        (held server connections close once idle long enough). Nothing, by default."""


class AsyncConnections(Connections):
    """Connections that await (a thread, or a native async driver); closing awaits too.

    Usable from any event loop (what belongs to a loop is kept per loop), unless
    ``any_loop`` is ``False`` (a caller's pooled ``AsyncEngine``).
    """

    any_loop = True

    async def close(self) -> None:
        """Release the connection(s) and whatever was opened for them; on the calling loop, what
        belongs to it is closed and awaited."""
        raise NotImplementedError


class ClosedConnections(BlockingConnections):
    """What a closed repository holds: every call raises a clear error."""

    def __init__(self, target: str) -> None:
        self.target = target

    def refuse(self) -> NoReturn:
        """Raise the :class:`StoreError` of a call on a closed repository."""
        raise StoreError(f"the repository on {self.target} is closed", target=self.target)

    async def fetchone(self, statement: Compiled, values: Sequence[Any]) -> Sequence[Any] | None:
        self.refuse()

    async def fetchall(self, statement: Compiled, values: Sequence[Any]) -> list[Sequence[Any]]:
        self.refuse()

    async def execute(self, statement: Compiled, values: Sequence[Any]) -> int:
        self.refuse()

    async def executemany(self, statement: Compiled, rows: Sequence[Sequence[Any]]) -> int:
        self.refuse()

    async def vacuum(self) -> int | None:
        self.refuse()

    def close(self) -> None:
        pass


#: What a blocking repository runs on: its connections, and its statements compiled for them (the
#: frozen module :mod:`animedex_store.fastpath.statements`, or a
#: :class:`animedex_store.sql.statements.Statements`).
Database = tuple[BlockingConnections, StatementSet]
