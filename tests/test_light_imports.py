"""On an up-to-date SQLite file the package runs on the standard library alone (README, "Start-up: what loads when").

Every check runs in a fresh interpreter (:mod:`fresh_interpreter`) and looks at
``sys.modules`` afterwards: none of ``sqlalchemy``, ``alembic``, ``pydantic``
and ``click`` may be loaded by the imports, by opening an up-to-date file
however it is named, or by any fast-path operation, through ``CacheRepository``
and the drop-in ``animedex_store.sqlite.SqliteCache`` alike. ``set_model`` /
``get_model`` may load pydantic (the caller already has it), ``animedex-store
get`` may load click. The last test shows the probe can fail: a new file is
created through Alembic, and the probe sees it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from dbfiles import rows
from fresh_interpreter import PRELUDE, URL_ENV_VAR, child_env, run_fresh
from sourcefiles import package_sources

from animedex_store import CacheRepository

LIGHT_MODULES = ["animedex_store", "animedex_store.sqlite", "animedex_store.errors", "animedex_store.testing"]
OPENERS = ["CacheRepository", "SqliteCache"]


@pytest.fixture
def at_head(tmp_path: Path) -> Path:
    """A SQLite file already at head, made in this process (where SQLAlchemy may load)."""
    path = tmp_path / "cache.sqlite"
    CacheRepository(path).close()
    return path


@pytest.mark.parametrize("module", LIGHT_MODULES)
def test_importing_loads_no_heavy_package(tmp_path: Path, module: str) -> None:
    loaded = run_fresh(f"import {module}\nprint(json.dumps(heavy_loaded()))", cwd=tmp_path)
    assert loaded == []


# Opens the target described by argv (opener, how, value), runs every fast-path
# operation and records, after each, which heavy packages are loaded.
OPERATIONS = """
import sqlite3
from pathlib import Path

opener, how, value = sys.argv[1:4]
after = {}
results = {}


def step(name, result=None):
    after[name] = heavy_loaded()
    results[name] = result


if opener == "CacheRepository":
    from animedex_store import CacheRepository as Open
else:
    from animedex_store.sqlite import SqliteCache as Open
step("import")
args = {"path": (Path(value),), "str": (value,), "url": (value,), "none": ()}[how]
cache = Open(*args)
step("open")
step("get (miss)", cache.get("anilist", "k1"))
step("set", cache.set("anilist", "k1", b"one", ttl_seconds=3600))
step("get", cache.get("anilist", "k1").decode())
step("set_with_meta", cache.set_with_meta("anilist", "k2", b"two", response_headers={"etag": "2"}, ttl_seconds=3600))
payload, headers, fetched_at = cache.get_with_meta("anilist", "k2")
step("get_with_meta", [payload.decode(), headers, fetched_at.utcoffset().total_seconds()])
step("set_many", cache.set_many("anilist", {"k3": b"three", "k4": b"four"}, ttl_seconds=3600))
many = cache.get_many("anilist", ["k1", "k3", "k4", "missing"])
step("get_many", {signature: payload.decode() for signature, payload in many.items()})
step("delete", cache.delete("anilist", "k3"))
cache.set("jikan", "expired", b"x", ttl_seconds=0)
step("purge_expired", cache.purge_expired())
stats = cache.stats()
step("stats", [stats.rows, stats.expired_rows, sorted(stats.backends)])
if opener == "SqliteCache":
    # animedex's own tests read rows through the seed's private attributes.
    with cache._lock:
        row = cache._conn.execute(
            "SELECT payload FROM cache_rows WHERE backend = ? AND signature = ?", ("anilist", "k1")
        ).fetchone()
    step("_conn", [isinstance(cache._conn, sqlite3.Connection), row[0].decode()])
