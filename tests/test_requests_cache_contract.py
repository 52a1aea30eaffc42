"""requests-cache's own generic backend tests, unchanged, on ``StoreDict`` and ``StoreCache``.

``BaseStorageTest`` and ``BaseCacheTest`` come from the installed release's
sdist (:mod:`requests_cache_suite`), and run here on SQLite, PostgreSQL and
MariaDB: each engine is a subclass pointing ``init_kwargs`` at a fresh
database (a file, or a server sandbox dropped afterwards). httpbin is served
locally by pytest-httpbin through requests-cache's own ``httpbin_wrapper``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest
import requests_cache_suite  # noqa: F401 - before any `tests.*` import
from conftest import SERVER_URLS, server_unreachable
from tests.integration.base_cache_test import BaseCacheTest
from tests.integration.base_storage_test import BaseStorageTest

from animedex_store.errors import ConnectionFailedError
from animedex_store.requests_cache import StoreCache, StoreDict
from animedex_store.sql.sandbox import sandbox
from tests.conftest import httpbin_wrapper  # noqa: F401 - autouse (USE_PYTEST_HTTPBIN=true): a local httpbin

pytestmark = pytest.mark.peer  # requests-cache's own tests


@pytest.fixture(scope="module")
def _databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], str]]:
    """``url(engine)``: one new database per engine for this module, dropped at its end, after the
    test classes' own ``teardown_class`` (which opens the backend once more)."""
    with contextlib.ExitStack() as stack:
        urls: dict[str, str] = {}

        def url(engine: str) -> str:
            if engine not in urls:
                if engine == "sqlite":
                    urls[engine] = f"sqlite:///{tmp_path_factory.mktemp('rc') / 'http_cache.sqlite'}"
                else:
                    try:
                        urls[engine] = stack.enter_context(sandbox(SERVER_URLS[engine]))
                    except ConnectionFailedError as exc:
                        server_unreachable(engine, exc)
            return urls[engine]

        yield url


@pytest.fixture(scope="class")
def _database(request: pytest.FixtureRequest, _databases: Callable[[str], str]) -> None:
    """Point the test class's ``init_kwargs`` at its ``engine``'s database. A target string, not a
    repository: requests-cache's process tests pickle ``init_kwargs`` and open the backend in each child."""
    request.cls.init_kwargs = {"target": _databases(request.cls.engine)}


@pytest.mark.usefixtures("_database")
class TestStoreDictSqlite(BaseStorageTest):
    storage_class = StoreDict
    engine = "sqlite"


@pytest.mark.usefixtures("_database")
class TestStoreCacheSqlite(BaseCacheTest):
    backend_class = StoreCache
    engine = "sqlite"


@pytest.mark.server
class TestStoreDictPostgresql(TestStoreDictSqlite):
    engine = "postgresql"


@pytest.mark.server
class TestStoreCachePostgresql(TestStoreCacheSqlite):
    engine = "postgresql"


@pytest.mark.server
class TestStoreDictMariadb(TestStoreDictSqlite):
    engine = "mariadb"


@pytest.mark.server
class TestStoreCacheMariadb(TestStoreCacheSqlite):
    engine = "mariadb"


def test_the_suite_is_the_installed_release() -> None:
    """The tests that ran are those of the requests-cache release installed here, from its sdist."""
    from importlib.metadata import version

    assert version("requests-cache") == requests_cache_suite.RELEASE
    assert f"tests-{requests_cache_suite.RELEASE}-" in requests_cache_suite.ROOT.name
    assert (requests_cache_suite.ROOT / "tests" / "integration" / "base_storage_test.py").is_file()
