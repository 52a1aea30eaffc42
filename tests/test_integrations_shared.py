"""What every integration shares (:mod:`animedex_store.integrations.shared`), and the convention every
public class of the family keeps: the library's arguments, then ``target`` or ``repository=``; ``close()``
closes only what is owned; ``with``; the library named in the docstring and ``repr()``; not kept alive
by a reference cycle of its own once dropped; failures logged under ``animedex_store.integrations``."""

from __future__ import annotations

import asyncio
import gc
import importlib
import sys
import weakref
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from at_head import build_at_head
from conftest import SERVER_URLS
from sessions import sessions_settle, tagged

from animedex_store import AsyncCacheRepository, CacheRepository
from animedex_store.core.validation import KEY_MAX_LENGTH, MAX_TTL_SECONDS
from animedex_store.integrations import shared
from animedex_store.integrations.shared import (
    Backends,
    dangling_redirects,
    fitted_key,
    is_storable_key,
    namespace,
    redirect_targets,
    row_ttl,
)


class Public(NamedTuple):
    """A public class of the family: where it is, the library it serves, what its library's own
    backends take first, and whether it is async."""

    module: str
    name: str
    library: str
    arguments: tuple[str, ...]
    is_async: bool
    python: tuple[int, int]


PUBLIC = [
    Public("requests_cache", "StoreCache", "requests-cache", ("http_cache",), False, (3, 9)),
    Public("requests_cache", "StoreDict", "requests-cache", ("http_cache", "responses"), False, (3, 9)),
    Public("hishel", "StoreStorage", "hishel", (), False, (3, 10)),
    Public("hishel", "AsyncStoreStorage", "hishel", (), True, (3, 10)),
    Public("aiohttp_client_cache", "StoreBackend", "aiohttp-client-cache", ("aiohttp-cache",), True, (3, 11)),
    Public("aiohttp_client_cache", "StoreCache", "aiohttp-client-cache", ("aiohttp-cache", "responses"), True, (3, 11)),
    Public("cachecontrol", "StoreCache", "CacheControl", (), False, (3, 10)),
]


def _class(public: Public) -> Any:
    if sys.version_info < public.python:
        pytest.skip(f"{public.library} needs Python {'.'.join(map(str, public.python))} or later")
    return getattr(importlib.import_module(f"animedex_store.integrations.{public.module}"), public.name)


def _close(obj: Any, public: Public) -> None:
    if public.is_async:
        asyncio.run(obj.close())
    else:
        obj.close()


@pytest.fixture(params=PUBLIC, ids=[f"{public.module}.{public.name}" for public in PUBLIC])
def public(request: pytest.FixtureRequest) -> Public:
    return request.param  # type: ignore[no-any-return]


def test_every_public_class_names_its_library(public: Public, tmp_path: Path) -> None:
    cls = _class(public)
    assert public.library in (cls.__doc__ or "").strip().splitlines()[0]
    obj = cls(*public.arguments, tmp_path / "cache.sqlite")
    try:
        assert repr(obj).startswith(f"<{public.library} {public.name}(") and "cache.sqlite" in repr(obj)
    finally:
        _close(obj, public)


def test_the_library_arguments_then_target_then_repository(public: Public, tmp_path: Path) -> None:
    """``target`` is the positional argument after the library's; ``repository=`` borrows an open
    repository of the class's side, and refuses the other side's."""
    cls = _class(public)
    own, other = (AsyncCacheRepository, CacheRepository) if public.is_async else (CacheRepository, AsyncCacheRepository)
    opened = cls(*public.arguments, tmp_path / "own.sqlite")
    try:
        assert isinstance(opened.repository, own) and "own.sqlite" in repr(opened.repository)
    finally:
        _close(opened, public)
    with pytest.raises(TypeError, match=f"repository must be a {own.__name__}"):
        cls(*public.arguments, repository=other("sqlite://"))


def test_close_closes_only_what_it_opened_and_again_and_on_leaving_with(public: Public, tmp_path: Path) -> None:
    cls = _class(public)
    target = tmp_path / "cache.sqlite"
    if public.is_async:

        async def scenario() -> tuple[bool, bool]:
            async with cls(*public.arguments, target) as owner:
                owned = owner.repository
            await owner.close()  # idempotent
            async with AsyncCacheRepository(target) as shared_repository:
                async with cls(*public.arguments, repository=shared_repository):
                    pass
                await shared_repository.set("b", "k", b"v", ttl_seconds=60)  # still open
                still_open = await shared_repository.get("b", "k") == b"v"
            return owned._closed, still_open

        owned_closed, borrowed_open = asyncio.run(scenario())
    else:
        with cls(*public.arguments, target) as owner:
            owned = owner.repository
        owner.close()  # idempotent
        owned_closed = _refuses(owned)
        with CacheRepository(target) as shared_repository:
            with cls(*public.arguments, repository=shared_repository):
                pass
            shared_repository.set("b", "k", b"v", ttl_seconds=60)
            borrowed_open = shared_repository.get("b", "k") == b"v"
    assert (owned_closed, borrowed_open) == (True, True)


