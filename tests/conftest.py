"""Fixtures shared by the test suite: one contract, three engines.

``engine_url`` is parametrised over SQLite (a temporary file), PostgreSQL and
MariaDB. Each server test runs in its own schema/database, dropped afterwards.
A server that cannot be reached fails the test in CI (``CI=true``) and skips
it elsewhere, saying why. Server URLs default to the development machines'
and can be overridden with ``ANIMEDEX_STORE_TEST_POSTGRESQL`` and
``ANIMEDEX_STORE_TEST_MARIADB``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rowdump import plain_engine
from schema_replay import build_at_head
from sqlalchemy import Engine

from animedex_store import CacheRepository
from animedex_store.errors import ConnectionFailedError
from animedex_store.sql.sandbox import sandbox
from animedex_store.testing import FrozenClock

SERVER_URLS = {
    "postgresql": os.environ.get("ANIMEDEX_STORE_TEST_POSTGRESQL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
    "mariadb": os.environ.get("ANIMEDEX_STORE_TEST_MARIADB", "mysql+pymysql://root@127.0.0.1:3306/test"),
}
SERVERS = [pytest.param(name, marks=pytest.mark.server) for name in SERVER_URLS]
ENGINES = ["sqlite", *SERVERS]


def server_unreachable(name: str, error: Exception) -> None:
    """Fail in CI, skip elsewhere: a CI run must show the server tests ran."""
    message = f"{name} server unreachable ({error})"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; CI=true requires it", pytrace=False)
    pytest.skip(f"{message}; start it or set ANIMEDEX_STORE_TEST_{name.upper()}")


@pytest.fixture
def open_sandbox() -> Iterator[Callable[[str], str]]:
    """``open_sandbox("postgresql" | "mariadb")``: a URL into a new private, empty
    schema/database on that server; every sandbox is dropped at teardown."""
    with contextlib.ExitStack() as stack:

        def open_one(name: str) -> str:
            try:
                return stack.enter_context(sandbox(SERVER_URLS[name]))
            except ConnectionFailedError as exc:
                server_unreachable(name, exc)

        yield open_one


@pytest.fixture(params=ENGINES)
def engine_url(request: pytest.FixtureRequest, tmp_path: Path, open_sandbox: Callable[[str], str]) -> str:
    """A URL to a fresh empty database: a SQLite file, or a server sandbox."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'cache.sqlite'}"
    return open_sandbox(request.param)


@pytest.fixture(params=SERVERS)
def server_base_url(request: pytest.FixtureRequest, open_sandbox: Callable[[str], str]) -> str:
    """The server's own URL (not a sandbox), once it is known to answer."""
    open_sandbox(request.param)  # skips, or fails in CI, when the server is unreachable
    return SERVER_URLS[request.param]


@pytest.fixture(params=SERVERS)
def server_url(request: pytest.FixtureRequest, open_sandbox: Callable[[str], str]) -> str:
    """Like ``engine_url``, servers only."""
    return open_sandbox(request.param)


@pytest.fixture
def make_repository(engine_url: str, frozen_clock: FrozenClock) -> Iterator[Callable[..., CacheRepository]]:
    """Open repositories on ``engine_url`` with ``frozen_clock``; all closed at teardown.

    A server database is built at head first, by replaying what a real migration sent
    (:mod:`schema_replay`): the same schema, without Alembic in every test."""
    for server_url in SERVER_URLS.values():
        if engine_url.startswith(server_url.split("+", 1)[0]):
            build_at_head(engine_url, server_url)
    opened: list[CacheRepository] = []

    def make(**kwargs) -> CacheRepository:
        kwargs.setdefault("clock", frozen_clock)
        repository = CacheRepository(engine_url, **kwargs)
        opened.append(repository)
        return repository

    yield make
    for repository in opened:
        repository.close()


@pytest.fixture
def repo(make_repository: Callable[..., CacheRepository]) -> CacheRepository:
    """A repository on ``engine_url`` with ``frozen_clock``."""
    return make_repository()


@pytest.fixture
def database(engine_url: str, repo: CacheRepository) -> Iterator[Engine]:
    """A plain engine on ``repo``'s database, to look at rows directly."""
    engine = plain_engine(engine_url)
    yield engine
    engine.dispose()
