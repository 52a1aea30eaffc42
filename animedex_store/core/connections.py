"""How a repository reaches its database for each call: the interface every engine implements.

The SQLite implementation lives in :mod:`animedex_store.fastpath.connection`, the
server ones in :mod:`animedex_store.sql.servers`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NoReturn

from ..errors import StoreError
from .compiled import Compiled, StatementSet

__all__ = ["Connections", "ClosedConnections", "Database"]


class Connections:
    """Run compiled statements: ``fetchone``/``fetchall`` read, ``execute``/``executemany`` commit.

    ``target`` names the database in messages (file path, or URL with the password masked).
    """

    target: str

    def fetchone(self, statement: Compiled, values: Sequence[Any]) -> Sequence[Any] | None:
        raise NotImplementedError

    def fetchall(self, statement: Compiled, values: Sequence[Any]) -> list[Sequence[Any]]:
        raise NotImplementedError

    def execute(self, statement: Compiled, values: Sequence[Any]) -> int:
        raise NotImplementedError

    def executemany(self, statement: Compiled, rows: Sequence[Sequence[Any]]) -> int:
        raise NotImplementedError

    def vacuum(self) -> int | None:
        """Give deleted rows' space back: bytes reclaimed, or ``None`` where the engine cannot tell."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the connection(s) and whatever was opened for them (an engine we created)."""
        raise NotImplementedError


class ClosedConnections(Connections):
    """What a closed repository holds: every call raises a clear error."""

    def __init__(self, target: str) -> None:
        self.target = target

    def _refuse(self) -> NoReturn:
        raise StoreError(f"the repository on {self.target} is closed", target=self.target)

    def fetchone(self, statement: Compiled, values: Sequence[Any]) -> Sequence[Any] | None:
        self._refuse()

    def fetchall(self, statement: Compiled, values: Sequence[Any]) -> list[Sequence[Any]]:
        self._refuse()

    def execute(self, statement: Compiled, values: Sequence[Any]) -> int:
        self._refuse()

    def executemany(self, statement: Compiled, rows: Sequence[Sequence[Any]]) -> int:
        self._refuse()

    def vacuum(self) -> int | None:
        self._refuse()

    def close(self) -> None:
        pass


#: What a repository runs on: its connections, and its statements compiled for them (the
#: frozen module :mod:`animedex_store.fastpath.statements`, or a
#: :class:`animedex_store.sql.statements.Statements`).
Database = tuple[Connections, StatementSet]