def _refuses(repository: CacheRepository) -> bool:
    try:
        repository.get("b", "k")
    except Exception as error:  # the StoreError a closed repository raises
        return "closed" in str(error)
    return False


@pytest.fixture
def no_collector() -> Iterator[None]:
    """Only reference counting frees objects meanwhile: what a cycle keeps stays."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def test_a_dropped_object_is_freed_at_once_with_its_repository(
    public: Public, tmp_path: Path, no_collector: None
) -> None:
    """Nothing of the family keeps itself alive by a reference cycle: the last reference gone, the
    object and the repository it opened are freed (the repository's finalizer then closes its
    connections), without waiting for the garbage collector."""
    cls = _class(public)
    obj = cls(*public.arguments, tmp_path / "cache.sqlite")
    dropped = [weakref.ref(obj), weakref.ref(obj.repository)]
    del obj
    assert [ref() for ref in dropped] == [None, None]


def test_a_dropped_sync_object_closes_the_repository_it_opened(tmp_path: Path, no_collector: None) -> None:
    """As requests-cache's own SQLite backend does: a file left open when a process forks breaks the
    children's reads."""
    from animedex_store.integrations.requests_cache import StoreCache

    cache = StoreCache("dropped", tmp_path / "cache.sqlite")
    repository = cache.repository
    del cache
    assert _refuses(repository)


def test_a_used_object_is_freed_at_once_too(tmp_path: Path, no_collector: None) -> None:
    """hishel's storages after a stored entry, a hit, a header update and a removal, on both sides."""
    if sys.version_info < (3, 10):
        pytest.skip("hishel 2.0 needs Python 3.10 or later")
    from hishel import Headers, Request, Response

    from animedex_store.integrations.hishel import AsyncStoreStorage, StoreStorage

    request = Request(method="GET", url="https://anime.example/", headers=Headers({}))
    storage = StoreStorage(tmp_path / "sync.sqlite")
    entry = storage.create_entry(request, Response(200, Headers({}), iter([b"x" * 300_000])), "key")
    b"".join(entry.response.stream)
    (found,) = storage.get_entries("key")
    b"".join(found.response.stream)
    storage.update_headers(found.id, Headers({"ETag": "v2"}))
    storage.remove_entry(found.id)
    dropped = [weakref.ref(storage), weakref.ref(storage.repository)]
    del storage, entry, found

    async def used() -> list[weakref.ref[Any]]:
        async def body() -> Any:
            yield b"y" * 300_000

        storage = AsyncStoreStorage(tmp_path / "async.sqlite")
        entry = await storage.create_entry(request, Response(200, Headers({}), body()), "key")
        assert [piece async for piece in entry.response.stream]
        (found,) = await storage.get_entries("key")
        assert [piece async for piece in found.response.stream]
        return [weakref.ref(storage), weakref.ref(storage.repository)]

    dropped += asyncio.run(used())
    assert [ref() for ref in dropped] == [None] * 4


def test_each_integration_logs_on_its_own_logger() -> None:
    loggers = {}
    for module in ("requests_cache", "hishel.store", "hishel.saver", "aiohttp_client_cache", "cachecontrol"):
        try:
            loaded = importlib.import_module(f"animedex_store.integrations.{module}")
        except ImportError:
            continue  # the library needs a later Python
        loggers[module] = loaded.logger.name
    expected = {module: f"animedex_store.integrations.{module.split('.')[0]}" for module in loggers}
    assert loggers == expected and "requests_cache" in loggers


# -- namespaces and keys -------------------------------------------------------------------------------
def test_a_library_pair_is_spelled_out_or_hashed_and_kept_apart() -> None:
    assert namespace("rc", "http_cache", "responses") == "rc:10:http_cache:responses"
    assert namespace("rc", "a:b", "c") != namespace("rc", "a", "b:c")  # the length keeps them apart
    long_name = "/var/cache/" + "x" * KEY_MAX_LENGTH
    first, second = namespace("rc", long_name, "responses"), namespace("rc", long_name + "y", "responses")
    assert first.startswith("rc:sha256:") and len(first) <= KEY_MAX_LENGTH and first != second


def test_a_key_fits_a_row_or_is_hashed() -> None:
    assert fitted_key("https://anime.example/1", "sha256:") == "https://anime.example/1"
    spelled_like_a_hash = "sha256:" + "0" * 64
    hashed = fitted_key(spelled_like_a_hash, "sha256:")
    assert hashed != spelled_like_a_hash and hashed.startswith("sha256:") and len(hashed) == len("sha256:") + 64
    assert fitted_key("k" * 1000, "sha256:") != fitted_key("k" * 999 + "j", "sha256:")
    assert (is_storable_key("k"), is_storable_key("k" * (KEY_MAX_LENGTH + 1)), is_storable_key(1)) == (
        True,
        False,
        False,
    )


