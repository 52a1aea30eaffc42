"""Exceptions raised by animedex-store.

Every storage problem is a :class:`StoreError` whose message names the target:
the SQLite file, or the database URL with its password masked.

Standard library only: SQLite errors are translated by their result codes, and
server-driver and SQLAlchemy errors by class names, so the SQLite fast path
never imports SQLAlchemy or a driver just to translate an error.
"""

from __future__ import annotations

__all__ = [
    "StoreError",
    "NotADatabaseError",
    "CorruptDatabaseError",
    "ReadOnlyError",
    "DiskFullError",
    "DatabaseLockedError",
    "ConnectionFailedError",
    "UnstorableValueError",
    "SchemaTooNewError",
    "UnknownSchemaError",
    "SchemaBehindError",
    "MigrationError",
    "FetchTimeoutError",
    "EventLoopError",
    "is_deadlock",
    "driver_message",
    "store_error",
]


class StoreError(Exception):
    """Base class of every storage error; ``target`` is the file or masked URL."""

    def __init__(self, message: str, *, target: str | None = None) -> None:
        super().__init__(message)
        self.target = target


class NotADatabaseError(StoreError):
    """The file exists but is not a SQLite database; it was not modified."""


class CorruptDatabaseError(StoreError):
    """SQLite reports the database image as malformed."""


class ReadOnlyError(StoreError):
    """A write was refused because the file, its directory or the server is read-only."""


class DiskFullError(StoreError):
    """The disk (or the database's page limit) is full; earlier rows are intact."""


class DatabaseLockedError(StoreError):
    """Another connection held the lock longer than the configured timeout."""


class UnstorableValueError(StoreError, ValueError):
    """The engine refused a value (PostgreSQL text cannot hold NUL); nothing was written."""


class ConnectionFailedError(StoreError):
    """The database server could not be reached."""


class SchemaTooNewError(StoreError):
    """The database was migrated by a newer animedex-store; upgrade the package."""


class UnknownSchemaError(StoreError):
    """The database holds tables this package did not create; nothing was touched."""


class SchemaBehindError(StoreError):
    """The schema is older than this package and ``migrate=False`` forbids upgrading it."""


class MigrationError(StoreError):
    """Bringing the schema to this package's head revision failed; the message says which case:

    * SQLite and PostgreSQL: the migration ran in one transaction, which was rolled
      back, so the schema and the data are as they were before;
    * MariaDB/MySQL: each DDL statement commits on its own, so a migration that stopped
      part way keeps the steps it finished (every revision is written to be run again)
      and the next open resumes it; no row is lost;
    * timed out waiting for another process's migration (MariaDB/MySQL ``GET_LOCK``):
      this process changed nothing.
    """


class FetchTimeoutError(StoreError):
    """``get_or_fetch`` waited ``wait_seconds`` for another caller's fetch of a key and gave up.

    ``backend`` and ``signature`` name the key; nothing was fetched or stored by this call.
    """

    def __init__(self, message: str, *, target: str | None = None, backend: str, signature: str) -> None:
        super().__init__(message, target=target)
        self.backend = backend
        self.signature = signature


class EventLoopError(StoreError):
    """Something that belongs to one event loop was used from another: a caller's ``AsyncEngine``
    whose pooled connection was made on a different loop. The message says what to do."""


# Primary SQLite result codes (sqlite3 exposes them as ``sqlite_errorcode``).
_SQLITE_ERRORS: dict[int, tuple[type[StoreError], str]] = {
    5: (DatabaseLockedError, "{target} stayed locked by another connection past the timeout"),
    6: (DatabaseLockedError, "{target} stayed locked by another connection past the timeout"),
    8: (ReadOnlyError, "{target} is read-only (check the permissions of the file and its directory)"),
    11: (CorruptDatabaseError, "{target} is corrupt; move it aside and a new cache will be created"),
    13: (DiskFullError, "the disk holding {target} is full; earlier rows are intact"),
    14: (StoreError, "cannot open {target} (check that its directory exists and is writable)"),
    26: (NotADatabaseError, "{target} is not a SQLite database; it was left untouched"),
}
# Python < 3.11 has no ``sqlite_errorcode``: the same codes by SQLite's own message,
# and SQLITE_ERROR (SQL error or missing table, as 3.11 reports it) for any other.
_SQLITE_GENERIC_ERROR = 1
_SQLITE_MESSAGES = (
    ("interrupted", 9),
    ("database is locked", 5),
    ("database table is locked", 6),
    ("database schema is locked", 6),
    ("attempt to write a readonly database", 8),
    ("database disk image is malformed", 11),
    ("malformed database schema", 11),
    ("database or disk is full", 13),
    ("unable to open database file", 14),
    ("file is not a database", 26),
)