step("clear", cache.clear())
cache.set("anilist", "after-clear", b"kept", ttl_seconds=3600)
step("close", cache.close())
print(json.dumps({"after": after, "results": results}))
"""
EXPECTED_RESULTS = {
    "import": None,
    "open": None,
    "get (miss)": None,
    "set": None,
    "get": "one",
    "set_with_meta": None,
    "get_with_meta": ["two", {"etag": "2"}, 0.0],
    "set_many": None,
    "get_many": {"k1": "one", "k3": "three", "k4": "four"},
    "delete": True,
    "purge_expired": 1,
    "stats": [3, 0, ["anilist"]],
    "clear": 3,
    "close": None,
}


def _run_operations(cwd: Path, opener: str, how: str, value: str, env: dict[str, str] | None = None) -> dict:
    return run_fresh(OPERATIONS, opener, how, value, cwd=cwd, env=env)


def _assert_light_and_correct(probe: dict, opener: str) -> None:
    expected = dict(EXPECTED_RESULTS)
    if opener == "SqliteCache":
        expected["_conn"] = [True, "one"]
    assert probe["after"] == {step: [] for step in expected}  # step -> heavy packages loaded by then
    assert probe["results"] == expected


def _private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point the user cache directory into ``tmp_path`` here and in the children; returns their environment."""
    home = {
        "HOME": str(tmp_path / "home"),
        "XDG_CACHE_HOME": str(tmp_path / "xdg-cache"),
        "LOCALAPPDATA": str(tmp_path / "local-app-data"),
    }
    for name, value in home.items():
        monkeypatch.setenv(name, value)
    return child_env(**home)


# SqliteCache(path) takes a file path, as the seed's did; CacheRepository also takes a URL.
OPENINGS = [("CacheRepository", "path"), ("CacheRepository", "str"), ("CacheRepository", "url")]
OPENINGS += [("SqliteCache", "path"), ("SqliteCache", "str")]


@pytest.mark.parametrize(("opener", "how"), OPENINGS)
def test_every_operation_on_an_up_to_date_file_loads_no_heavy_package(
    tmp_path: Path, at_head: Path, opener: str, how: str
) -> None:
    value = f"sqlite:///{at_head}" if how == "url" else str(at_head)
    probe = _run_operations(tmp_path, opener, how, value)
    _assert_light_and_correct(probe, opener)
    assert [row[:3] for row in rows(at_head)] == [("anilist", "after-clear", b"kept")]  # the file we made


def test_none_with_the_url_variable_set_loads_no_heavy_package(tmp_path: Path, at_head: Path) -> None:
    probe = _run_operations(tmp_path, "CacheRepository", "none", "", env=child_env(**{URL_ENV_VAR: str(at_head)}))
    _assert_light_and_correct(probe, "CacheRepository")
    assert [row[:3] for row in rows(at_head)] == [("anilist", "after-clear", b"kept")]


@pytest.mark.parametrize("opener", OPENERS)
def test_none_resolving_to_the_default_file_loads_no_heavy_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, opener: str
) -> None:
    env = _private_home(tmp_path, monkeypatch)
    from animedex_store import default_cache_path

    path = default_cache_path()
    if tmp_path not in path.parents:
        pytest.skip(f"the user cache directory does not follow HOME/XDG_CACHE_HOME/LOCALAPPDATA here: {path}")
    CacheRepository(path).close()
    probe = _run_operations(tmp_path, opener, "none", "", env=env)
    _assert_light_and_correct(probe, opener)
    assert [row[:3] for row in rows(path)] == [("anilist", "after-clear", b"kept")]


COMPRESSED = """
from animedex_store import CacheRepository

cache = CacheRepository(sys.argv[1], compression=sys.argv[2])
big = b'{"id": 1, "title": "Sousou no Frieren"}' * 1024
cache.set("anilist", "big", big, ttl_seconds=3600)
cache.set_with_meta("anilist", "meta", big, response_headers={"ETag": "1"}, ttl_seconds=3600)
cache.set_many("anilist", {"many": big, "small": b"{}"}, ttl_seconds=3600)
found = [
    cache.get("anilist", "big") == big,
    cache.get_with_meta("anilist", "meta")[:2] == (big, {"ETag": "1"}),
    cache.get_many("anilist", ["many", "small"]) == {"many": big, "small": b"{}"},
]
codecs = sorted({row[0] for row in cache._db.conn.execute("SELECT codec FROM cache_rows")})
cache.close()
print(json.dumps({"loaded": heavy_loaded(), "found": found, "codecs": codecs}))
"""


