"""pytest plugin (entry point ``pytest11``): fixtures for applications' tests.

* ``frozen_clock``: a :class:`FrozenClock` fixed at :data:`FROZEN_AT`.
* ``cache_repository``: a fresh in-memory SQLite :class:`CacheRepository` at
  head using ``frozen_clock``, isolated per test. The schema is migrated once
  per process into a template (the only moment SQLAlchemy and Alembic load)
  and copied with SQLite's backup API per test.
* ``async_cache_repository``: the same as an
  :class:`~animedex_store.AsyncCacheRepository`, ready without an ``await``: a
  plain fixture, so it works under pytest-asyncio (strict or auto mode) and
  anyio's pytest plugin alike, whatever the loop's scope: the repository works
  from whichever event loop the test runs, and its teardown closes it without
  one (:func:`~animedex_store.async_repository.close_outside_loop`).

Importing this module (pytest does in every run where the package is
installed) loads no SQLAlchemy.

``--animedex-store-url URL`` (or ``$ANIMEDEX_STORE_TEST_URL``) runs both
fixtures on a PostgreSQL or MariaDB/MySQL server instead: each test gets its
own new schema (PostgreSQL) or database (MariaDB/MySQL), migrated on open (the
async one on its first call, in the test's loop) and dropped afterwards.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from .core.clock import FROZEN_AT, FrozenClock
from .fastpath.opening import sqlite_database
from .fastpath.sqlite_file import connect_memory
from .fastpath.targets import MEMORY_TARGET_NAME
from .repository import CacheRepository, repository_on

if TYPE_CHECKING:
    from .async_repository import AsyncCacheRepository
    from .core.connections import Database

__all__ = [
    "FrozenClock",
    "FROZEN_AT",
    "TEST_URL_ENV_VAR",
    "frozen_clock",
    "cache_repository",
    "async_cache_repository",
    "animedex_store_url",
]

#: Environment variable naming the server ``cache_repository`` runs on (the option wins).
TEST_URL_ENV_VAR = "ANIMEDEX_STORE_TEST_URL"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("animedex-store").addoption(
        "--animedex-store-url",
        metavar="URL",
        help="run the cache_repository fixture on this PostgreSQL or MariaDB/MySQL server, each test in a "
        f"schema/database of its own (default: ${TEST_URL_ENV_VAR}, else in-memory SQLite)",
    )


_template: sqlite3.Connection | None = None


def _template_database() -> sqlite3.Connection:
    """An in-memory database migrated to head once per process, by the real migrations."""
    global _template
    if _template is None:
        from .migrations.opening import migrated_memory_database  # SQLAlchemy and Alembic load here

        _template = migrated_memory_database()
    return _template


def _fresh_memory_database() -> Database:
    """A new in-memory copy of the template; closing its connections drops it."""
    connection = connect_memory()
    _template_database().backup(connection)
    return sqlite_database(connection, MEMORY_TARGET_NAME)


def fresh_memory_repository(clock: FrozenClock) -> CacheRepository:
    """A repository on a new in-memory copy of the template; closing it drops the copy."""
    return repository_on(_fresh_memory_database(), clock=clock)


@pytest.fixture
def frozen_clock() -> FrozenClock:
    """A :class:`FrozenClock` at :data:`FROZEN_AT`."""
    return FrozenClock()


@pytest.fixture(scope="session")
def animedex_store_url(pytestconfig: pytest.Config) -> str | None:
    """The server ``cache_repository`` runs on (``--animedex-store-url``, else
    ``$ANIMEDEX_STORE_TEST_URL``), or ``None`` for in-memory SQLite."""
    return pytestconfig.getoption("animedex_store_url") or os.environ.get(TEST_URL_ENV_VAR) or None


@pytest.fixture
def cache_repository(frozen_clock: FrozenClock, animedex_store_url: str | None) -> Iterator[CacheRepository]:
    """A fresh repository at head, on ``frozen_clock``: in memory, or in a new
    schema/database on the ``animedex_store_url`` server, dropped afterwards."""
    if animedex_store_url is not None:
        from .sql.sandbox import sandbox

        with sandbox(animedex_store_url) as url, CacheRepository(url, clock=frozen_clock) as repository:
            yield repository
        return
    with fresh_memory_repository(frozen_clock) as repository:
        yield repository


@pytest.fixture
def async_cache_repository(frozen_clock: FrozenClock, animedex_store_url: str | None) -> Iterator[AsyncCacheRepository]:
    """A fresh :class:`~animedex_store.AsyncCacheRepository` at head, on ``frozen_clock``: in memory
    and usable at once from the test's event loop, or on the ``animedex_store_url`` server in a new
    schema/database (opened by its first call), dropped afterwards."""
    from .async_repository import AsyncCacheRepository, async_repository_on, close_outside_loop

    if animedex_store_url is not None:
        from .sql.sandbox import sandbox

        with sandbox(animedex_store_url) as url:
            repository = AsyncCacheRepository(url, clock=frozen_clock)
            try:
                yield repository
            finally:
                close_outside_loop(repository)
        return
    repository = async_repository_on(_fresh_memory_database(), clock=frozen_clock)
    try:
        yield repository
    finally:
        close_outside_loop(repository)
