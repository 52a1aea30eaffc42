"""What aiohttp-client-cache's own tests don't cover: the serializer without pickle (every field, planted
and damaged rows, pickle only by choice), rows' TTLs, deleting expired responses chosen on the rows,
one database shared by every adapter and animedex, ``copy`` between engines and the CLI listing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import pytest

if sys.version_info < (3, 11):
    pytest.skip("aiohttp-client-cache 0.15 needs Python 3.11 or later", allow_module_level=True)

import attr  # noqa: E402
import time_machine  # noqa: E402
from aiohttp_client_cache import CacheBackend, CachedResponse, CachedSession  # noqa: E402
from cli_runner import cli_runner  # noqa: E402
from conftest import ENGINES  # noqa: E402
from httpbin import app as httpbin_app  # noqa: E402
from itsdangerous.exc import BadSignature  # noqa: E402
from local_server import serving  # noqa: E402
from planted import DEEP_JSON, HUGE_JSON_NUMBER, NOT_TEXT, planted_pickle, truncated, unreadable_logged  # noqa: E402

from animedex_store import AsyncCacheRepository, CacheRepository  # noqa: E402
from animedex_store.cli import cli  # noqa: E402
from animedex_store.core.clock import FrozenClock  # noqa: E402
from animedex_store.core.validation import KEY_MAX_LENGTH  # noqa: E402
from animedex_store.integrations import aiohttp_client_cache as adapter  # noqa: E402
from animedex_store.integrations.aiohttp_client_cache import ResponseSerializer, StoreBackend, StoreCache, namespace  # noqa: E402
from animedex_store.ops.copy import copy_store  # noqa: E402

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


@pytest.fixture(scope="module")
def httpbin() -> Iterator[str]:
    with serving(httpbin_app) as url:
        yield url


def response(url: str, *, expires: datetime | None = None, body: bytes = b"{}") -> CachedResponse:
    """A cached response made here, not fetched."""
    return CachedResponse(method="GET", reason="OK", status=200, url=url, version="1.1", body=body, expires=expires)


@contextlib.asynccontextmanager
async def opened(backend: StoreBackend) -> AsyncIterator[StoreBackend]:
    """``backend``, closed afterwards (a ``CacheBackend`` is no context manager)."""
    try:
        yield backend
    finally:
        await backend.close()


def test_a_session_caches_and_reads_back_through_the_store(engine_url: str, httpbin: str) -> None:
    async def main() -> list[tuple[bool, bytes]]:
        async with CachedSession(cache=StoreBackend("http_cache", engine_url, expire_after=3600)) as session:
            answers = [await session.get(httpbin + "get?anime=1") for _ in range(2)]
            return [(answer.from_cache, await answer.read()) for answer in answers]

    (first_from_cache, first), (second_from_cache, second) = run(main())
    assert (first_from_cache, second_from_cache, second) == (False, True, first)


def test_the_serializer_keeps_every_field_of_a_real_response(httpbin: str) -> None:
    """Responses fetched from httpbin (a redirect history, cookies, links, non-ASCII header bytes, a
    binary body) come back from the serializer's bytes equal, field by field."""
    paths = [
        "redirect/2",
        "cookies/set?anime=bebop",
        "response-headers?Link=%3Chttps%3A%2F%2Fanime.example%2F2%3E%3B%20rel%3D%22next%22&X-Title=Kan%C3%A9",
        "bytes/256?seed=7",
    ]

    async def fetched() -> list[CachedResponse]:
        cache = CacheBackend(expire_after=3600)  # the library's own, in memory: its live objects
        async with CachedSession(cache=cache) as session:
            for path in paths:
                await session.get(httpbin + path)
            return [value async for value in cache.responses.values()]

    originals = run(fetched())
    assert len(originals) == len(paths)
    fields = [name for name in attr.fields_dict(CachedResponse) if name != "_content"]  # _content: a stream, rebuilt
    assert sorted(adapter._FIELDS) == sorted(fields)  # a field the serializer does not know fails here
    for original in originals:
        copy = ResponseSerializer.loads(ResponseSerializer.dumps(original))
        assert [getattr(copy, name) for name in fields] == [getattr(original, name) for name in fields]
    redirected, cookies, linked, binary = originals
    assert len(redirected.history) == 2 and cookies.history[0].cookies["anime"].value == "bebop"  # set by the 302
    assert linked.links["next"]["url"].host == "anime.example"
    assert (b"X-Title", b"Kan\xe9") in linked.raw_headers  # a header byte outside ASCII, as it came
    assert ResponseSerializer.dumps(binary).endswith(b"\0" + binary._body)  # the body as it is, after the JSON


