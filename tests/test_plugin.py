"""The pytest plugin, seen from an application's test suite: installed package, no conftest.

The application's test files run in a separate ``pytester`` directory, so the
fixtures can only come from the ``pytest11`` entry point.
"""

from __future__ import annotations

import pytest

from animedex_store import CacheRepository
from animedex_store.core.clock import FROZEN_AT
from animedex_store.migrations.revisions import HEAD_REVISION

APPLICATION_TESTS = """
from datetime import datetime, timedelta, timezone

import pytest

START = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_frozen_clock_is_fixed_aware_utc(frozen_clock):
    assert frozen_clock() == START
    assert frozen_clock() == START
    assert frozen_clock().utcoffset() == timedelta(0)


def test_advance_moves_by_seconds_and_returns_the_new_time(frozen_clock):
    assert frozen_clock.advance(90) == START + timedelta(seconds=90)
    assert frozen_clock.advance(-30) == START + timedelta(seconds=60)
    assert frozen_clock() == START + timedelta(seconds=60)


def test_each_test_gets_its_own_clock(frozen_clock):
    assert frozen_clock() == START


def test_set_takes_an_aware_datetime(frozen_clock):
    tokyo_noon = datetime(2030, 5, 1, 12, tzinfo=timezone(timedelta(hours=9)))
    assert frozen_clock.set(tokyo_noon) == tokyo_noon
    assert frozen_clock() == datetime(2030, 5, 1, 3, tzinfo=timezone.utc)


def test_set_takes_a_naive_datetime_as_utc(frozen_clock):
    frozen_clock.set(datetime(2030, 5, 1, 12))
    assert frozen_clock() == datetime(2030, 5, 1, 12, tzinfo=timezone.utc)
    assert frozen_clock().tzinfo is not None


def test_set_refuses_what_is_not_a_datetime(frozen_clock):
    with pytest.raises(TypeError):
        frozen_clock.set("2030-05-01")


def test_repository_first_test_writes_a_row(cache_repository):
    assert cache_repository.get("anilist", "shared") is None
    cache_repository.set("anilist", "shared", b"written by the first test", ttl_seconds=60)
    assert cache_repository.get("anilist", "shared") == b"written by the first test"


def test_repository_second_test_does_not_see_it(cache_repository):
    assert cache_repository.get("anilist", "shared") is None
    assert cache_repository.purge_expired() == 0


def test_repository_expires_rows_on_the_frozen_clock(cache_repository, frozen_clock):
    cache_repository.set("anilist", "media:1", b"x", ttl_seconds=60)
    assert cache_repository.get_with_meta("anilist", "media:1") == (b"x", {}, START)
    frozen_clock.advance(59)
    assert cache_repository.get("anilist", "media:1") == b"x"
    frozen_clock.advance(1)
    assert cache_repository.get("anilist", "media:1") is None
    assert cache_repository.purge_expired() == 1


def test_repository_has_the_v2_columns(cache_repository):
    cache_repository.set_with_meta("jikan", "anime/1", b"{}", response_headers={"ETag": "x"}, ttl_seconds=5)
    assert cache_repository.get_with_meta("jikan", "anime/1")[1] == {"ETag": "x"}
"""

MANY_TESTS = """
import pytest


@pytest.mark.parametrize("index", range(200))
def test_every_repository_starts_empty(cache_repository, frozen_clock, index):
    assert cache_repository.get("anilist", "shared") is None
    cache_repository.set("anilist", "shared", str(index).encode(), ttl_seconds=index)
    frozen_clock.advance(index)
    assert cache_repository.purge_expired() == 1
"""


def test_fixtures_from_an_application_without_conftest(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_app=APPLICATION_TESTS)
    assert not list(pytester.path.glob("conftest.py"))
    # A separate process: the fixtures can only come from the installed entry point.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=120)
    result.assert_outcomes(passed=APPLICATION_TESTS.count("\ndef test_"))


def test_two_hundred_fresh_repositories(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_many=MANY_TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:asyncio")  # sync tests: no async plugin
    result.assert_outcomes(passed=200)


def test_cache_repository_is_in_memory_at_head(cache_repository: CacheRepository) -> None:
    # Private attributes: an application cannot see the revision, this suite can.
    conn = cache_repository._db.conn
    assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(HEAD_REVISION,)]
    assert conn.execute("PRAGMA database_list").fetchall()[0][2] == ""  # no file behind it


def test_frozen_clock_fixture_starts_at_frozen_at(frozen_clock) -> None:
    assert frozen_clock() == FROZEN_AT


ASYNC_APPLICATION_TESTS = """
import asyncio
from datetime import datetime, timezone

import pytest

START = datetime(2026, 1, 1, tzinfo=timezone.utc)


@pytest.fixture
def anyio_backend():
    return "asyncio"


{mark}
async def test_the_first_test_writes_expires_and_fetches(async_cache_repository, frozen_clock):
    repository = async_cache_repository
    assert await repository.get("anilist", "shared") is None
    await repository.set("anilist", "shared", b"x", ttl_seconds=60)
    assert await repository.get_with_meta("anilist", "shared") == (b"x", {{}}, START)
    assert [key.signature async for key in repository.keys("anilist")] == ["shared"]
    frozen_clock.advance(60)
    assert await repository.get("anilist", "shared") is None
    assert await repository.purge_expired() == 1
    calls = []

    async def fetch():
        calls.append(1)
        await asyncio.sleep(0)
        return b"fetched"

    responses = await asyncio.gather(*(repository.get_or_fetch("a", "k", fetch, ttl_seconds=9) for _ in range(5)))
    assert {{response.payload for response in responses}} == {{b"fetched"}} and calls == [1]


{mark}
async def test_the_second_test_sees_none_of_it(async_cache_repository):
    assert await async_cache_repository.count("anilist", include_expired=True) == 0
    assert await async_cache_repository.get("a", "k") is None
"""

_LOOP_SCOPE = ["-o", "asyncio_default_fixture_loop_scope=function"]  # what pytest-asyncio asks to be told
#: How an application's async tests run: pytest-asyncio strict and auto, anyio's plugin alone.
ASYNC_PLUGINS = {
    "pytest-asyncio strict": ("@pytest.mark.asyncio", ["-o", "asyncio_mode=strict", *_LOOP_SCOPE]),
    "pytest-asyncio auto": ("", ["-o", "asyncio_mode=auto", *_LOOP_SCOPE]),
    "anyio": ("@pytest.mark.anyio", ["-p", "no:asyncio"]),
}


@pytest.mark.parametrize("plugin", ASYNC_PLUGINS)
def test_the_async_fixture_under_each_async_test_plugin(pytester: pytest.Pytester, plugin: str) -> None:
    mark, options = ASYNC_PLUGINS[plugin]
    pytester.makepyfile(test_async_app=ASYNC_APPLICATION_TESTS.format(mark=mark))
    # In this process (the fixtures come from the entry point either way): a new interpreter per
    # run would cost seconds of start-up for nothing the test looks at.
    result = pytester.runpytest("-p", "no:cacheprovider", *options)
    result.assert_outcomes(passed=2)


@pytest.mark.server
def test_the_async_fixture_on_a_server(pytester: pytest.Pytester, server_base_url: str) -> None:
    mark, options = ASYNC_PLUGINS["pytest-asyncio strict"]
    pytester.makepyfile(test_async_app=ASYNC_APPLICATION_TESTS.format(mark=mark))
    # In a new interpreter: in this one the server's dialect would be imported a second time.
    url_option = f"--animedex-store-url={server_base_url}"
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *options, url_option, timeout=120)
    result.assert_outcomes(passed=2)
