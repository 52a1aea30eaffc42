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

from collections.abc import Sequence
from typing import Any, NoReturn

from ..errors import StoreError
from .compiled import Compiled, StatementSet

__all__ = ["Connections", "BlockingConnections", "AsyncConnections", "ClosedConnections", "Database"]


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

    async def vacuum(self) -> int | None:
        """Give deleted rows' space back: bytes reclaimed, or ``None`` where the engine cannot tell."""
        raise NotImplementedError


class BlockingConnections(Connections):
    """Connections whose coroutines never suspend: each runs its driver call to the end on the
    calling thread (:func:`animedex_store.core.blocking.run_blocking` takes the result)."""

    def close(self) -> None:
        """Release the connection(s) and whatever was opened for them (an engine we created)."""
        raise NotImplementedError


class AsyncConnections(Connections):
    """Connections that await (a thread, or a native async driver); closing awaits too."""

    async def close(self) -> None:
        """Release the connection(s) and whatever was opened for them."""
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
