"""What hishel's own tests don't cover, on every engine: entries as rows, streaming and memory, TTL and
TTI in fractions of a second on the repository's clock, removal under a reader, failures, corrupt and
planted rows, the size cap across repositories, two processes on one PostgreSQL store, the async
class, and importing the package without hishel."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

if sys.version_info < (3, 10):
    pytest.skip("hishel 2.0 needs Python 3.10 or later", allow_module_level=True)

import httpx  # noqa: E402
import msgpack  # noqa: E402
from at_head import build_at_head  # noqa: E402
from conftest import ENGINES, SERVER_URLS  # noqa: E402
from fresh_interpreter import run_fresh  # noqa: E402
from hishel import Entry, Headers, Request, Response  # noqa: E402
from hishel.httpx import AsyncCacheClient, CacheClient  # noqa: E402
from planted import DEEP_MSGPACK, NOT_TEXT, planted_pickle, truncated, unreadable_logged  # noqa: E402

from animedex_store import AsyncCacheRepository, CacheRepository  # noqa: E402
from animedex_store.core.clock import FrozenClock  # noqa: E402
from animedex_store.integrations.hishel import CHUNK_SIZE, GRACE_SECONDS, AsyncStoreStorage, StoreStorage, backends  # noqa: E402
from animedex_store.integrations.hishel import rows as hishel_rows  # noqa: E402

START = datetime(2026, 1, 1, 0, 0, 0, 250_000, tzinfo=timezone.utc)  # a quarter past a whole second
KEY = "GET https://anime.example/media/1"
BIG = bytes(range(256)) * (CHUNK_SIZE // 256 * 2 + 3)  # two chunk rows and a bit


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
def repository(engine_url: str, clock: FrozenClock) -> Iterator[CacheRepository]:
    build_at_head(engine_url, SERVER_URLS)
    with CacheRepository(engine_url, clock=clock) as repository:
        yield repository


@pytest.fixture
def storage(repository: CacheRepository) -> StoreStorage:
    return StoreStorage(repository=repository, namespace=f"t-{uuid.uuid4().hex[:8]}")


def _request(headers: dict[str, str | list[str]] | None = None) -> Request:
    return Request(method="GET", url="https://anime.example/media/1", headers=Headers(headers or {}))


def _response(*chunks: bytes, headers: dict[str, str | list[str]] | None = None) -> Response:
    return Response(status_code=200, headers=Headers(headers or {}), stream=iter(chunks))


def _read(entry: Entry) -> bytes:
    stream = entry.response.stream
    assert isinstance(stream, Iterator)
    return b"".join(stream)


def _store(storage: StoreStorage, *chunks: bytes, key: str = KEY, **options: Any) -> Entry:
    """An entry created and its body read to the end, as a client does."""
    headers = options.pop("headers", None)
    request = options.pop("request", _request())
    entry = storage.create_entry(request, _response(*chunks, headers=headers), key, **options)
    _read(entry)
    return entry


def _rows(storage: StoreStorage, key: str = KEY) -> dict[str, int]:
    """Rows of the storage's namespace, expired ones too, per kind."""
    names = backends(storage.namespace)
    count = storage.repository.count
    return {
        backend: count(name, include_expired=True)
        for backend, name in (("entries", names.entries), ("chunks", names.chunks), ("key", names.of_key(key)))
    }


def test_a_key_holds_several_entries_with_their_headers_whole(storage: StoreStorage) -> None:
    english = _request({"Accept-Language": "en", "Cookie": ["a=1", "b=2"]})
    japanese = _request({"Accept-Language": "ja"})
    cookies = {"Set-Cookie": ["x=1", "y=2"], "Vary": "Accept-Language", "X-Title": "カウボーイビバップ"}
    first = _store(storage, b"hello", request=english, headers=cookies)
    second = _store(storage, b"konnichiwa", request=japanese)
    found = storage.get_entries(KEY)
    assert [entry.id for entry in found] == [first.id, second.id]  # oldest first, ids as created
    assert [entry.id for entry in storage.get_entries(KEY)] == [first.id, second.id]  # stable
    assert found[0].request.headers == english.headers and found[1].request.headers == japanese.headers
    assert found[0].response.headers.get_list("set-cookie") == ["x=1", "y=2"]
    assert found[0].response.headers["x-title"] == "カウボーイビバップ"
    assert [_read(entry) for entry in found] == [b"hello", b"konnichiwa"]


