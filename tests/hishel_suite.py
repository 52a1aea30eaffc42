"""hishel's own client tests, from the sdist of the installed release, on StoreStorage and AsyncStoreStorage.

hishel ships its tests in its sdist (:mod:`peer_sdist` unpacks them). Five
modules test its clients end to end on a storage each test builds:
``test_sync_httpx``, ``test_async_httpx``, ``test_sync_httpx2``,
``test_async_httpx2`` (through a module-level ``new_storage(kind="sqlite", **kw)``)
and ``test_requests`` (through the module-level name ``SqliteStorage``). Each is
loaded from its file under a private name (hishel's test package is also called
``tests``, like requests-cache's, and these modules import nothing from it), that
one name is pointed at our storages, and :func:`load` hands the module's contents
to a thin test module of ours (``test_hishel_<name>.py``), which pytest collects.
The test files themselves are run unchanged.

Every test runs on SQLite, PostgreSQL and MariaDB (the ``store`` fixture, once
per module and engine). Storages are cheap to build: on each engine the sync
ones share one repository and the async ones one database (a SQLite file, a
server sandbox), each storage in a namespace of its own. A test that built none
of our storages fails (the patch would have missed), except those
:func:`deselected` leaves out: they exercise only hishel's own storages.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import sqlite3
import sys
import uuid
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from importlib.metadata import version
from pathlib import Path
from typing import Any

import hishel  # noqa: F401 - the installed package the suite tests
import pytest
from at_head import build_at_head
from conftest import SERVER_URLS, server_unreachable
from peer_sdist import peer_tests

from animedex_store import AsyncCacheRepository, CacheRepository
from animedex_store.async_repository import close_outside_loop
from animedex_store.errors import ConnectionFailedError
from animedex_store.integrations.hishel import AsyncStoreStorage, StoreStorage
from animedex_store.sql.sandbox import sandbox

__all__ = ["RELEASE", "ROOT", "MODULES", "DESELECTED", "deselected", "load"]

RELEASE = version("hishel")
ROOT = peer_tests("hishel", RELEASE, marker=Path("tests") / "test_requests.py", env_var="ANIMEDEX_STORE_HISHEL_SDIST")
HTTPX_MODULES = ("test_sync_httpx", "test_async_httpx", "test_sync_httpx2", "test_async_httpx2")
MODULES = (*HTTPX_MODULES, "test_requests")

#: Tests left out on every engine, by name (with or without parameters), and why: each builds none of
#: our storages, only hishel's own, or looks inside them.
DESELECTED = {
    "test_unsafe_request_still_succeeds_when_the_database_is_locked": (
        "hishel's SqliteStorage on a file, locked through its private connection (storage._ensure_connection)"
    ),
    "test_cache_outage_still_reaches_the_server": "hishel's RedisStorage, its private client broken (storage._client)",
    "test_rfc_mode_does_not_use_the_key_left_in_redis_by_1x": "hishel's RedisStorage and a key its 1.x left in Redis",
    "test_client_with_default_sqlite_storage_in_a_file": "CacheClient's default storage: hishel's SqliteStorage",
    "test_client_rfc_argument_reaches_the_transport": "CacheClient's default storage: hishel's SqliteStorage",
    "test_client_accepts_options": "CacheClient's default storage: hishel's SqliteStorage",
}
REDIS_ONLY = "parametrized with kind='redis': hishel's RedisStorage on fakeredis"


def deselected(item: pytest.Item) -> str | None:
    """Why ``item`` is left out, or ``None``."""
    name = getattr(item, "originalname", item.name)
    if name in DESELECTED:
        return DESELECTED[name]
    callspec = getattr(item, "callspec", None)
    if callspec is not None and callspec.params.get("kind") == "redis":
        return REDIS_ONLY
    return None


class Store:
    """Our storages on one engine, for one module's tests: built cheaply, counted, closed after each test."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.shared: CacheRepository | None = None
        self.built = 0
        self.opened: list[AsyncCacheRepository] = []

    def sync_storage(self, **kwargs: Any) -> StoreStorage:
        if self.shared is None:
            self.shared = CacheRepository(self.url)
        self.built += 1
        return StoreStorage(repository=self.shared, namespace=f"hishel-{uuid.uuid4().hex[:12]}", **kwargs)

    def async_storage(self, **kwargs: Any) -> AsyncStoreStorage:
        # An async repository serves one event loop, and each test runs its own: one per storage.
        repository = AsyncCacheRepository(self.url)
        self.opened.append(repository)
        self.built += 1
        return AsyncStoreStorage(repository=repository, namespace=f"hishel-{uuid.uuid4().hex[:12]}", **kwargs)

    def after_test(self) -> int:
        """Close this test's async repositories; how many storages it built."""
        for repository in self.opened:
            close_outside_loop(repository)
        self.opened.clear()
        built, self.built = self.built, 0
        return built

    def close(self) -> None:
        if self.shared is not None:
            self.shared.close()


