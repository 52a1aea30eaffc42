"""What requests-cache's own tests don't cover: namespaces, planted rows (a pickle, bad input of every
kind), TTLs and purging, reads chosen on the keys (``sorted`` by every key through an index), ``copy``
of a requests-cache namespace between engines and the CLI listing."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cli_runner import cli_runner
from conftest import ENGINES
from planted import DEEP_JSON, HUGE_JSON_NUMBER, NOT_TEXT, planted_pickle, truncated, unreadable_logged
from requests_cache import CachedSession
from requests_mock import Adapter

from animedex_store import CacheRepository
from animedex_store.cli import cli
from animedex_store.core.clock import FrozenClock
from animedex_store.core.validation import KEY_MAX_LENGTH
from animedex_store.integrations.requests_cache import DEFAULT_TTL_OFFSET, StoreCache, StoreDict, namespace
from animedex_store.ops.copy import copy_store

URL = "http+mock://anime.example/media/1"
BODY = b'{"id": 1, "title": "Cowboy Bebop"}'


def _session(cache: StoreCache, **settings: object) -> CachedSession:
    """A CachedSession on ``cache`` answering ``http+mock://`` URLs itself (no network). Closing the
    session closes the cache (and a repository the cache opened)."""
    session = CachedSession(backend=cache, **settings)
    adapter = Adapter()
    adapter.register_uri("GET", URL, content=BODY, headers={"ETag": '"v1"', "Content-Type": "application/json"})
    for number in range(2, 6):
        adapter.register_uri("GET", URL.replace("/1", f"/{number}"), content=BODY * number)
    session.mount("http+mock://", adapter)
    return session


def test_a_session_caches_and_reads_back_through_the_store(engine_url: str) -> None:
    with _session(StoreCache("http_cache", engine_url), expire_after=3600) as session:
        first = session.get(URL)
        second = session.get(URL)
    assert (first.from_cache, second.from_cache) == (False, True)
    assert second.content == BODY and second.headers["ETag"] == '"v1"'


def test_namespaces_never_see_each_others_keys(engine_url: str) -> None:
    repository = CacheRepository(engine_url)
    try:
        one = StoreDict("a:b", "c", repository=repository)
        two = StoreDict("a", "b:c", repository=repository)  # the same text joined with ':'
        other_table = StoreDict("a:b", "d", repository=repository)
        assert len({one.backend, two.backend, other_table.backend}) == 3
        one["key"], two["key"], other_table["key"] = "one", "two", "other"
        assert (one["key"], two["key"], other_table["key"]) == ("one", "two", "other")
        one.clear()
        assert "key" not in one and (two["key"], other_table["key"]) == ("two", "other")
        assert (len(one), len(two), len(other_table)) == (0, 1, 1)
    finally:
        repository.close()


def test_a_name_too_long_for_a_key_is_hashed_and_still_kept_apart() -> None:
    path_like = "/var/cache/" + "x" * KEY_MAX_LENGTH
    first, second = namespace(path_like, "responses"), namespace(path_like + "y", "responses")
    assert first.startswith("rc:sha256:") and len(first) <= KEY_MAX_LENGTH and first != second
    assert namespace("http_cache", "responses") == "rc:10:http_cache:responses"


def test_a_planted_pickle_runs_no_code_with_the_default_serializer(tmp_path: Path, engine_url: str) -> None:
    marker = tmp_path / "pwned"
    cache = StoreCache("shared", engine_url)
    try:
        cache.repository.set(cache.responses.backend, "planted", planted_pickle(marker), ttl_seconds=3600)
        assert cache.get_response("planted") is None  # unreadable as JSON: no response, no code run
        assert not marker.exists()
        # The control: a reader that chose pickle does run it. The row really is a live pickle.
        picklers = StoreCache("shared", engine_url, serializer="pickle")
        try:
            picklers.responses.get("planted")
        finally:
            picklers.close()
        assert marker.exists()
    finally:
        cache.close()


def test_rows_outlive_their_responses_by_the_offset_then_purge_removes_them(tmp_path: Path) -> None:
    clock = FrozenClock(datetime.now(timezone.utc))
    repository = CacheRepository(tmp_path / "http.sqlite", clock=clock)
    cache = StoreCache("ttl", repository=repository, ttl_offset=600)
    _session(cache, expire_after=60).get(URL)
    key = next(iter(cache.responses))
    (stored,) = repository.keys(cache.responses.backend)
    expires = cache.responses[key].expires
    assert abs(stored.expires_at - (expires + timedelta(seconds=600))) <= timedelta(seconds=2)
    clock.set(expires + timedelta(seconds=600 - 5))  # past the response's expiry: kept for revalidation
    assert key in cache.responses and repository.purge_expired() == 0
    clock.set(expires + timedelta(seconds=600 + 5))  # past the offset: gone
    assert key not in cache.responses
    assert repository.purge_expired() == 1
    assert repository.count(cache.responses.backend, include_expired=True) == 0
    repository.close()


def test_rows_live_and_are_counted_by_the_repository_clock(engine_url: str) -> None:
    """A repository whose clock is a year behind the system's: a response's row still expires
    ``ttl_offset`` after the response, and counting agrees with ``len`` by that clock."""
    clock = FrozenClock(datetime.now(timezone.utc) - timedelta(days=365))
    repository = CacheRepository(engine_url, clock=clock)
    cache = StoreCache("clocked", repository=repository, ttl_offset=600)
    try:
        response = _session(cache).get(URL)
        cache.responses.clear()  # the session's own copy, under the session's key
        expires = clock() + timedelta(hours=1)
        cache.save_response(response, cache_key="k", expires=expires)
        (stored,) = repository.keys(cache.responses.backend, include_expired=True)
        assert abs(stored.expires_at - (expires + timedelta(seconds=600))) < timedelta(seconds=1)
        assert len(cache.responses) == cache.count(expired=False) == 1
        clock.advance(3600)  # the response has expired by the repository's clock; its row stays a while
        assert (len(cache.responses), cache.count(expired=False)) == (1, 0)
        assert [key for key, _ in cache.responses.read_items(expired=True)] == ["k"]
        clock.advance(600)
        assert len(cache.responses) == 0
    finally:
        cache.close()
        repository.close()


def test_a_response_that_never_expires_and_a_redirect_never_expire_as_rows(engine_url: str) -> None:
    cache = StoreCache("forever", engine_url)
    try:
        _session(cache, expire_after=-1).get(URL)
        cache.redirects["alias"] = next(iter(cache.responses))
        far = datetime.now(timezone.utc) + timedelta(days=365 * 1000)
        for backend in (cache.responses.backend, cache.redirects.backend):
            assert [key.expires_at > far for key in cache.repository.keys(backend)] == [True]
    finally:
        cache.close()


def test_ttl_offset_is_checked(engine_url: str) -> None:
    with pytest.raises(TypeError, match="ttl_offset must be int"):
        StoreDict("c", target=engine_url, ttl_offset=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 1"):
        StoreCache("c", engine_url, ttl_offset=0)
    assert StoreDict("c", repository=CacheRepository("sqlite://")).ttl_offset == DEFAULT_TTL_OFFSET


@pytest.fixture
def mixed_cache(engine_url: str) -> Iterator[StoreCache]:
    """Two fresh responses, three expired ones (still stored for revalidation) and a redirect."""
    cache = StoreCache("mixed", engine_url)
    session = _session(cache)
    for number in range(1, 6):
        response = session.get(URL.replace("/1", f"/{number}"))
        expires = datetime.now(timezone.utc) + timedelta(hours=1 if number <= 2 else -1)
        cache.save_response(response, cache_key=f"key{number}", expires=expires)
    for key in [key for key in cache.responses if not key.startswith("key")]:
        del cache.responses[key]
    cache.redirects["alias-of-key1"] = "key1"
    cache.redirects["alias-of-key4"] = "key4"
    yield cache
    cache.close()


def test_counting_sorting_and_filtering_choose_on_the_keys(mixed_cache: StoreCache) -> None:
    loaded: list[str] = []
    load = mixed_cache.responses._load

    def counting_load(key: str, payload: bytes) -> object:
        loaded.append(key)
        return load(key, payload)

    mixed_cache.responses._load = counting_load  # type: ignore[method-assign]
    assert (mixed_cache.count(), mixed_cache.count(expired=False)) == (5, 2)
    assert loaded == []  # counted on the rows' expiry alone
    assert sorted(response.cache_key for response in mixed_cache.filter(expired=False)) == ["key1", "key2"]
    assert sorted(loaded) == ["key1", "key2"]  # the expired ones were never read
    loaded.clear()
    by_size = [response.cache_key for response in mixed_cache.sorted(key="size", reversed=True, limit=2)]
    assert by_size == ["key5", "key4"] and loaded == by_size
    assert [response.cache_key for response in mixed_cache.sorted(key="key", expired=False)] == ["key1", "key2"]
    with pytest.raises(ValueError, match="expires, size, key"):
        mixed_cache.sorted(key="url")


def test_delete_expired_removes_exactly_the_expired_responses_and_their_redirects(mixed_cache: StoreCache) -> None:
    mixed_cache.delete(expired=True)
    assert sorted(mixed_cache.responses) == ["key1", "key2"]
    assert dict(mixed_cache.redirects) == {"alias-of-key1": "key1"}  # key4's redirect went with it


def test_copy_moves_a_requests_cache_namespace_between_engines(
    tmp_path: Path, open_sandbox: Callable[[str], str]
) -> None:
    source = f"sqlite:///{tmp_path / 'http.sqlite'}"
    with _session(StoreCache("http_cache", source), expire_after=3600) as session:
        session.get(URL)
    for server in ("postgresql", "mariadb"):
        destination = open_sandbox(server)
        summary = copy_store(source, destination)
        assert summary.rows_copied == 1
        with _session(StoreCache("http_cache", destination), expire_after=3600) as session:
            copied = session.get(URL)
        assert copied.from_cache and copied.content == BODY


def test_the_cli_lists_a_namespace_with_expiry_and_size(tmp_path: Path) -> None:
    path = tmp_path / "http.sqlite"
    with _session(StoreCache("http_cache", path), expire_after=3600) as session:
        session.get(URL)
        responses = session.cache.responses
        key = next(iter(responses))
        size = len(responses._dump(responses[key]))
    result = cli_runner().invoke(cli, ["keys", "rc:10:http_cache:responses", "--url", str(path), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [(row["signature"], row["bytes"], row["expired"]) for row in report["keys"]] == [(key, size, False)]
    expires_at = datetime.fromisoformat(report["keys"][0]["expires_at"])
    assert timedelta(hours=1) < expires_at - datetime.now(timezone.utc) <= timedelta(hours=2, seconds=5)


#: A response as the default serializer writes it, to plant in pieces and with wrong fields.
_WRITTEN = b'{"_content": "eyJhIjogMX0=", "created_at": "2026-01-01T00:00:00+00:00", "status_code": 200}'
#: Rows the default serializer never writes: each reads as a miss, logged once, never raising.
PLANTED = {
    "a pickle": planted_pickle(Path("never-created")),
    "100,000 nested arrays": DEEP_JSON,
    "a number of 100,001 digits": b'{"status_code": ' + HUGE_JSON_NUMBER + b"}",
    "a number too large for a float": _WRITTEN.replace(b"200", b"1e999"),
    "a status of the wrong type": _WRITTEN.replace(b"200", b'"two hundred"'),
    "a body of the wrong type": _WRITTEN.replace(b'"eyJhIjogMX0="', b"[1, 2]"),
    "JSON that is not a response": b"[1, 2]",
    "a response cut short": truncated(_WRITTEN),
    "bytes that are not text": NOT_TEXT,
}


@pytest.fixture(scope="module", params=ENGINES)
def planted_on(request: pytest.FixtureRequest, module_databases: Callable[[str], str]) -> Iterator[StoreCache]:
    """A cache on one database of this module per engine, for the planted rows."""
    with StoreCache("planted", module_databases(request.param)) as cache:
        yield cache


@pytest.mark.parametrize("planted", PLANTED)
def test_a_planted_row_is_a_miss_logged_once(
    planted_on: StoreCache, planted: str, caplog: pytest.LogCaptureFixture
) -> None:
    cache = planted_on
    cache.repository.set(cache.responses.backend, planted, PLANTED[planted], ttl_seconds=3600)
    with caplog.at_level("WARNING"):
        assert cache.get_response(planted) is None
    unreadable_logged(caplog, "animedex_store.integrations.requests_cache", planted)
    invalid = [response.cache_key for response in cache.filter(valid=False, expired=False, invalid=True)]
    assert planted in invalid  # filter(invalid=True) lists it as requests-cache's own backends do
