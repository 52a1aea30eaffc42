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
import functools
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic_runner import package_engine
from async_view import EventLoopThread, SyncView
from at_head import build_at_head
from cli_runner import cli_runner
from click.testing import CliRunner
from rowdump import plain_engine
from sqlalchemy import Engine

from animedex_store import AsyncCacheRepository, CacheRepository, default_cache_path
from animedex_store.errors import ConnectionFailedError
from animedex_store.fastpath.targets import URL_ENV_VAR
from animedex_store.sql.sandbox import sandbox
from animedex_store.testing import FrozenClock

SERVER_URLS = {
    "postgresql": os.environ.get("ANIMEDEX_STORE_TEST_POSTGRESQL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
    # PyMySQL negotiates TLS when the server offers it, building an SSL context for every connection
    # (35 ms of CPU each, a quarter of the suite's): the local test server needs none.
    "mariadb": os.environ.get(
        "ANIMEDEX_STORE_TEST_MARIADB", "mysql+pymysql://root@127.0.0.1:3306/test?ssl_disabled=true"
    ),
}
SERVERS = [pytest.param(name, marks=pytest.mark.server) for name in SERVER_URLS]
ENGINES = ["sqlite", *SERVERS]


def pytest_configure(config: pytest.Config) -> None:
    """Throwaway files (``tmp_path``) on a RAM disk where Linux has one, removed at the end: the
    suite makes hundreds of SQLite files, whose fsyncs on a virtual disk cost a tenth of its time.
    ``--basetemp DIR`` puts them elsewhere and keeps them.

    The bytecode that the workers and the hundreds of child interpreters compile goes there too
    (``PYTHONPYCACHEPREFIX``, inherited), written even under ``PYTHONDONTWRITEBYTECODE``: each
    module of the package is compiled once per run instead of once per child (a tenth of the run
    where that variable is set), and nothing is written beside the sources."""
    if config.option.basetemp or hasattr(config, "workerinput"):  # given, or an xdist worker (it is told)
        return
    ram_disk = Path("/dev/shm")
    if ram_disk.is_dir() and os.access(ram_disk, os.W_OK):
        config.option.basetemp = tempfile.mkdtemp(prefix="animedex-store-tests-", dir=ram_disk)
        config.add_cleanup(functools.partial(shutil.rmtree, config.option.basetemp, ignore_errors=True))
        os.environ["PYTHONPYCACHEPREFIX"] = sys.pycache_prefix = str(Path(config.option.basetemp) / "pycache")
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        sys.dont_write_bytecode = False  # this process, too (it collects the tests without xdist)


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto`` (the default, in pyproject.toml): one worker more than the machine has cores; the
    tests wait on database servers and child processes about as much as they compute."""
    return (os.cpu_count() or 1) + 1


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave out the tests a peer suite's module says exercise only the peer's own code: its
    ``peer_deselected(item)`` returns the reason (:mod:`hishel_suite`), shown with ``-v``.

    Then the tests of a module with ``START_FIRST = True`` go first: long tests that mostly wait
    (Django's suite in a child process, sleeping through its expiries) overlap the rest of the run
    on one worker instead of making its tail."""
    items.sort(key=lambda item: not getattr(getattr(item, "module", None), "START_FIRST", False))  # stable
    kept, left_out = [], []
    for item in items:
        why = getattr(getattr(item, "module", None), "peer_deselected", lambda _item: None)(item)
        (left_out if why else kept).append(item)
        if why and config.option.verbose > 0:
            item.config.pluginmanager.get_plugin("terminalreporter").write_line(f"deselected {item.nodeid}: {why}")
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = kept


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


@pytest.fixture(scope="module")
def module_databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], str]]:
    """``url(engine)``: one database at head per engine (``"sqlite"``, or a ``SERVER_URLS`` name) for
    this module, made on first ask and dropped at the module's end, after its test classes' own
    ``teardown_class`` (a peer suite's may open its backend once more)."""
    with contextlib.ExitStack() as stack:
        urls: dict[str, str] = {}

        def url(engine: str) -> str:
            if engine not in urls:
                if engine == "sqlite":
                    urls[engine] = f"sqlite:///{tmp_path_factory.mktemp(engine) / 'cache.sqlite'}"
                else:
                    try:
                        urls[engine] = stack.enter_context(sandbox(SERVER_URLS[engine]))
                    except ConnectionFailedError as exc:
                        server_unreachable(engine, exc)
                build_at_head(urls[engine], SERVER_URLS)
            return urls[engine]

        yield url


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
def engine(engine_url: str) -> Iterator[Engine]:
    """An engine on ``engine_url``'s empty database, configured as the package configures its own,
    for tests that build a database revision by revision (``alembic_runner.migrate_engine``)."""
    with package_engine(engine_url) as engine:
        yield engine


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """In a module with ``BOTH_FLAVOURS = True``, every test that opens repositories runs on
    ``CacheRepository`` and on ``AsyncCacheRepository`` (:mod:`async_view`); elsewhere on the first."""
    if "flavour" in metafunc.fixturenames:
        both = getattr(metafunc.module, "BOTH_FLAVOURS", False)
        metafunc.parametrize("flavour", FLAVOURS if both else FLAVOURS[:1], indirect=True, scope="function")


FLAVOURS = ["sync", "async"]


@pytest.fixture
def flavour(request: pytest.FixtureRequest) -> Iterator[str]:
    """``"sync"`` or ``"async"``: which repository class ``make_repository`` opens."""
    return request.param


@pytest.fixture(scope="session")
def event_loop_thread() -> Iterator[EventLoopThread]:
    """One event loop in a thread per worker, for the async flavour's repositories."""
    loop = EventLoopThread()
    yield loop
    loop.stop()


@pytest.fixture
def make_repository(
    engine_url: str, frozen_clock: FrozenClock, flavour: str, request: pytest.FixtureRequest
) -> Iterator[Callable[..., CacheRepository]]:
    """Open repositories on ``engine_url`` with ``frozen_clock``; all closed at teardown. With the
    ``"async"`` flavour, ``AsyncCacheRepository``s seen through :class:`async_view.SyncView`.

    The database is built at head first as a real migration builds it (:mod:`at_head`), without
    Alembic in every test."""
    build_at_head(engine_url, SERVER_URLS)
    opened: list[Any] = []
    loop = request.getfixturevalue("event_loop_thread") if flavour == "async" else None

    def make(**kwargs) -> CacheRepository:
        kwargs.setdefault("clock", frozen_clock)
        if loop is None:
            repository: Any = CacheRepository(engine_url, **kwargs)
        else:
            repository = SyncView(AsyncCacheRepository(engine_url, **kwargs), loop)
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


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The default cache dir, redirected under ``tmp_path`` (and no ``$ANIMEDEX_STORE_URL``)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(URL_ENV_VAR, raising=False)
    directory = default_cache_path().parent
    if not directory.is_relative_to(tmp_path):
        pytest.skip("platformdirs ignores XDG_CACHE_HOME on this platform")
    return directory


@pytest.fixture
def runner(cache_dir: Path) -> CliRunner:
    """A CLI runner (:mod:`cli_runner`) whose default target is under ``tmp_path``, never the user's cache."""
    return cli_runner()