def test_the_backends_of_a_namespace() -> None:
    names = Backends("ns", ("entries", "chunks"), per_key=True)
    assert (names.entries, names.chunks, list(names)) == ("ns:entries", "ns:chunks", ["ns:entries", "ns:chunks"])
    assert names.of_key("GET /") == names.of_key("GET /") != names.of_key("GET /x")
    assert names.of_key("k" * 10_000).startswith("ns:key:") and len(names.of_key("ключ")) == len("ns:key:") + 64
    with pytest.raises(AttributeError, match="keeps no 'bodies' rows"):
        _ = names.bodies
    with pytest.raises(TypeError, match="no backend per key"):
        Backends("ns", ("responses",)).of_key("k")
    with pytest.raises(TypeError, match="namespace must be str"):
        Backends(b"ns", ("entries",))  # type: ignore[arg-type]
    longest = KEY_MAX_LENGTH - len(":responses")
    assert Backends("n" * longest, ("responses", "bodies")).responses.endswith(":responses")
    for bad in ("", "n" * (longest + 1)):
        with pytest.raises(ValueError, match=f"namespace must be 1 to {longest} characters long"):
            Backends(bad, ("responses", "bodies"))
    with pytest.raises(ValueError, match=f"1 to {KEY_MAX_LENGTH - len(':key:') - 64} characters"):
        Backends("n" * 200, ("entries",), per_key=True)


# -- row TTLs ------------------------------------------------------------------------------------------
NOW = datetime(2026, 1, 1, 0, 0, 0, 250_000, tzinfo=timezone.utc)  # a quarter past a whole second


@pytest.mark.parametrize(
    ("moment", "outlive", "ttl"),
    [
        (None, 0, MAX_TTL_SECONDS),
        (NOW + timedelta(seconds=60), 0, 61),  # 60.25 s from the whole second now is in: rounded up
        (NOW.replace(microsecond=0) + timedelta(seconds=60), 0, 60),  # a whole second: exact
        ((NOW + timedelta(seconds=30)).replace(tzinfo=None), 0, 31),  # naive: UTC
        (NOW + timedelta(seconds=30), 600, 631),
        (NOW - timedelta(hours=1), 0, 0),  # past
        (NOW - timedelta(seconds=10), 600, 591),  # past, and outlived: rounded up as well
        (NOW.timestamp() + 1.5, 0, 2),  # epoch seconds, fractions too
        (NOW.timestamp() + 1.5, 0.75, 3),
        (float(2**70), 0, MAX_TTL_SECONDS),  # at most the longest TTL
    ],
)
def test_a_row_lives_until_its_moment_never_less(moment: Any, outlive: float, ttl: int) -> None:
    assert row_ttl(moment, NOW, outlive=outlive) == ttl
    if isinstance(moment, datetime):
        assert row_ttl(moment, NOW.timestamp(), outlive=outlive) == ttl  # now as epoch seconds alike


# -- redirects -----------------------------------------------------------------------------------------
def test_dangling_redirects_are_those_whose_response_is_gone() -> None:
    redirects: dict[str, object] = {"a": "one", "b": "two", "c": "k" * (KEY_MAX_LENGTH + 1), "d": 5, "e": "one"}
    assert redirect_targets(redirects) == ["one", "two", "one"]  # only what a row could hold is looked up
    assert dangling_redirects(redirects, frozenset({"one"})) == ["b", "c", "d"]


def test_the_shared_module_imports_no_optional_library() -> None:
    assert not {"requests_cache", "hishel", "aiohttp_client_cache", "cachecontrol"} & set(vars(shared))


@pytest.mark.server
@pytest.mark.parametrize("server", list(SERVER_URLS))
def test_dropped_objects_give_their_server_sessions_back(
    server: str, open_sandbox: Callable[[str], str], no_collector: None
) -> None:
    """Twenty storages, caches and caches of each sync class used once and dropped, the collector
    off: the sessions they opened are closed as each is dropped, none left for the collector."""
    if sys.version_info < (3, 10):
        pytest.skip("hishel and CacheControl need Python 3.10 or later")
    from hishel import Headers, Request, Response

    from animedex_store.integrations.cachecontrol import StoreCache as ControlCache
    from animedex_store.integrations.hishel import StoreStorage
    from animedex_store.integrations.requests_cache import StoreCache

    target = tagged(open_sandbox(server))
    build_at_head(target, SERVER_URLS)
    request = Request(method="GET", url="https://anime.example/", headers=Headers({}))
    for number in range(20):
        storage = StoreStorage(target)
        b"".join(
            storage.create_entry(request, Response(200, Headers({}), iter([b"body"])), f"k{number}").response.stream
        )
        cache = StoreCache("dropped", target)
        cache.responses[f"k{number}"] = "value"
        control = ControlCache(target)
        control.set(f"k{number}", b"metadata", 60)
        del storage, cache, control
        assert sessions_settle(target, 0) == 0
