"""Throwaway, isolated databases on a server, for tests.

``sandbox(url)`` creates a private PostgreSQL schema (reached through the
connection option ``search_path``) or a private MariaDB/MySQL database,
yields a URL pointing into it, and drops it afterwards with everything inside.
The name is generated here, never taken from a caller.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from ..errors import store_error
from .engine import mask_url

__all__ = ["SANDBOX_PREFIX", "sandbox"]

#: Every sandbox's name starts with this, so leftovers of a killed run are recognisable.
SANDBOX_PREFIX = "animedex_test_"


@contextlib.contextmanager
def sandbox(url: str | URL) -> Iterator[str]:
    """A URL (password kept) into a new empty schema/database on ``url``'s server.

    Raises :class:`~animedex_store.errors.ConnectionFailedError` (password
    masked) when the server cannot be reached.
    """
    base = make_url(url)
    name = f"{SANDBOX_PREFIX}{uuid.uuid4().hex[:16]}"
    engine = create_engine(base, poolclass=NullPool)
    try:
        quoted = engine.dialect.identifier_preparer.quote_identifier(name)
        if engine.dialect.name == "postgresql":
            create, drop = f"CREATE SCHEMA {quoted}", f"DROP SCHEMA IF EXISTS {quoted} CASCADE"
            # search_path = the sandbox only: tables are created and found there. A throwaway
            # database needs no durable commits: synchronous_commit off spares each one a flush.
            scoped = base.update_query_dict({"options": f"-csearch_path={name} -csynchronous_commit=off"})
        elif engine.dialect.name in ("mysql", "mariadb"):
            create, drop = f"CREATE DATABASE {quoted} CHARACTER SET utf8mb4", f"DROP DATABASE IF EXISTS {quoted}"
            scoped = base.set(database=name)
        else:
            raise ValueError(f"sandboxes need a PostgreSQL or MariaDB/MySQL URL, not {mask_url(base)}")
        _run(engine, create)
        try:
            yield scoped.render_as_string(hide_password=False)
        finally:
            _run(engine, drop)
    finally:
        engine.dispose()


def _run(engine: Engine, statement: str) -> None:
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(statement)
    except Exception as exc:
        raise store_error(exc, mask_url(engine.url)) from exc
