"""requests-cache's own generic backend tests, unchanged, on ``StoreDict`` and ``StoreCache``.

``BaseStorageTest`` and ``BaseCacheTest`` come from the installed release's
sdist (:mod:`requests_cache_suite`), and run here on SQLite, PostgreSQL and
MariaDB: each engine is a subclass pointing ``init_kwargs`` at a fresh
database (a file, or a server sandbox dropped afterwards). httpbin is served
locally by pytest-httpbin through requests-cache's own ``httpbin_wrapper``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests_cache_suite  # noqa: F401 - before any `tests.*` import
from tests.integration.base_cache_test import BaseCacheTest
from tests.integration.base_storage_test import BaseStorageTest

from animedex_store.integrations.requests_cache import StoreCache, StoreDict
from tests.conftest import httpbin_wrapper  # noqa: F401 - autouse (USE_PYTEST_HTTPBIN=true): a local httpbin

pytestmark = pytest.mark.peer  # requests-cache's own tests


@pytest.fixture(scope="class")
def _database(request: pytest.FixtureRequest, module_databases: Callable[[str], str]) -> None:
    """Point the test class's ``init_kwargs`` at its ``engine``'s database. A target string, not a
    repository: requests-cache's process tests pickle ``init_kwargs`` and open the backend in each child."""
    request.cls.init_kwargs = {"target": module_databases(request.cls.engine)}


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