def test_a_planted_pickle_runs_no_code_unless_pickle_is_chosen(tmp_path: Path, engine_url: str) -> None:
    marker = tmp_path / "pwned"
    planted = planted_pickle(marker)

    async def main() -> None:
        async with opened(StoreBackend("shared", engine_url)) as backend:
            await backend.repository.set(backend.responses.backend, "planted", planted, ttl_seconds=3600)
            assert await backend.get_response("planted") is None  # unreadable: a miss, no code run
            assert not marker.exists()
            signed = StoreCache("shared", serializer="pickle", secret_key="s3cret", repository=backend.repository)
            with pytest.raises(BadSignature):  # pickle chosen, and signed: an unsigned row is refused, loudly
                await signed.read("planted")
            assert not marker.exists()
            # The control: a reader that chose plain pickle does run it. The row really is a live pickle.
            await StoreCache("shared", serializer="pickle", repository=backend.repository).read("planted")
            assert marker.exists()

    run(main())


def _written() -> bytes:
    """A response as :class:`ResponseSerializer` writes it, to plant in pieces and with wrong fields."""
    return ResponseSerializer.dumps(response("https://anime.example/1", body=b'{"id": 1}'))


#: Rows :class:`ResponseSerializer` never writes: each reads as a miss, logged once, never raising.
PLANTED = {
    "a pickle": planted_pickle(Path("never-created")),
    "100,000 nested arrays": DEEP_JSON,
    "a number of 100,001 digits": b'{"value": ' + HUGE_JSON_NUMBER + b"}",
    "a number too large for a float": _written().replace(b'"status":200', b'"status":1e999'),
    "a status of the wrong type": _written().replace(b'"status":200', b'"status":"OK"'),
    "a body past the end": _written().replace(b'"_body":[0,9]', b'"_body":[0,99999]'),
    "a value that is no redirect": b'{"value": [1, 2]}',
    "JSON of neither": b"[1, 2]",
    "a response cut short": truncated(_written()),
    "a response missing fields": b'{"response": {"method": "GET"}}\0',
    "bytes that are not text": NOT_TEXT,
}


@pytest.fixture(scope="module", params=ENGINES)
def planted_on(request: pytest.FixtureRequest, module_databases: Callable[[str], str]) -> str:
    """One database of this module per engine, for the planted rows."""
    return module_databases(request.param)