_current: list[Store] = []  # the store of the module and engine running now


#: The engines each test runs on; the ids keep them apart from hishel's own parameters (``kind``).
STORE_ENGINES = [
    pytest.param("sqlite", id="store-sqlite"),
    *(pytest.param(name, marks=pytest.mark.server, id=f"store-{name}") for name in SERVER_URLS),
]


@pytest.fixture(scope="module", params=STORE_ENGINES, autouse=True)
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """Our storages on one engine (a SQLite file, or a server sandbox, at head), for one module."""
    engine = request.param
    with contextlib.ExitStack() as stack:
        if engine == "sqlite":
            url = f"sqlite:///{tmp_path_factory.mktemp('hishel') / 'cache.sqlite'}"
        else:
            try:
                url = stack.enter_context(sandbox(SERVER_URLS[engine]))
            except ConnectionFailedError as exc:
                server_unreachable(engine, exc)
        build_at_head(url, SERVER_URLS)
        current = Store(url)
        stack.callback(current.close)
        _current.append(current)
        stack.callback(_current.remove, current)
        yield current


@pytest.fixture(autouse=True)
def _builds_our_storage(store: Store) -> Iterator[None]:
    """Fail a test that built none of our storages: the patch would have missed it."""
    yield
    if store.after_test() == 0:
        pytest.fail("this hishel test built none of our storages: its storage factory was not patched")


class _QuicklyStoppedServer(ThreadingHTTPServer):
    """The standard library's server, polling for ``shutdown()`` every 10 ms instead of 500 ms."""

    def serve_forever(self, poll_interval: float = 0.01) -> None:
        super().serve_forever(poll_interval)


def _patch(name: str, module: Any) -> None:
    """Point ``module``'s storage construction at ours; ``RuntimeError`` if its names changed."""
    if name in HTTPX_MODULES:
        original = module.new_storage
        if list(inspect.signature(original).parameters) != ["kind", "kwargs"]:
            raise RuntimeError(f"hishel's {name}.new_storage changed: {inspect.signature(original)}")
        if inspect.iscoroutinefunction(original):

            async def new_storage(kind: str = "sqlite", **kwargs: Any) -> Any:
                return _current[-1].async_storage(**kwargs) if kind == "sqlite" else await original(kind, **kwargs)

        else:

            def new_storage(kind: str = "sqlite", **kwargs: Any) -> Any:  # type: ignore[misc]
                return _current[-1].sync_storage(**kwargs) if kind == "sqlite" else original(kind, **kwargs)

        module.new_storage = new_storage
    else:
        if not hasattr(module, "SqliteStorage") or not hasattr(module, "new_session"):
            raise RuntimeError(f"hishel's {name} no longer builds storages through SqliteStorage")

        def SqliteStorage(*, connection: sqlite3.Connection | None = None, **kwargs: Any) -> StoreStorage:  # noqa: N802 - the name it replaces
            if connection is not None:
                connection.close()  # the in-memory database it would have used
            return _current[-1].sync_storage(**kwargs)

        module.SqliteStorage = SqliteStorage
        if hasattr(module, "ThreadingHTTPServer"):
            # Its origin server stops in its fixture's teardown with shutdown(), which waits up to
            # serve_forever's poll interval (0.5 s): half a second per test, 95 s of the suite's time.
            module.ThreadingHTTPServer = _QuicklyStoppedServer


def load(name: str) -> dict[str, Any]:
    """The contents of hishel's test module ``name``, storages patched, with our ``store`` fixtures."""
    if name.endswith("httpx2") and sys.version_info < (3, 11):
        pytest.skip("httpx2 needs Python 3.11 or later", allow_module_level=True)
    qualified = f"_hishel_suite.{name}"
    module = sys.modules.get(qualified)
    if module is None:
        spec = importlib.util.spec_from_file_location(qualified, ROOT / "tests" / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[qualified] = module
        spec.loader.exec_module(module)
        _patch(name, module)
    contents = {key: value for key, value in vars(module).items() if not key.startswith("__")}
    contents.update(store=store, _builds_our_storage=_builds_our_storage, pytestmark=pytest.mark.peer)
    contents["peer_deselected"] = deselected
    return contents
