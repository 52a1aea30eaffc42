"""aiohttp-client-cache's own integration tests, unchanged, on ``StoreCache`` and ``StoreBackend``.

``BaseStorageTest`` and ``BaseBackendTest`` come from the installed release's
sdist (:mod:`aiohttp_client_cache_suite`) and run here on SQLite, PostgreSQL and
MariaDB: each engine is a subclass pointing ``init_kwargs`` at one database for
this module (a file, or a server sandbox dropped afterwards), which every class
shares, each cache in its namespace. httpbin and the library's small
``test.server`` app are served on this machine (threaded, so ``test_gather``'s
500 requests, 100 at once, take seconds). One test is left out, below.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

if sys.version_info < (3, 11):
    pytest.skip("aiohttp-client-cache 0.15 needs Python 3.11 or later", allow_module_level=True)

import aiohttp_client_cache_suite  # noqa: E402 - after the skip; before any `test.*` import
from test.integration.base_backend_test import BaseBackendTest  # noqa: E402
from test.integration.base_storage_test import BaseStorageTest  # noqa: E402

from animedex_store.integrations.aiohttp_client_cache import StoreBackend, StoreCache  # noqa: E402

pytestmark = pytest.mark.peer  # its own tests

#: Tests left out, by name, and why.
DESELECTED = {
    "test_serializer__pickle": (
        "asserts that plain pickle is the default serializer; ours never unpickles unless pickle is "
        "chosen (a row planted in a shared table must not run code in a reader)"
    ),
}


def peer_deselected(item: pytest.Item) -> str | None:
    """Why ``item`` is left out (conftest's ``pytest_collection_modifyitems`` asks), or ``None``."""
    return DESELECTED.get(getattr(item, "originalname", item.name))


@pytest.fixture(scope="module", autouse=True)
def _httpbin() -> Iterator[None]:
    with aiohttp_client_cache_suite.serve_httpbin():
        yield


@pytest.fixture(scope="class")
def _database(request: pytest.FixtureRequest, module_databases: Callable[[str], str]) -> None:
    """Point the test class's ``init_kwargs`` at its ``engine``'s database (and its own settings)."""
    request.cls.init_kwargs = {"target": module_databases(request.cls.engine), **request.cls.settings}


@pytest.mark.asyncio  # as its own test modules mark them
@pytest.mark.usefixtures("_database")
class TestStoreCacheSqlite(BaseStorageTest):
    storage_class = StoreCache
    engine = "sqlite"
    settings: dict[str, Any] = {}


@pytest.mark.asyncio  # as its own test modules mark them
@pytest.mark.usefixtures("_database")
class TestStoreCachePickleSqlite(BaseStorageTest):
    """With pickle chosen, as the library's ``SQLitePickleCache``: datetimes and floats round-trip too."""

    storage_class = StoreCache
    picklable = True
    engine = "sqlite"
    settings: dict[str, Any] = {"serializer": "pickle"}


@pytest.mark.asyncio  # as its own test modules mark them
@pytest.mark.usefixtures("_database")
class TestStoreBackendSqlite(BaseBackendTest):
    backend_class = StoreBackend
    engine = "sqlite"
    settings: dict[str, Any] = {}


@pytest.mark.server
class TestStoreCachePostgresql(TestStoreCacheSqlite):
    engine = "postgresql"


@pytest.mark.server
class TestStoreCachePicklePostgresql(TestStoreCachePickleSqlite):
    engine = "postgresql"


@pytest.mark.server
class TestStoreBackendPostgresql(TestStoreBackendSqlite):
    engine = "postgresql"


@pytest.mark.server
class TestStoreCacheMariadb(TestStoreCacheSqlite):
    engine = "mariadb"


@pytest.mark.server
class TestStoreCachePickleMariadb(TestStoreCachePickleSqlite):
    engine = "mariadb"


@pytest.mark.server
class TestStoreBackendMariadb(TestStoreBackendSqlite):
    engine = "mariadb"


def test_the_suite_is_the_installed_release() -> None:
    """The tests that ran are those of the aiohttp-client-cache release installed here, from its sdist."""
    from importlib.metadata import version

    assert version("aiohttp-client-cache") == aiohttp_client_cache_suite.RELEASE
    assert f"tests-{aiohttp_client_cache_suite.RELEASE}-" in aiohttp_client_cache_suite.ROOT.name
    assert (aiohttp_client_cache_suite.ROOT / "test" / "integration" / "base_storage_test.py").is_file()
