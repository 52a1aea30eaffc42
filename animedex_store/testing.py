"""pytest plugin (entry point ``pytest11``): fixtures for applications' tests.

* ``frozen_clock``: a :class:`FrozenClock` fixed at :data:`FROZEN_AT`.
* ``cache_repository``: a fresh in-memory SQLite :class:`CacheRepository` at
  head using ``frozen_clock``, isolated per test. The schema is migrated once
  per session into a template and copied with SQLite's backup API per test.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine
from sqlalchemy.pool import StaticPool

from .clock import FROZEN_AT, FrozenClock
from .repository import CacheRepository

__all__ = ["FrozenClock", "FROZEN_AT", "frozen_clock", "cache_repository"]

_template: sqlite3.Connection | None = None


def _template_database() -> sqlite3.Connection:
    """An in-memory database migrated to head once per process."""
    global _template
    if _template is None:
        repository, connection = _repository_on_new_memory_database(clock=None)
        template = sqlite3.connect(":memory:", check_same_thread=False)
        connection.backup(template)  # before close: disposing the engine closes its connection
        repository.close()
        _template = template
    return _template


def _repository_on_new_memory_database(
    clock: FrozenClock | None, template: sqlite3.Connection | None = None
) -> tuple[CacheRepository, sqlite3.Connection]:
    connection = sqlite3.connect(":memory:", check_same_thread=False)
    if template is not None:
        template.backup(connection)
    engine = create_engine("sqlite://", poolclass=StaticPool, creator=lambda: connection)
    return CacheRepository(engine, clock=clock), connection


def fresh_memory_repository(clock: FrozenClock) -> tuple[CacheRepository, sqlite3.Connection]:
    """A repository on a new in-memory copy of the template, and its connection."""
    return _repository_on_new_memory_database(clock, _template_database())


@pytest.fixture
def frozen_clock() -> FrozenClock:
    """A :class:`FrozenClock` at :data:`FROZEN_AT`."""
    return FrozenClock()


@pytest.fixture
def cache_repository(frozen_clock: FrozenClock) -> Iterator[CacheRepository]:
    """A fresh in-memory repository at head, on ``frozen_clock``."""
    repository, connection = fresh_memory_repository(frozen_clock)
    try:
        yield repository
    finally:
        repository.close()
        connection.close()
