"""A read-only look at a store, for ``animedex-store info``: where it is, its schema state, its rows.

It never creates, migrates or writes. A SQLite file that does not exist is
reported missing (and not created); a database behind this package reports
its revision and what opening it would do; a seed file reports the revision it
would be adopted at. Only what cannot be read (not a database, tables we don't
know, an unreachable server) raises a :class:`StoreError`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Connection, inspect
from sqlalchemy.exc import SQLAlchemyError

from ..errors import SchemaTooNewError, store_error
from ..fastpath.targets import Target
from ..migrations.adoption import adopt_legacy
from ..migrations.opening import read_revision_fast
from ..migrations.revisions import HEAD_REVISION
from ..sql.engine import open_engine
from ..sql.models import CacheRow
from ..sql.statements import row_totals

__all__ = ["StoreInfo", "describe_store", "STATES"]

#: What ``StoreInfo.state`` can be, and what each means to a user.
STATES = {
    "missing": "no database at this path yet; opening it will create one",
    "empty": "no tables yet; opening it will create the schema",
    "legacy": "written by the seed module (no alembic_version); opening it adopts and upgrades it",
    "behind": "older than this package; opening it (or `upgrade`) migrates it",
    "current": "at this package's head revision",
    "newer": "written by a newer animedex-store; upgrade the package to open it",
}


@dataclass(frozen=True)
class StoreInfo:
    """What :func:`describe_store` found. Row counts are ``None`` when there is no ``cache_rows`` table."""

    target: str  # the file path, or the URL with its password masked
    path: str | None  # the SQLite file; None for in-memory and servers
    exists: bool
    state: str  # a key of STATES
    revision: str | None  # alembic_version; for a seed file, the revision it would be adopted at
    head: str
    rows: int | None = None
    expired_rows: int | None = None
    payload_bytes: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, with ``state_help`` spelling out the state."""
        return {**asdict(self), "state_help": STATES[self.state]}


def describe_store(target: Target = None, *, now: int | None = None) -> StoreInfo:
    """Inspect ``target`` (as ``CacheRepository`` resolves it) without changing it.

    ``now`` (epoch seconds, default the system time) decides which rows count as expired.
    """
    try:
        store = open_engine(target, create=False)  # sets per-connection pragmas; creates nothing
    except FileNotFoundError as missing:
        name = str(missing.filename)
        return StoreInfo(name, name, exists=False, state="missing", revision=None, head=HEAD_REVISION)
    try:
        fast = read_revision_fast(store.engine)
        with store.engine.connect() as connection:
            state, revision = (
                ("current", fast) if fast == HEAD_REVISION else _schema_state(connection, store.target, fast)
            )
            counts = _count_rows(connection, int(time.time()) if now is None else now)
    except (SQLAlchemyError, store.engine.dialect.loaded_dbapi.Error) as exc:
        raise store_error(exc, store.target) from exc
    finally:
        store.dispose()
    path = str(store.path) if store.path else None
    return StoreInfo(store.target, path, exists=True, state=state, revision=revision, head=HEAD_REVISION, **counts)


def _schema_state(connection: Connection, target: str, fast_revision: str | None) -> tuple[str, str | None]:
    """``(state, revision)`` of a database not at head, classified as opening it would (dry run)."""
    try:
        seed_revision = adopt_legacy(connection, target, dry_run=True)
    except SchemaTooNewError:
        return "newer", fast_revision
    if seed_revision is not None:
        return "legacy", seed_revision
    if not inspect(connection).get_table_names():
        return "empty", None
    return "behind", fast_revision


def _count_rows(connection: Connection, now: int) -> dict[str, int | None]:
    """Rows, expired rows (``expires_at <= now``) and payload bytes; all ``None`` without a table."""
    if not inspect(connection).has_table(CacheRow.__tablename__):
        return {"rows": None, "expired_rows": None, "payload_bytes": None}
    total, expired, size = connection.execute(row_totals(now)).one()
    return {"rows": int(total), "expired_rows": int(expired), "payload_bytes": int(size)}