@pytest.mark.parametrize(("compression", "codec"), [("zlib", 1), ("zstd", 2)])
def test_compressed_reads_and_writes_load_no_heavy_package(
    tmp_path: Path, at_head: Path, compression: str, codec: int
) -> None:
    probe = run_fresh(COMPRESSED, str(at_head), compression, cwd=tmp_path)
    assert probe == {"loaded": [], "found": [True, True, True], "codecs": [0, codec]}


MODELS = """
from pydantic import BaseModel

if sys.argv[1] == "CacheRepository":
    from animedex_store import CacheRepository as Open
else:
    from animedex_store.sqlite import SqliteCache as Open


class Media(BaseModel):
    id: int
    title: str


cache = Open(sys.argv[2])
cache.set_model("anilist", "media:1", Media(id=1, title="Sousou no Frieren"), ttl_seconds=3600)
found = cache.get_model("anilist", "media:1", Media)
cache.close()
print(json.dumps({"loaded": heavy_loaded(), "found": found.model_dump()}))
"""


@pytest.mark.parametrize("opener", OPENERS)
def test_models_load_pydantic_only(tmp_path: Path, at_head: Path, opener: str) -> None:
    probe = run_fresh(MODELS, opener, str(at_head), cwd=tmp_path)
    assert probe == {"loaded": ["pydantic"], "found": {"id": 1, "title": "Sousou no Frieren"}}


# `animedex-store get` in-process: stdout is the payload, the modules go to a file.
CLI_GET = """
from animedex_store.cli import cli

try:
    cli.main(["get", "anilist", "media:1", "--url", sys.argv[2]], prog_name="animedex-store", standalone_mode=False)
finally:
    sys.stdout.flush()
    with open(sys.argv[1], "w") as out:
        json.dump(heavy_loaded(), out)
"""


def test_cli_get_on_an_up_to_date_file_loads_click_only(tmp_path: Path, at_head: Path) -> None:
    payload = b'{"data": {"Media": {"id": 1}}}\x00\xff not UTF-8'
    with CacheRepository(at_head) as repository:
        repository.set("anilist", "media:1", payload, ttl_seconds=3600)
    modules = tmp_path / "modules.json"
    result = subprocess.run(
        [sys.executable, "-c", PRELUDE + CLI_GET, str(modules), str(at_head)],
        cwd=tmp_path,
        env=child_env(),
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert result.stdout == payload  # byte for byte, no newline added
    assert modules.read_text() == '["click"]'


PLUGIN_USER_TESTS = (
    PRELUDE
    + """

def test_first_a_test_without_the_fixture_sees_no_heavy_package(pytestconfig):
    assert pytestconfig.pluginmanager.has_plugin("animedex_store")  # from the pytest11 entry point
    assert "sqlalchemy" not in sys.modules
    assert heavy_loaded() == []


def test_then_the_fixtures_work(cache_repository, frozen_clock):
    cache_repository.set("anilist", "media:1", b"payload", ttl_seconds=60)
    assert cache_repository.get("anilist", "media:1") == b"payload"
    frozen_clock.advance(60)
    assert cache_repository.get("anilist", "media:1") is None
"""
)


def test_the_pytest_plugin_registers_without_heavy_packages(pytester: pytest.Pytester) -> None:
    """An application's test run with the package installed and no conftest: the plugin comes from
    its entry point; pytest-alembic (which imports SQLAlchemy itself), pytest-httpbin (which
    imports Flask and click, for requests-cache's tests), the async test plugins and
    time-machine's (which import asyncio) are kept out if installed."""
    pytester.makepyfile(test_application=PLUGIN_USER_TESTS)
    plugins_of_others = [
        *("-p", "no:pytest_alembic", "-p", "no:httpbin"),
        *("-p", "no:asyncio", "-p", "no:anyio", "-p", "no:time_machine"),
    ]
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *plugins_of_others, timeout=120)
    result.assert_outcomes(passed=2)