def sqlite_result_code(exc: BaseException) -> int | None:
    """SQLite's primary result code of a ``sqlite3`` error (else ``None``), on every Python."""
    extended: int | None = getattr(exc, "sqlite_errorcode", None)
    if extended is not None:
        return extended & 0xFF
    if type(exc).__module__ != "sqlite3":
        return None
    message = str(exc)
    return next((code for prefix, code in _SQLITE_MESSAGES if message.startswith(prefix)), _SQLITE_GENERIC_ERROR)


# Server lock conflicts. A deadlock victim's transaction was rolled back whole, so
# the caller may simply run it again; a lock wait timeout already waited.
_DEADLOCK_SQLSTATES = frozenset({"40P01", "40001"})  # PostgreSQL: deadlock_detected, serialization_failure
_DEADLOCK_MYSQL_CODES = frozenset({1213})  # ER_LOCK_DEADLOCK
_LOCK_TIMEOUT_SQLSTATES = frozenset({"55P03"})  # PostgreSQL: lock_not_available
_LOCK_TIMEOUT_MYSQL_CODES = frozenset({1205})  # ER_LOCK_WAIT_TIMEOUT


def _mysql_code(original: BaseException) -> int | None:
    if "MySQLError" not in {cls.__name__ for cls in type(original).__mro__} or not original.args:
        return None
    return original.args[0] if isinstance(original.args[0], int) else None


def _original(exc: BaseException) -> BaseException:
    """The driver's exception that SQLAlchemy wrapped, else ``exc`` itself."""
    return getattr(exc, "orig", None) or exc


def _is_sqlalchemy_error(exc: BaseException) -> bool:
    return any(cls.__name__ == "SQLAlchemyError" and cls.__module__ == "sqlalchemy.exc" for cls in type(exc).__mro__)


def driver_message(exc: BaseException) -> str:
    """What went wrong in the driver's own words, for a user-facing message.

    SQLAlchemy's text of the same error adds the statement, its parameters
    (users' payloads) and a link to its documentation.
    """
    original = _original(exc)
    if _is_sqlalchemy_error(original) and len(original.args) == 1:
        return str(original.args[0])  # its str() appends the documentation link
    return str(original)


def is_deadlock(exc: BaseException) -> bool:
    """The server picked this transaction as a deadlock victim and rolled it back: safe to run again."""
    original = _original(exc)
    return getattr(original, "sqlstate", None) in _DEADLOCK_SQLSTATES or _mysql_code(original) in _DEADLOCK_MYSQL_CODES


#: Driver error classes, by name, that mean the connection failed or was lost: the DB-API's
#: OperationalError (psycopg, PyMySQL, asyncmy), and asyncpg's own.
_CONNECTION_LOST = frozenset(
    {"OperationalError", "ConnectionDoesNotExistError", "ConnectionFailureError", "PostgresConnectionError"}
)


def store_error(exc: BaseException, target: str) -> StoreError:
    """Translate a driver or SQLAlchemy error into a :class:`StoreError` naming ``target``.

    Only the driver's own message is kept (:func:`driver_message`): SQLAlchemy's
    would also quote the statement's parameters, which are users' payloads.
    """
    if isinstance(exc, StoreError):
        return exc
    original = _original(exc)
    message = driver_message(exc)
    code = sqlite_result_code(original)
    if code is not None:
        error_class, template = _SQLITE_ERRORS.get(code, (StoreError, "database error on {target}"))
        return error_class(f"{template.format(target=target)} ({message})", target=target)
    # DB-API classes by name, subclasses included (psycopg raises AdminShutdown, an
    # OperationalError, when a server stops): the drivers are optional imports.
    kinds = {cls.__name__ for cls in type(original).__mro__}
    if "DataError" in kinds:
        # This value cannot be stored here (psycopg refuses NUL in text before
        # sending anything), so it is the caller's ValueError too.
        return UnstorableValueError(f"{target} cannot store this value: {message}", target=target)
    if is_deadlock(original):
        return DatabaseLockedError(
            f"{target}: this call kept deadlocking with other writers and was rolled back each time "
            f"(nothing was written); try again ({message})",
            target=target,
        )
    if getattr(original, "sqlstate", None) in _LOCK_TIMEOUT_SQLSTATES or _mysql_code(original) in (
        _LOCK_TIMEOUT_MYSQL_CODES
    ):
        return DatabaseLockedError(f"{target}: timed out waiting for another writer's lock ({message})", target=target)
    if getattr(exc, "connection_invalidated", False) or kinds & _CONNECTION_LOST or isinstance(original, OSError):
        return ConnectionFailedError(f"database error on {target}: {message}", target=target)
    return StoreError(f"database error on {target}: {message}", target=target)