@pytest.mark.parametrize("planted", PLANTED)
def test_a_planted_row_is_a_miss_logged_once(planted_on: str, planted: str, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> tuple[Any, Any, list[Any]]:
        async with StoreBackend("planted", planted_on) as backend:
            await backend.repository.set(backend.responses.backend, planted, PLANTED[planted], ttl_seconds=60)
            with caplog.at_level("WARNING"):
                read = await backend.responses.read(planted)
            unreadable_logged(caplog, "animedex_store.integrations.aiohttp_client_cache", planted)
            values = await backend.responses.read_many([planted])
            return read, await backend.get_response(planted), list(values)

    assert run(main()) == (None, None, [])


def test_rows_expire_with_their_responses(engine_url: str) -> None:
    clock = FrozenClock(datetime.now(timezone.utc).replace(microsecond=0))
    now = clock().replace(tzinfo=None)

    async def main() -> None:
        async with (
            AsyncCacheRepository(engine_url, clock=clock) as repository,
            opened(StoreBackend(repository=repository)) as backend,
        ):
            await backend.responses.write(
                "soon", response("https://anime.example/1", expires=now + timedelta(seconds=60.5))
            )
            await backend.responses.write("never", response("https://anime.example/2"))
            await backend.redirects.write("alias", "never")
            rows = {key.signature: key.expires_at async for key in repository.keys(backend.responses.backend)}
            assert rows["soon"] == clock() + timedelta(seconds=61)  # rounded up: never before the response
            assert {key.expires_at.year async for key in repository.keys(backend.redirects.backend)} == {9999}
            assert rows["never"].year == 9999  # reads report the year 9999 for a row that never expires
            clock.advance(61)
            assert [key async for key in backend.responses.keys()] == ["never"]

    run(main())


def test_deleting_expired_responses_reads_only_those_its_rows_cannot_tell(tmp_path: Path) -> None:
    """Rows keep whole seconds, rounded up: a response within a second past its ``expires`` still has
    a live row, and is read to tell; every other one is chosen on its row alone."""
    moment = datetime(2026, 6, 1, 12, 0, 0, 200_000, tzinfo=timezone.utc)
    naive = moment.replace(tzinfo=None)
    expiries = {
        "long-gone": naive - timedelta(hours=1),
        "just-gone": naive - timedelta(seconds=0.1),  # row until 12:00:01
        "nearly": naive + timedelta(seconds=0.7),  # row until 12:00:01 too
        "later": naive + timedelta(hours=1),
    }

    async def main() -> tuple[list[str], dict[str, Any], set[str]]:
        read: set[str] = set()
        async with opened(StoreBackend("expiring", tmp_path / "http.sqlite")) as backend:
            responses, deserialize = backend.responses, backend.responses.deserialize

            def counted(payload: bytes) -> Any:
                value = deserialize(payload)
                read.add(value.url.path.strip("/"))
                return value

            with time_machine.travel(moment, tick=False):  # the library's clock and the repository's
                for name, expires in expiries.items():
                    await responses.write(name, response(f"https://anime.example/{name}", expires=expires))
                    await backend.redirects.write(f"alias-of-{name}", name)
                responses.deserialize = counted  # type: ignore[method-assign]
                await backend.delete_expired_responses()
                responses.deserialize = deserialize  # type: ignore[method-assign]
                redirects = {key: value async for key, value in backend.redirects.items()}
                return [key async for key in responses.keys()], redirects, read

    kept, redirects, read = run(main())
    assert kept == ["later", "nearly"]
    assert redirects == {"alias-of-later": "later", "alias-of-nearly": "nearly"}
    assert read == {"just-gone", "nearly"}


def test_bulk_delete_takes_a_redirects_response_and_every_alias_of_it(tmp_path: Path) -> None:
    async def main() -> tuple[list[str], list[str]]:
        async with opened(StoreBackend("bulk", tmp_path / "http.sqlite")) as backend:
            for name in ("one", "two"):
                await backend.responses.write(name, response(f"https://anime.example/{name}"))
                await backend.redirects.write(f"first-alias-of-{name}", name)
                await backend.redirects.write(f"second-alias-of-{name}", name)
            await backend.bulk_delete({"first-alias-of-one", "missing"})
            return [key async for key in backend.responses.keys()], [key async for key in backend.redirects.keys()]

    assert run(main()) == (["two"], ["first-alias-of-two", "second-alias-of-two"])


def test_the_serializer_is_chosen_and_checked(tmp_path: Path) -> None:
    repository = AsyncCacheRepository(tmp_path / "http.sqlite")
    assert StoreCache("c", repository=repository).serialize("key") == b'{"value":"key"}'
    assert StoreCache("c", serializer=json, repository=repository).serialize("key") == '"key"'  # as it is
    with pytest.raises(ValueError, match="serializer must be None, 'pickle' or an object"):
        StoreCache("c", serializer="json", repository=repository)
    with pytest.raises(TypeError, match="serializer must have dumps and loads"):
        StoreCache("c", serializer=object(), repository=repository)


def test_one_database_holds_every_adapter_and_animedex_apart(engine_url: str) -> None:
    """requests-cache, aiohttp-client-cache, CacheControl and animedex rows side by side: each reads
    its own, and clearing one namespace leaves the others."""
    cachecontrol = pytest.importorskip("animedex_store.integrations.cachecontrol")
    requests_cache = pytest.importorskip("animedex_store.integrations.requests_cache")
    with CacheRepository(engine_url) as sync_repository:
        rc = requests_cache.StoreDict("shared", repository=sync_repository)
        cc = cachecontrol.StoreCache(repository=sync_repository)
        rc["key"] = "requests-cache"
        cc.set("key", b"cachecontrol")
        cc.set_body("key", b"cachecontrol body")
        sync_repository.set("anilist", "key", b"animedex", ttl_seconds=3600)

        async def aiohttp_side() -> Any:
            async with opened(StoreBackend("shared", engine_url)) as backend:
                await backend.responses.write("key", "aiohttp-client-cache")
                value = await backend.responses.read("key")
                await backend.responses.clear()
                return value

        assert run(aiohttp_side()) == "aiohttp-client-cache"
        backends = set(sync_repository.stats().backends)
        assert backends == {"rc:6:shared:responses", "cachecontrol:responses", "cachecontrol:bodies", "anilist"}
        assert (rc["key"], cc.get("key"), cc.get_body("key").read()) == (  # type: ignore[union-attr]
            "requests-cache",
            b"cachecontrol",
            b"cachecontrol body",
        )
        rc.clear()
        assert sync_repository.get("anilist", "key") == b"animedex" and cc.get("key") == b"cachecontrol"


def test_a_name_too_long_for_a_key_is_hashed_and_still_kept_apart() -> None:
    long_name = "x" * KEY_MAX_LENGTH
    assert namespace("aiohttp-cache", "responses") == "acc:13:aiohttp-cache:responses"
    first, second = namespace(long_name, "responses"), namespace(long_name, "redirects")
    assert first.startswith("acc:sha256:") and len(first) <= KEY_MAX_LENGTH and first != second


def test_copy_moves_an_aiohttp_namespace_between_engines(
    tmp_path: Path, open_sandbox: Callable[[str], str], httpbin: str
) -> None:
    source = f"sqlite:///{tmp_path / 'http.sqlite'}"

    async def get_twice(target: str) -> list[bool]:
        async with CachedSession(cache=StoreBackend(target=target, expire_after=3600)) as session:
            return [(await session.get(httpbin + "get?copied=1")).from_cache for _ in range(2)]

    assert run(get_twice(source)) == [False, True]
    for server in ("postgresql", "mariadb"):
        destination = open_sandbox(server)
        assert copy_store(source, destination).rows_copied == 1
        assert run(get_twice(destination)) == [True, True]


def test_the_cli_lists_a_namespace_with_expiry_and_size(tmp_path: Path, httpbin: str) -> None:
    path = tmp_path / "http.sqlite"

    async def main() -> tuple[str, int]:
        async with CachedSession(cache=StoreBackend(target=path, expire_after=3600)) as session:
            await session.get(httpbin + "get")
            responses = session.cache.responses
            (key,) = [key async for key in responses.keys()]
            return key, len(responses.serialize(await responses.read(key)))

    key, size = run(main())
    result = cli_runner().invoke(cli, ["keys", "acc:13:aiohttp-cache:responses", "--url", str(path), "--json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)["keys"]
    assert (row["signature"], row["bytes"], row["expired"]) == (key, size, False)
    expires_at = datetime.fromisoformat(row["expires_at"])
    assert timedelta(minutes=59) < expires_at - datetime.now(timezone.utc) <= timedelta(hours=1, seconds=2)