def test_the_probe_sees_the_migration_path_on_a_new_file(tmp_path: Path) -> None:
    """Control: the same probe on a file that does not exist yet. Creating it migrates through
    Alembic, so SQLAlchemy and Alembic load, and the probe says so."""
    path = tmp_path / "new" / "cache.sqlite"
    probe = _run_operations(tmp_path, "CacheRepository", "path", str(path))
    assert {"sqlalchemy", "alembic"} <= set(probe["after"]["open"])
    assert probe["results"] == EXPECTED_RESULTS


def test_the_async_repository_on_an_up_to_date_file_loads_asyncio_only(tmp_path: Path, at_head: Path) -> None:
    """``AsyncCacheRepository`` on a SQLite file at head opens through the same fast path: asyncio,
    and no SQLAlchemy, async driver or greenlet."""
    code = f"""
import asyncio
from animedex_store import AsyncCacheRepository

async def main():
    async with AsyncCacheRepository({str(at_head)!r}) as repository:
        await repository.set("b", "k", b"v", ttl_seconds=60)
        assert await repository.get("b", "k") == b"v"
        assert [key.signature async for key in repository.keys("b")] == ["k"]
        assert (await repository.get_or_fetch("b", "f", lambda: b"f", ttl_seconds=60)).payload == b"f"

asyncio.run(main())
print(json.dumps(heavy_loaded()))
"""
    assert run_fresh(code, cwd=tmp_path) == ["asyncio"]


#: The integrations, each with an optional library: (module, the library's import name, the extra).
INTEGRATIONS = [
    ("animedex_store.integrations.requests_cache", "requests_cache", "requests-cache"),
    ("animedex_store.integrations.hishel", "hishel", "hishel"),
    ("animedex_store.integrations.aiohttp_client_cache", "aiohttp_client_cache", "aiohttp-client-cache"),
    ("animedex_store.integrations.cachecontrol", "cachecontrol", "cachecontrol"),
    ("animedex_store.integrations.django", "django", "django"),
]
#: What the integrations' libraries import, which the package must not load without them.
WEB = (
    "requests",
    "requests_cache",
    "hishel",
    "httpx",
    "anyio",
    "aiohttp",
    "cachecontrol",
    "msgpack",
    "yarl",
    "django",
    "asgiref",
)


@pytest.mark.parametrize(("module", "library", "extra"), INTEGRATIONS)
def test_an_integration_needs_its_library_only_when_imported(
    tmp_path: Path, module: str, library: str, extra: str
) -> None:
    """Without the library the package imports as ever, loading no HTTP package; the integration's
    module says which extra to install."""
    code = f"""
sys.modules[{library!r}] = None  # as if it were not installed
import animedex_store, animedex_store.sqlite, animedex_store.integrations
loaded = sorted(name for name in {WEB!r} if sys.modules.get(name) is not None)
heavy = heavy_loaded()
try:
    import {module}
    outcome = "imported"
except ImportError as error:
    outcome = str(error)
print(json.dumps({{"outcome": outcome, "loaded": loaded, "heavy": heavy}}))
"""
    report = run_fresh(code, cwd=tmp_path)
    assert report == {"outcome": report["outcome"], "loaded": [], "heavy": []}
    assert f"pip install 'animedex-store[{extra}]'" in report["outcome"]


def test_only_the_integrations_import_an_optional_cache_library() -> None:
    """Everything that needs an optional cache library (or what only they bring) lives in
    ``animedex_store/integrations/``: no other module of the package imports one."""
    libraries = {library for _module, library, _extra in INTEGRATIONS} | set(WEB) | {"itsdangerous"}
    found = []
    for path, tree in package_sources():
        if path.startswith("animedex_store/integrations/"):
            continue
        for node in ast.walk(tree):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            found += [f"{path}: {name}" for name in names if name.split(".")[0] in libraries]
    assert found == []
