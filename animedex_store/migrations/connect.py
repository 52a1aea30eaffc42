"""How a repository opens its target: the one place both repository classes call.

* :func:`open_blocking` (:class:`~animedex_store.CacheRepository`): the fast path
  (:mod:`animedex_store.fastpath.opening`: an up-to-date SQLite file with
  ``sqlite3`` alone), else the slow path (:mod:`.opening`: SQLAlchemy, the
  migration lock, Alembic when behind).
* :func:`open_async` (:class:`~animedex_store.AsyncCacheRepository`, on a thread
  of its own, off every event loop): the same for SQLite and a caller's sync
  ``Engine``, wrapped to run off the loop
  (:mod:`animedex_store.fastpath.async_connection`); a server URL through its
  native async driver (:func:`.opening.open_server_async`). Its result works
  from any event loop. A caller's ``AsyncEngine`` opens on the caller's loop
  instead (:func:`open_async_engine`): its pool belongs there.

Whatever fails part way closes what it had opened. Standard library only at
import: the heavy modules load when a path needs them.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, cast

from ..core.compiled import StatementSet
from ..core.connections import AsyncConnections, Database
from ..fastpath.connection import SharedSqliteConnection
from ..fastpath.opening import Resolved, open_database
from ..fastpath.targets import Target, resolve_target
from .revisions import HEAD_REVISION

if TYPE_CHECKING:
    from sqlalchemy.engine import URL
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["open_blocking", "open_async", "open_async_engine", "async_engine"]


def open_blocking(target: Target, *, migrate: bool, timeout: float) -> Database:
    """A blocking repository's database on ``target``, at head unless ``migrate=False``."""
    return open_database(target, migrate=migrate, timeout=timeout, head=HEAD_REVISION, slow_path=_slow_path)


def _slow_path(target: Resolved, *, migrate: bool, timeout: float) -> Database:
    """What the fast path hands everything else to: SQLAlchemy and Alembic load here, when it is taken."""
    from .opening import open_migrated

    return open_migrated(target, migrate=migrate, timeout=timeout)


def open_async(
    target: Target, *, migrate: bool, timeout: float, max_connections: int
) -> tuple[AsyncConnections, StatementSet]:
    """An async repository's connections on ``target`` (anything but an ``AsyncEngine``) and their
    statements, at head unless ``migrate=False``. Blocking: call it on a thread."""
    from ..fastpath.async_connection import InlineConnections, SqliteFileConnections, ThreadedConnections

    resolved = resolve_target(target)
    if hasattr(resolved, "get_backend_name") and resolved.get_backend_name() != "sqlite":
        from .opening import open_server_async

        url = cast("URL", resolved)  # a Path or an Engine has no backend name
        return open_server_async(url, migrate=migrate, max_connections=max_connections)
    blocking, statements = open_blocking(resolved, migrate=migrate, timeout=timeout)
    if not isinstance(blocking, SharedSqliteConnection):
        return ThreadedConnections(blocking), statements  # a caller's sync server Engine
    if blocking.path is None:
        return InlineConnections(blocking), statements  # in memory: nothing else can lock it
    try:
        return SqliteFileConnections(blocking, timeout=timeout), statements
    except BaseException:
        blocking.close()
        raise


async def open_async_engine(
    engine: AsyncEngine, *, migrate: bool, max_connections: int
) -> tuple[AsyncConnections, StatementSet]:
    """:func:`open_async` for a caller's ``AsyncEngine``, on the caller's event loop."""
    from .opening import open_engine_async

    return await open_engine_async(engine, migrate=migrate, max_connections=max_connections)


def async_engine(target: object) -> Any:
    """``target`` if it is an ``AsyncEngine`` (whose module its holder has already imported), else ``None``."""
    module = sys.modules.get("sqlalchemy.ext.asyncio")
    return target if module is not None and isinstance(target, module.AsyncEngine) else None