def test_entries_of_one_millisecond_list_in_the_order_they_were_created(
    storage: StoreStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An entry's id carries the millisecond it was made in; ids of one millisecond (here all of
    them: the ids' clock is stopped, and behind the last id made) still count up, oldest first."""
    monkeypatch.setattr(hishel_rows, "time", SimpleNamespace(time_ns=lambda: 1_700_000_000_000_000_000))
    created = [_store(storage, f"body {number}".encode()).id for number in range(20)]
    assert [entry.id for entry in storage.get_entries(KEY)] == created


def test_keys_of_any_length_and_script_are_kept_apart(storage: StoreStorage) -> None:
    long_key, other_long_key = "k" * 1000, "k" * 999 + "j"
    _store(storage, b"long", key=long_key)
    _store(storage, b"other", key=other_long_key)
    _store(storage, b"cyrillic", key="ключ")
    assert [_read(entry) for entry in storage.get_entries(long_key)] == [b"long"]
    assert [_read(entry) for entry in storage.get_entries("ключ")] == [b"cyrillic"]
    assert storage.get_entries("k") == []


def test_a_body_is_saved_as_it_is_read_and_invisible_until_complete(storage: StoreStorage) -> None:
    entry = storage.create_entry(_request(), _response(BIG[:CHUNK_SIZE], BIG[CHUNK_SIZE:]), KEY)
    stream = entry.response.stream
    assert isinstance(stream, Iterator)
    assert next(stream) == BIG[:CHUNK_SIZE]
    next(stream)  # the first chunk is written once the second arrives
    assert storage.get_entries(KEY) == [] and _rows(storage)["chunks"] >= 1
    assert list(stream) == []
    (found,) = storage.get_entries(KEY)
    assert _read(found) == BIG and _rows(storage) == {"entries": 1, "chunks": 3, "key": 1}


@pytest.mark.parametrize("how", ["closed", "upstream failed"])
def test_an_unfinished_stream_leaves_nothing_behind(storage: StoreStorage, how: str) -> None:
    def upstream() -> Iterator[bytes]:
        yield from (BIG[:CHUNK_SIZE], BIG[CHUNK_SIZE : 2 * CHUNK_SIZE], b"more")
        raise ConnectionError("the upstream went away")

    response = Response(status_code=200, headers=Headers({}), stream=upstream())
    stream = storage.create_entry(_request(), response, KEY).response.stream
    assert isinstance(stream, Iterator)
    next(stream), next(stream), next(stream)  # two chunk rows written
    assert _rows(storage)["chunks"] == 2
    if how == "closed":
        stream.close()  # as httpx and requests do when the consumer stops reading
    else:
        with pytest.raises(ConnectionError):
            next(stream)  # the consumer sees the upstream's error
    assert _rows(storage) == {"entries": 0, "chunks": 0, "key": 0}
    assert storage.get_entries(KEY) == []


def test_a_body_over_max_stream_size_reaches_the_consumer_uncached(repository: CacheRepository) -> None:
    storage = StoreStorage(repository=repository, namespace="capped", max_stream_size=CHUNK_SIZE + 10)
    entry = _store(storage, BIG[:CHUNK_SIZE], BIG[CHUNK_SIZE:])
    assert entry.id and storage.get_entries(KEY) == []
    assert _rows(storage) == {"entries": 0, "chunks": 0, "key": 0}


def test_a_fractional_ttl_is_kept_to_the_fraction(storage: StoreStorage, clock: FrozenClock) -> None:
    _store(storage, b"body", ttl=1.5)  # stored at .25: expires at 1.75, inside the row's whole second 2
    clock.advance(1.4)
    assert len(storage.get_entries(KEY)) == 1
    clock.advance(0.2)
    assert storage.get_entries(KEY) == []


def test_a_read_restarts_the_tti_writing_once_half_of_it_has_passed(storage: StoreStorage, clock: FrozenClock) -> None:
    _store(storage, b"body", tti=10)
    key_rows = backends(storage.namespace).of_key(KEY)

    def row_expiry() -> datetime:
        (row,) = storage.repository.keys(key_rows, include_expired=True)
        return row.expires_at

    stored_expiry = row_expiry()
    clock.advance(4)
    assert len(storage.get_entries(KEY)) == 1 and row_expiry() == stored_expiry  # under half the TTI: no write
    clock.advance(4)  # 8 s idle: restarted, and written
    assert len(storage.get_entries(KEY)) == 1 and row_expiry() > stored_expiry
    clock.advance(8)  # 16 s after storing, 8 after the last read
    assert len(storage.get_entries(KEY)) == 1
    clock.advance(10.5)
    assert storage.get_entries(KEY) == []


def test_ttl_bounds_an_entry_however_often_it_is_read(storage: StoreStorage, clock: FrozenClock) -> None:
    _store(storage, b"body", ttl=12, tti=10)
    for _ in range(2):
        clock.advance(5.5)  # each read restarts the TTI: idle, it would expire at 21
        assert len(storage.get_entries(KEY)) == 1
    clock.advance(1.5)
    assert storage.get_entries(KEY) == []


def test_removal_hides_an_entry_at_once_while_a_reader_finishes(storage: StoreStorage, clock: FrozenClock) -> None:
    _store(storage, BIG)
    (reading,) = storage.get_entries(KEY)
    stream = reading.response.stream
    assert isinstance(stream, Iterator)
    first = next(stream)
    storage.remove_entry(reading.id)
    storage.remove_entry(reading.id)  # gone already: nothing
    assert storage.get_entries(KEY) == []
    clock.advance(GRACE_SECONDS - 1)
    assert first + b"".join(stream) == BIG  # the reader that had started finishes
    assert _rows(storage)["chunks"] == 3
    clock.advance(2)
    _store(storage, b"next", key="another")  # writing reclaims what was removed a grace period ago
    assert _rows(storage) == {"entries": 1, "chunks": 0, "key": 0}


def test_a_reader_past_the_grace_period_gets_an_error_not_a_short_body(
    storage: StoreStorage, clock: FrozenClock
) -> None:
    _store(storage, BIG)
    (reading,) = storage.get_entries(KEY)
    stream = reading.response.stream
    assert isinstance(stream, Iterator)
    next(stream)
    storage.remove_entry(reading.id)
    clock.advance(GRACE_SECONDS + 1)
    _store(storage, b"next", key="another")
    with pytest.raises(RuntimeError, match="reclaimed while it was being read"):
        list(stream)


def test_expired_entries_and_dead_writers_are_reclaimed(storage: StoreStorage, clock: FrozenClock) -> None:
    _store(storage, BIG, ttl=5)
    abandoned = storage.create_entry(_request(), _response(BIG[:CHUNK_SIZE], b"x"), "dead writer").response.stream
    assert isinstance(abandoned, Iterator)
    next(abandoned), next(abandoned)  # a chunk written; then the process "dies" (the stream is never closed)
    assert _rows(storage)["chunks"] == 4
    clock.advance(5 + GRACE_SECONDS + 1)
    _store(storage, b"next", key="another")
    assert _rows(storage) == {"entries": 1, "chunks": 0, "key": 0}


def test_update_headers_replaces_the_response_headers_only(storage: StoreStorage) -> None:
    entry = _store(storage, b"body", headers={"ETag": '"v1"', "Set-Cookie": ["a=1", "b=2"]})
    storage.update_headers(entry.id, Headers({"ETag": '"v2"', "Set-Cookie": ["c=3", "d=4"]}))
    storage.update_headers(uuid.uuid4(), Headers({}))  # no such entry: nothing
    (found,) = storage.get_entries(KEY)
    assert found.response.headers.get_list("set-cookie") == ["c=3", "d=4"] and found.response.headers["etag"] == '"v2"'
    assert _read(found) == b"body"


def test_a_storage_failure_never_fails_the_response(engine_url: str, clock: FrozenClock) -> None:
    build_at_head(engine_url, SERVER_URLS)
    repository = CacheRepository(engine_url, clock=clock)
    storage = StoreStorage(repository=repository)
    entry = _store(storage, b"body")
    repository.close()  # every call now raises StoreError, as a server that went away does
    assert storage.get_entries(KEY) == []  # a miss: the request goes upstream
    created = storage.create_entry(_request(), _response(BIG[:CHUNK_SIZE], BIG[CHUNK_SIZE:]), KEY)
    assert _read(created) == BIG  # served whole, uncached
    storage.update_headers(entry.id, Headers({}))
    storage.remove_entry(entry.id)


def test_a_closed_storage_refuses_lookups_and_closes_only_its_own_repository(
    engine_url: str, repository: CacheRepository
) -> None:
    shared = StoreStorage(repository=repository)
    shared.close()
    shared.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        shared.get_entries(KEY)
    assert repository.get("any", "row") is None  # a handed-in repository stays open
    own = StoreStorage(engine_url)
    own.close()
    with pytest.raises(Exception, match="closed"):
        own.repository.get("any", "row")


def _entry_row(**changes: Any) -> bytes:
    """An entry's row as the storage writes it, with ``changes`` to its fields."""
    fields = {
        "format": hishel_rows.FORMAT,
        "key": KEY,
        "state": "stored",
        "restarted": 0.0,
        "method": "GET",
        "url": "https://anime.example/media/1",
        "request_headers": {},
        "status": 200,
        "response_headers": {"etag": ['"v1"']},
        "deadline": None,
        "tti": None,
        "chunks": 0,
        "body": b"planted body",
    }
    fields.update(changes)
    packed: bytes = msgpack.packb(list(fields.values()), use_bin_type=True)
    return packed


#: Entry rows the storage never writes: each is dropped from the lookup, logged once, never raising.
PLANTED = {
    "a pickle": planted_pickle(Path("never-created")),
    "100,000 nested arrays": DEEP_MSGPACK,
    "msgpack that is not an entry": msgpack.packb([1, KEY, "stored", 0.0, "GET"]),
    "a status of the wrong type": _entry_row(status="200"),
    "a status out of range": _entry_row(status=2**64 - 1),
    "an infinite deadline": _entry_row(deadline=float("inf")),
    "headers of the wrong type": _entry_row(response_headers={"etag": '"v1"'}),
    "a negative chunk count": _entry_row(chunks=-3),
    "an entry cut short": truncated(_entry_row()),
    "bytes that are not msgpack": NOT_TEXT,
}


@pytest.fixture(scope="module", params=ENGINES)
def planted_on(request: pytest.FixtureRequest, module_databases: Callable[[str], str]) -> Iterator[CacheRepository]:
    """A repository on one database of this module per engine, for the planted rows."""
    with CacheRepository(module_databases(request.param)) as repository:
        yield repository


def _plant(storage: StoreStorage, payload: bytes) -> str:
    """An entry row of ``KEY`` holding ``payload``, listed under the key; its id."""
    planted = uuid.uuid4().hex
    names = backends(storage.namespace)
    storage.repository.set(names.entries, planted, payload, ttl_seconds=3600)
    storage.repository.set(names.of_key(KEY), planted, b"", ttl_seconds=3600)
    return planted


@pytest.mark.parametrize("planted", PLANTED)
def test_a_planted_row_is_dropped_logged_once_and_the_lookup_goes_on(
    planted_on: CacheRepository, planted: str, caplog: pytest.LogCaptureFixture
) -> None:
    storage = StoreStorage(repository=planted_on, namespace=f"t-{uuid.uuid4().hex[:8]}")
    good = _store(storage, b"good")
    bad = _plant(storage, PLANTED[planted])
    with caplog.at_level("WARNING"):
        assert [entry.id for entry in storage.get_entries(KEY)] == [good.id]
    unreadable_logged(caplog, "animedex_store.integrations.hishel", bad)
    assert storage.repository.get(backends(storage.namespace).entries, bad) is None  # dropped
    assert _rows(storage) == {"entries": 1, "chunks": 0, "key": 1}


def test_a_row_of_a_newer_format_is_skipped_and_kept(
    planted_on: CacheRepository, caplog: pytest.LogCaptureFixture
) -> None:
    """A fleet mid-upgrade: rows a later version wrote are neither served nor deleted, by lookups and by
    reclaiming alike, and nothing is logged (they are not damaged)."""
    storage = StoreStorage(repository=planted_on, namespace=f"t-{uuid.uuid4().hex[:8]}")
    newer = _entry_row(format=hishel_rows.FORMAT + 1, deadline=0.0)  # expired long ago, by this version's reading
    names = backends(storage.namespace)
    kept = _plant(storage, newer)
    expired = uuid.uuid4().hex
    storage.repository.set(names.entries, expired, newer, ttl_seconds=0)  # reclaimable, if it were ours
    with caplog.at_level("DEBUG", logger="animedex_store"):
        assert storage.get_entries(KEY) == []
        _store(storage, b"another", key="another")  # reclaims what it may
    assert [record for record in caplog.records if record.name.startswith("animedex_store")] == []
    assert storage.repository.get_many(names.entries, [kept]) == {kept: newer}
    assert storage.repository.count(names.entries, include_expired=True) == 3  # both newer rows, and the new entry


def test_max_size_evicts_entries_of_every_repository_sharing_the_store(engine_url: str, clock: FrozenClock) -> None:
    build_at_head(engine_url, SERVER_URLS)
    body = bytes(CHUNK_SIZE // 2)
    with CacheRepository(engine_url, clock=clock) as one, CacheRepository(engine_url, clock=clock) as two:
        # Two repositories, as two processes have: each storage sees the other's rows in the database.
        first = StoreStorage(repository=one, namespace="capped", max_size=4 * CHUNK_SIZE)
        second = StoreStorage(repository=two, namespace="capped", max_size=4 * CHUNK_SIZE)
        for number in range(6):
            clock.advance(1)
            _store(first, body, key=f"first {number}", ttl=3600)
        for number in range(6):
            clock.advance(1)
            _store(second, body, key=f"second {number}", ttl=3600)
        names = backends("capped")
        sizes = [row.size for name in (names.entries, names.chunks) for row in one.keys(name, include_expired=True)]
        assert sum(sizes) <= 4 * CHUNK_SIZE + CHUNK_SIZE  # within a write of the cap
        assert first.get_entries("first 0") == []  # the closest to expiry went first
        assert len(second.get_entries("second 5")) == 1


def test_a_cache_client_hits_through_the_store(engine_url: str) -> None:
    build_at_head(engine_url, SERVER_URLS)
    calls: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        return httpx.Response(200, content=BIG, headers=[("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")])

    from hishel.httpx import CacheTransport

    storage = StoreStorage(engine_url)
    with CacheClient(transport=CacheTransport(httpx.MockTransport(answer), storage=storage)) as client:
        first, second = client.get("https://anime.example/"), client.get("https://anime.example/")
    assert calls == ["https://anime.example/"] and first.content == second.content == BIG
    assert second.extensions["caching"]["from_cache"] and second.headers.get_list("set-cookie") == ["a=1", "b=2"]


def test_the_async_storage_behaves_alike(engine_url: str) -> None:
    build_at_head(engine_url, SERVER_URLS)
    clock = FrozenClock(START)

    async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
        for part in parts:
            yield part

    async def scenario() -> dict[str, Any]:
        async with AsyncCacheRepository(engine_url, clock=clock) as repository:
            storage = AsyncStoreStorage(repository=repository, namespace="async", default_ttl=1.5)
            response = Response(
                200, Headers({"Set-Cookie": ["a=1", "b=2"]}), chunks(BIG[:CHUNK_SIZE], BIG[CHUNK_SIZE:])
            )
            created = (await storage.create_entry(_request(), response, KEY)).response.stream
            assert isinstance(created, AsyncIterator)
            async for _ in created:
                pass
            abandoned = (await storage.create_entry(_request(), _async_response(chunks, BIG), "k2")).response.stream
            assert isinstance(abandoned, AsyncIterator)
            await abandoned.__anext__()
            await abandoned.__anext__()
            await abandoned.aclose()  # as AsyncCacheClient closes an unread body
            (found,) = await storage.get_entries(KEY)
            stream = found.response.stream
            assert isinstance(stream, AsyncIterator)
            body = b"".join([part async for part in stream])
            clock.advance(1.6)
            expired = await storage.get_entries(KEY)
            await storage.close()
            try:
                await storage.get_entries(KEY)
                refused = ""
            except RuntimeError as error:
                refused = str(error)
            names = backends("async")
            chunk_rows = await repository.count(names.chunks, include_expired=True)
            return {
                "body": body == BIG,
                "cookies": found.response.headers.get_list("set-cookie"),
                "expired": expired,
                "refused": refused,
                "chunk rows": chunk_rows,
            }

    report = asyncio.run(scenario())
    assert report["body"] and report["cookies"] == ["a=1", "b=2"] and report["expired"] == []
    assert "closed" in report["refused"] and report["chunk rows"] == 3  # the abandoned body's rows are gone


def _async_response(chunks: Callable[..., AsyncIterator[bytes]], body: bytes) -> Response:
    return Response(200, Headers({}), chunks(body[:CHUNK_SIZE], body[CHUNK_SIZE : 2 * CHUNK_SIZE], b"tail"))


def test_an_async_cache_client_hits_through_the_store(engine_url: str) -> None:
    build_at_head(engine_url, SERVER_URLS)
    from hishel.httpx import AsyncCacheTransport

    async def scenario() -> list[bool]:
        transport = httpx.MockTransport(lambda request: httpx.Response(200, content=b"body"))
        storage = AsyncStoreStorage(engine_url)
        async with AsyncCacheClient(transport=AsyncCacheTransport(transport, storage=storage)) as client:
            responses = [await client.get("https://anime.example/") for _ in range(2)]
        return [response.extensions["caching"]["from_cache"] for response in responses]

    assert asyncio.run(scenario()) == [False, True]


@pytest.mark.server
def test_two_processes_share_one_postgresql_storage(open_sandbox: Callable[[str], str], tmp_path: Path) -> None:
    url = open_sandbox("postgresql")
    build_at_head(url, SERVER_URLS)
    code = """
import httpx
from hishel.httpx import CacheClient, CacheTransport
from animedex_store.integrations.hishel import StoreStorage

url, body = sys.argv[1], sys.argv[2].encode()
upstream = httpx.MockTransport(lambda request: httpx.Response(200, content=body))
with CacheClient(transport=CacheTransport(upstream, storage=StoreStorage(url, namespace="shared"))) as client:
    response = client.get("https://anime.example/media/1")
print(json.dumps({"from_cache": response.extensions["caching"]["from_cache"], "body": response.text}))
"""
    assert run_fresh(code, url, "written by the first", cwd=tmp_path) == {
        "from_cache": False,
        "body": "written by the first",
    }
    # A second process asks for the same URL: it gets the first one's response from the store.
    assert run_fresh(code, url, "never fetched", cwd=tmp_path) == {"from_cache": True, "body": "written by the first"}


def test_arguments_are_checked(repository: CacheRepository) -> None:
    for bad, error in (
        ({"namespace": 1}, TypeError),
        ({"namespace": ""}, ValueError),
        ({"namespace": "n" * 200}, ValueError),
        ({"default_ttl": "1"}, TypeError),
        ({"default_tti": -1}, ValueError),
        ({"max_size": 0}, ValueError),
        ({"max_stream_size": 1.5}, TypeError),
    ):
        with pytest.raises(error):
            StoreStorage(repository=repository, **bad)
    with pytest.raises(TypeError, match="CacheRepository"):
        StoreStorage(repository=AsyncCacheRepository("sqlite://"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="AsyncCacheRepository"):
        AsyncStoreStorage(repository=repository)  # type: ignore[arg-type]


@pytest.mark.slow
def test_a_1_gb_body_streams_through_in_bounded_memory(tmp_path: Path) -> None:
    code = """
import resource
from hishel import Headers, Request, Response
from animedex_store.integrations.hishel import StoreStorage

GB, piece = 1024**3, bytes(range(256)) * 256  # 64 KiB, sent again and again


def upstream():
    for _ in range(GB // len(piece)):
        yield piece


def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


storage = StoreStorage(sys.argv[1])
request = Request("GET", "https://anime.example/big", Headers({}))
warm = storage.create_entry(request, Response(200, Headers({}), iter([piece] * 64)), "warm-up")
for _ in warm.response.stream:
    pass
before = peak_mb()
entry = storage.create_entry(request, Response(200, Headers({}), upstream()), "big")
written = sum(len(chunk) for chunk in entry.response.stream)
(found,) = storage.get_entries("big")
read = sum(len(chunk) for chunk in found.response.stream)
print(json.dumps({"written": written, "read": read, "grew_mb": peak_mb() - before}))
"""
    report = run_fresh(code, str(tmp_path / "big.sqlite"), cwd=tmp_path)
    assert report["written"] == report["read"] == 1024**3
    assert report["grew_mb"] <= 64, report


# -- races: two storages on one database (two processes), one's step run inside the other's -------------
@pytest.fixture
def pair(engine_url: str, clock: FrozenClock) -> Iterator[tuple[StoreStorage, StoreStorage]]:
    """Two storages of one namespace on two repositories of one database, on one clock."""
    build_at_head(engine_url, SERVER_URLS)
    with CacheRepository(engine_url, clock=clock) as one, CacheRepository(engine_url, clock=clock) as two:
        yield StoreStorage(repository=one, namespace="raced"), StoreStorage(repository=two, namespace="raced")


def _after_reading_entry(
    monkeypatch: pytest.MonkeyPatch, storage: StoreStorage, entry_id: uuid.UUID, step: Callable[[], None]
) -> None:
    """Run ``step`` once, right after ``storage`` has read the row of ``entry_id`` (before it writes)."""
    operations = storage.repository._ops
    read = operations.get
    names = backends(storage.namespace)

    async def get(backend: str, signature: str) -> bytes | None:
        found = await read(backend, signature)
        if (backend, signature) == (names.entries, entry_id.hex):
            monkeypatch.setattr(operations, "get", read)
            step()
        return found

    monkeypatch.setattr(operations, "get", get)


def _all_rows(storage: StoreStorage, key: str = KEY) -> dict[str, int]:
    names = backends(storage.namespace)
    count = storage.repository.count
    return {kind: count(getattr(names, kind), include_expired=True) for kind in ("entries", "chunks", "removed")} | {
        "key": count(names.of_key(key), include_expired=True)
    }


def test_a_tti_restart_never_brings_back_an_entry_removed_meanwhile(
    pair: tuple[StoreStorage, StoreStorage], clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer, reader = pair
    entry = _store(writer, BIG, tti=10)
    clock.advance(6)  # past half the TTI: the reader's lookup restarts it
    _after_reading_entry(monkeypatch, reader, entry.id, lambda: writer.remove_entry(entry.id))
    reader.get_entries(KEY)  # read before the removal: it may still be served to this reader
    assert writer.get_entries(KEY) == [] and reader.get_entries(KEY) == []
    clock.advance(GRACE_SECONDS + 1)
    _store(writer, b"next", key="another")  # reclaims the removed entry's chunks
    assert _all_rows(writer) == {"entries": 1, "chunks": 0, "removed": 0, "key": 0}


def test_a_header_update_never_leaves_a_removed_entry_behind(
    pair: tuple[StoreStorage, StoreStorage], clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An entry with no TTL nor TTI, removed while another process updates its headers: nothing of it
    is left once the grace has passed (an entry row without its key row would never expire)."""
    writer, updater = pair
    entry = _store(writer, BIG, headers={"ETag": '"v1"'})
    _after_reading_entry(monkeypatch, updater, entry.id, lambda: writer.remove_entry(entry.id))
    updater.update_headers(entry.id, Headers({"ETag": '"v2"'}))
    assert writer.get_entries(KEY) == []
    clock.advance(GRACE_SECONDS + 1)
    _store(writer, b"next", key="another")
    assert _all_rows(writer) == {"entries": 1, "chunks": 0, "removed": 0, "key": 0}


def _slow_upstream(
    pieces: int, clock: FrozenClock, every: float, meanwhile: Callable[[int], object]
) -> Iterator[bytes]:
    """A chunk at once, then ``pieces`` pieces of 1 KiB, ``every`` seconds apart by ``clock``; before
    each, ``meanwhile(number)`` (another process at work while this writer waits for its upstream)."""
    yield BIG[:CHUNK_SIZE]
    for number in range(pieces):
        clock.advance(every)
        meanwhile(number)
        yield BIG[CHUNK_SIZE + number * 1024 : CHUNK_SIZE + (number + 1) * 1024]


def test_a_slow_stream_keeps_its_claim(pair: tuple[StoreStorage, StoreStorage], clock: FrozenClock) -> None:
    """1 KiB every 60 s (256 KiB would take four hours): the writer renews its claim by the clock, so
    the other process, storing meanwhile (and reclaiming what has lapsed), never takes its chunks."""
    writer, other = pair
    pieces = 10  # ten minutes, more than three grace periods

    def meanwhile(number: int) -> None:
        _store(other, b"meanwhile", key=f"other {number}")

    response = Response(status_code=200, headers=Headers({}), stream=_slow_upstream(pieces, clock, 60, meanwhile))
    assert _read(writer.create_entry(_request(), response, KEY)) == BIG[: CHUNK_SIZE + pieces * 1024]
    (found,) = other.get_entries(KEY)
    assert _read(found) == BIG[: CHUNK_SIZE + pieces * 1024]


def test_a_writer_whose_claim_lapsed_stores_nothing(
    pair: tuple[StoreStorage, StoreStorage], clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A writer silent for longer than the grace (its upstream stalled, the process suspended) loses its
    claim to another process's reclaiming: it then stores nothing, rather than an entry whose chunks
    are gone, and logs it once; its consumer still gets the whole body."""
    writer, other = pair

    def meanwhile(_number: int) -> None:
        _store(other, b"meanwhile", key="other")  # the writer's claim has lapsed: reclaimed

    response = Response(
        status_code=200, headers=Headers({}), stream=_slow_upstream(1, clock, GRACE_SECONDS + 1, meanwhile)
    )
    with caplog.at_level("WARNING"):
        body = _read(writer.create_entry(_request(), response, KEY))
    assert body == BIG[: CHUNK_SIZE + 1024] and other.get_entries(KEY) == []
    records = [record for record in caplog.records if record.name == "animedex_store.integrations.hishel"]
    assert [record.levelname for record in records] == ["ERROR"] and "uncached" in records[0].getMessage()
    clock.advance(1)
    _store(other, b"later", key="later")
    assert _all_rows(other)["chunks"] == 0


def _statements_storing(storage: StoreStorage, monkeypatch: pytest.MonkeyPatch, key: str) -> int:
    """How many statements storing one entry runs (its body an eighth of ``max_size``: the namespace
    is measured too)."""
    counted = [0]
    connections = storage.repository._ops.db
    for name in ("execute", "executemany", "fetchone", "fetchall"):
        call = getattr(connections, name)

        async def counting(*args: Any, _call: Any = call) -> Any:
            counted[0] += 1
            return await _call(*args)

        monkeypatch.setattr(connections, name, counting)
    assert storage.max_size is not None
    _store(storage, bytes(storage.max_size // 8), key=key, ttl=3600)
    monkeypatch.undo()
    return counted[0]


def test_storing_costs_the_same_statements_however_large_the_namespace(
    repository: CacheRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reclaiming and measuring for ``max_size`` look at the namespace through indexes and sums: a
    store in a namespace of 3,000 entries (three pages of listing) runs what it runs in one of 10."""
    counts = []
    for entries in (10, 3_000):
        storage = StoreStorage(repository=repository, namespace=f"n{entries}", max_size=64 * CHUNK_SIZE)
        names = backends(storage.namespace)
        rows = {uuid.uuid4().hex: _entry_row(key=f"k{number}") for number in range(entries)}
        repository.set_many(names.entries, rows, ttl_seconds=10**9)
        counts.append(_statements_storing(storage, monkeypatch, "measured"))
        assert repository.count(names.entries) == entries + 1  # measured, nothing evicted
    assert counts[0] == counts[1], counts
