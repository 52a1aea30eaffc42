"""aiohttp-client-cache on animedex-store: aiohttp's HTTP cache in SQLite, PostgreSQL or MariaDB/MySQL.

.. code-block:: python

    from aiohttp_client_cache import CachedSession
    from animedex_store.integrations.aiohttp_client_cache import StoreBackend

    async with CachedSession(cache=StoreBackend("http_cache", "postgresql+psycopg://app@db/cache")) as session:
        ...

:class:`StoreBackend` is aiohttp-client-cache's ``CacheBackend`` on an
:class:`~animedex_store.AsyncCacheRepository`, so storage never blocks the
event loop; its ``responses`` and ``redirects`` are :class:`StoreCache`\\ s, the
library's ``BaseCache``. aiohttp-client-cache is an optional dependency (``pip
install 'animedex-store[aiohttp-client-cache]'``, Python 3.11 and later);
importing :mod:`animedex_store` never imports this module.

How its data maps onto rows:

* ``backend`` is the namespace of one ``(cache_name, table_name)`` pair,
  ``acc:<len>:<cache_name>:<table_name>`` (:func:`namespace`); ``signature`` is
  the library's key.
* ``payload`` is the serializer's output. By default no pickle
  (:class:`ResponseSerializer`): a row planted by anyone who can write a shared
  table cannot run code in a reader. ``serializer="pickle"`` chooses the
  library's own pickle; with ``secret_key`` either is signed with itsdangerous,
  as the library signs its pickle.
* A row it cannot read (planted, damaged, nested or sized beyond reason) reads
  as missing, logged on ``animedex_store.integrations.aiohttp_client_cache``;
  with ``secret_key``, a row not signed with it raises itsdangerous'
  ``BadSignature``, as the library's own backends do.
* A response's row expires with the response (its ``expires``, rounded up to
  the second); the library never revalidates an expired response, it deletes it
  on read. A response that never expires, and a redirect, never expire as rows.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterable
from datetime import datetime, timedelta
from http.cookies import Morsel, SimpleCookie
from typing import Any

# The ignores: mypy checks this module where the optional dependency is missing too (Python < 3.11).
try:
    from aiohttp import HttpVersion  # type: ignore[import-not-found,unused-ignore]
    from aiohttp_client_cache.backends.base import BaseCache, CacheBackend, ResponseOrKey  # type: ignore[import-not-found,unused-ignore]
    from aiohttp_client_cache.response import CachedResponse  # type: ignore[import-not-found,unused-ignore]
    from itsdangerous.exc import BadSignature  # type: ignore[import-not-found,unused-ignore]  # a dependency of it
    from yarl import URL  # type: ignore[import-not-found,unused-ignore]
except ImportError as exc:  # the optional dependency
    raise ImportError(
        "animedex_store.integrations.aiohttp_client_cache needs aiohttp-client-cache: "
        f"pip install 'animedex-store[aiohttp-client-cache]' (Python 3.11+) ({exc})"
    ) from exc

from ..async_repository import AsyncCacheRepository
from ..fastpath.targets import Target
from . import shared
from .shared import AsyncOwner, is_storable_key, log_unreadable, row_ttl

__all__ = ["StoreBackend", "StoreCache", "ResponseSerializer", "UnreadableRow", "namespace"]

logger = logging.getLogger(__name__)  # every failure this integration swallows is logged here, once

#: Rows read per query when many are read (``values``, pruning redirects).
_PAGE = 512
#: How long past a response's ``expires`` its row may live: rows keep whole seconds, rounded up,
#: and the second may tick between reading the clock and writing the row.
_ROW_ROUNDING = timedelta(seconds=2)


def namespace(cache_name: str, table_name: str) -> str:
    """The ``backend`` of one ``(cache_name, table_name)`` pair: ``acc:<len>:<cache_name>:<table_name>``,
    or ``acc:sha256:<hex>`` when that is too long for a key (see :func:`.shared.namespace`)."""
    return shared.namespace("acc", cache_name, table_name)


class UnreadableRow(ValueError):
    """A stored value :class:`ResponseSerializer` cannot read (planted, or damaged): it reads as missing."""


class ResponseSerializer:
    """The default serializer: the library's values without pickle.

    A ``CachedResponse`` is the JSON of its attrs fields (headers as Latin-1
    text, times in ISO 8601, its redirect history nested), a NUL byte, then the
    bodies of it and its history as they are. Anything else the library stores
    (a redirect's key: a ``str``) is JSON. :meth:`loads` builds nothing but those
    values, and raises :class:`UnreadableRow` for anything else, whatever is wrong
    with it (nesting too deep, numbers too large, wrong types, a truncated body).
    """

    @staticmethod
    def dumps(value: Any) -> bytes:
        if isinstance(value, CachedResponse):
            bodies: list[bytes] = []
            head = _json({"response": _dump_response(value, bodies)})
            return b"".join([head, b"\0", *bodies])
        return _json({"value": value})

    @staticmethod
    def loads(data: bytes) -> Any:
        end = data.find(b"\0")
        try:
            head = json.loads(data if end < 0 else data[:end])
            if "response" in head:
                return _load_response(head["response"], memoryview(data)[end + 1 :])
            return _expect(head["value"], str)  # a redirect's key: the only other value the library stores
        except Exception as exc:  # RecursionError, OverflowError, CookieError, ...: whatever bad input raises
            raise UnreadableRow(f"not a value ResponseSerializer wrote ({exc!r:.200})") from None


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("ascii")


def _dump_response(response: CachedResponse, bodies: list[bytes]) -> dict[str, Any]:
    """``response``'s fields as JSON values; its body (and its history's) appended to ``bodies``."""
    return {name: dump(getattr(response, name), bodies) for name, (dump, _load) in _FIELDS.items()}


def _load_response(fields: dict[str, Any], bodies: memoryview) -> CachedResponse:
    arguments = {name.lstrip("_"): load(fields[name], bodies) for name, (_dump, load) in _FIELDS.items()}
    return CachedResponse(**arguments)


def _expect(value: Any, kinds: type | tuple[type, ...]) -> Any:
    if not isinstance(value, kinds):
        raise TypeError(f"expected {kinds}, found {type(value).__name__}")
    return value


def _dump_body(body: bytes | None, bodies: list[bytes]) -> list[int] | None:
    if body is None:
        return None
    start = sum(map(len, bodies))
    bodies.append(bytes(body))
    return [start, start + len(body)]


def _load_body(span: list[int] | None, bodies: memoryview) -> bytes | None:
    if span is None:
        return None
    start, end = (_expect(offset, int) for offset in span)
    if not 0 <= start <= end <= len(bodies):
        raise ValueError(f"a body at {start}:{end} of {len(bodies)} bytes")
    return bytes(bodies[start:end])


def _dump_headers(headers: Iterable[tuple[bytes, bytes]], _bodies: list[bytes]) -> list[list[str]]:
    return [[name.decode("latin-1"), value.decode("latin-1")] for name, value in headers]


def _load_headers(headers: list[list[str]], _bodies: memoryview) -> tuple[tuple[bytes, bytes], ...]:
    return tuple(
        (_expect(name, str).encode("latin-1"), _expect(value, str).encode("latin-1")) for name, value in headers
    )


def _dump_time(moment: datetime | None, _bodies: list[bytes]) -> str | None:
    return None if moment is None else moment.isoformat()


def _load_time(text: str | None, _bodies: memoryview) -> datetime | None:
    return None if text is None else datetime.fromisoformat(_expect(text, str))


def _dump_url(url: URL | str | None, _bodies: list[bytes]) -> str | None:
    return None if url is None else str(url)


def _load_url(text: str | None, _bodies: memoryview) -> URL | None:
    return None if text is None else URL(_expect(text, str), encoded=True)  # str(URL) is its encoded form


def _dump_version(version: HttpVersion | str | None, _bodies: list[bytes]) -> list[int] | str | None:
    return list(version) if isinstance(version, tuple) else version


def _load_version(version: list[int] | str | None, _bodies: memoryview) -> HttpVersion | str | None:
    if isinstance(version, list):
        major, minor = (_expect(number, int) for number in version)
        return HttpVersion(major, minor)
    text: str | None = _expect(version, (str, type(None)))
    return text


def _dump_links(links: list[tuple[str, list[tuple[str, str]]]], _bodies: list[bytes]) -> Any:
    return links  # (str, [(str, str), ...]) pairs: JSON lists


def _load_links(links: list[Any], _bodies: memoryview) -> list[tuple[str, list[tuple[str, str]]]]:
    return [
        (_expect(name, str), [(_expect(key, str), _expect(value, str)) for key, value in params])
        for name, params in links
    ]


def _dump_cookies(cookies: SimpleCookie, _bodies: list[bytes]) -> list[list[Any]]:
    return [
        [morsel.key, morsel.value, morsel.coded_value, {name: value for name, value in morsel.items() if value}]
        for morsel in cookies.values()
    ]


def _load_cookies(cookies: list[list[Any]], _bodies: memoryview) -> SimpleCookie:
    jar = SimpleCookie()
    for key, value, coded_value, attributes in cookies:
        morsel: Morsel[str] = Morsel()
        morsel.set(_expect(key, str), _expect(value, str), _expect(coded_value, str))
        morsel.update(_expect(attributes, dict))  # refuses attributes a cookie cannot have (CookieError)
        jar[key] = morsel
    return jar


def _dump_history(history: Iterable[CachedResponse], bodies: list[bytes]) -> list[dict[str, Any]]:
    return [_dump_response(response, bodies) for response in history]


def _load_history(history: list[dict[str, Any]], bodies: memoryview) -> tuple[CachedResponse, ...]:
    return tuple(_load_response(_expect(fields, dict), bodies) for fields in history)


def _same(value: Any, _bodies: list[bytes]) -> Any:
    return value


def _checked(*kinds: type) -> Any:
    def load(value: Any, _bodies: memoryview) -> Any:
        return _expect(value, kinds)

    return load


#: Every attrs field of ``CachedResponse`` but ``_content`` (a stream over ``_body``, rebuilt on
#: read): how it is written and read back.
_FIELDS: dict[str, tuple[Any, Any]] = {
    "method": (_same, _checked(str)),
    "reason": (_same, _checked(str, type(None))),
    "status": (_same, _checked(int)),
    "url": (_dump_url, _load_url),
    "version": (_dump_version, _load_version),
    "_body": (_dump_body, _load_body),
    "_links": (_dump_links, _load_links),
    "cookies": (_dump_cookies, _load_cookies),
    "created_at": (_dump_time, _load_time),
    "encoding": (_same, _checked(str)),
    "expires": (_dump_time, _load_time),
    "raw_headers": (_dump_headers, _load_headers),
    "request_raw_headers": (_dump_headers, _load_headers),
    "real_url": (_dump_url, _load_url),
    "history": (_dump_history, _load_history),
    "last_used": (_dump_time, _load_time),
}


def _serializer(serializer: Any, secret_key: Any, salt: str | bytes) -> Any:
    """What :class:`StoreCache` hands ``BaseCache`` as its serializer: ``None`` gives
    :class:`ResponseSerializer`, signed with ``secret_key`` when one is given; ``"pickle"`` gives
    ``None``, for the library to choose its own (pickle, signed likewise); any object with ``dumps``
    and ``loads`` is used as it is."""
    if serializer is None:
        if not secret_key:
            return ResponseSerializer
        from itsdangerous.serializer import Serializer  # type: ignore[import-not-found,unused-ignore]

        return Serializer(secret_key, salt=salt, serializer=ResponseSerializer)
    if serializer == "pickle":
        return None
    if isinstance(serializer, str):
        raise ValueError(f"serializer must be None, 'pickle' or an object with dumps and loads, not {serializer!r}")
    if not (callable(getattr(serializer, "dumps", None)) and callable(getattr(serializer, "loads", None))):
        raise TypeError(f"serializer must have dumps and loads methods; {type(serializer).__name__} has not")
    return serializer


class StoreCache(AsyncOwner, BaseCache):  # type: ignore[misc,unused-ignore]  # Any where it is missing
    """aiohttp-client-cache's ``BaseCache`` on a store: one ``(cache_name, table_name)`` namespace of it.

    ``target`` is anything :class:`~animedex_store.AsyncCacheRepository` takes;
    ``repository=`` shares an open one instead (see :mod:`animedex_store.integrations`
    for closing). ``serializer``: ``None`` (no pickle, see
    :class:`ResponseSerializer`), ``"pickle"``, or any object with ``dumps`` and
    ``loads``; ``secret_key`` (and ``salt``) sign the first two with itsdangerous.
    Other keyword arguments (a backend's settings) are accepted and ignored, as
    the library's caches do.
    """

    LIBRARY = "aiohttp-client-cache"

    def __init__(
        self,
        cache_name: str,
        table_name: str = "responses",
        target: Target | Any = None,
        *,
        repository: AsyncCacheRepository | None = None,
        serializer: Any = None,
        secret_key: Iterable[str | bytes] | str | bytes | None = None,
        salt: str | bytes = b"aiohttp-client-cache",
        **kwargs: Any,
    ) -> None:
        chosen = _serializer(serializer, secret_key, salt)
        super().__init__(secret_key=secret_key, salt=salt, serializer=chosen, **kwargs)
        self.cache_name = cache_name
        self.table_name = table_name
        self.backend = namespace(cache_name, table_name)
        self._hold(target, repository)

    # -- values as rows -----------------------------------------------------------------------------
    def _load(self, key: str, payload: bytes) -> Any:
        """The value of a row, or ``None`` (logged once) when it cannot be read, whatever its serializer
        raises; but a row not signed with ``secret_key`` raises itsdangerous' ``BadSignature``, as in
        the library's own backends (its own tests hold a signed cache to refusing it loudly)."""
        try:
            return self.deserialize(payload)
        except BadSignature:
            raise
        except Exception as exc:  # anything a planted or damaged row makes a serializer raise
            log_unreadable(logger, self.repository.target, self.backend, key, exc)
            return None

    def _ttl(self, item: ResponseOrKey) -> int:
        """Seconds the row for ``item`` lives by the repository's clock: until the response's
        ``expires`` (rounded up), or for ever."""
        expires = getattr(item, "expires", None)
        return row_ttl(expires if isinstance(expires, datetime) else None, self.repository.now())

    # -- BaseCache ---------------------------------------------------------------------------------
    async def contains(self, key: str) -> bool:
        """Whether a live row holds ``key``; its value is not read."""
        if not is_storable_key(key):
            return False
        return key in await self.repository.contains_many(self.backend, [key])

    async def read(self, key: str) -> ResponseOrKey:
        """The value of ``key``, or ``None`` when it is missing, expired or unreadable (never pickle's
        unless chosen); with ``secret_key``, a row signed otherwise raises ``BadSignature``."""
        if not is_storable_key(key):
            return None
        payload = await self.repository.get(self.backend, key)
        return None if payload is None else self._load(key, payload)

    async def write(self, key: str, item: ResponseOrKey) -> None:
        """Store ``item`` under ``key`` (a falsy item as an empty row, which reads as ``None``)."""
        data: Any = self.serialize(item)
        payload = b"" if data is None else data.encode("utf-8") if isinstance(data, str) else data
        await self.repository.set(self.backend, key, payload, ttl_seconds=self._ttl(item))

    async def delete(self, key: str) -> None:
        """Delete ``key``; nothing happens when it is missing."""
        if is_storable_key(key):
            await self.repository.delete(self.backend, key)

    async def bulk_delete(self, keys: Iterable[str]) -> None:
        """Delete ``keys`` (missing ones ignored) in one statement per few hundred keys."""
        await self.repository.delete_many(self.backend, [key for key in keys if is_storable_key(key)])

    async def clear(self) -> None:
        """Delete every row of this namespace, and only of this one."""
        await self.repository.clear(self.backend)

    async def keys(self) -> AsyncIterator[str]:
        """The keys of the live rows, in order; values are not read."""
        async for stored in self.repository.keys(self.backend):
            yield stored.signature

    async def values(self) -> AsyncIterator[ResponseOrKey]:
        """The readable values of the live rows, read a page at a time."""
        async for _key, value in self.items():
            yield value

    async def items(self) -> AsyncIterator[tuple[str, Any]]:
        """``(key, value)`` of the live rows whose value is readable, read a page at a time."""
        keys = [key async for key in self.keys()]
        for start in range(0, len(keys), _PAGE):
            for item in (await self.read_many(keys[start : start + _PAGE])).items():
                yield item

    async def read_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """``{key: value}`` of the live rows among ``keys`` whose value is readable (missing, expired and
        unreadable ones left out); one query per few hundred keys."""
        found = await self.repository.get_many(self.backend, [key for key in keys if is_storable_key(key)])
        values = {key: self._load(key, payload) for key, payload in found.items()}
        return {key: value for key, value in values.items() if value is not None}

    async def size(self) -> int:
        """How many live rows this namespace holds; one query."""
        return await self.repository.count(self.backend)

    # -- for StoreBackend --------------------------------------------------------------------------
    async def expired_keys(self) -> list[str]:
        """The keys whose response has expired: chosen on the rows' expiry in one query, and only the
        responses within the rounding of their rows' expiry are read to tell."""
        now = self.repository.now()
        chosen = [
            stored.signature
            async for stored in self.repository.keys(self.backend, expired_only=True, as_of=now + _ROW_ROUNDING)
        ]
        live = await self.repository.get_many(self.backend, chosen)
        return [
            key
            for key in chosen
            if key not in live or getattr(self._load(key, live[key]), "is_expired", False)  # expired by now, exactly
        ]

    def _arguments(self) -> str:
        return f"{self.cache_name!r}, {self.table_name!r}"


class StoreBackend(AsyncOwner, CacheBackend):  # type: ignore[misc,unused-ignore]  # Any where it is missing
    """aiohttp-client-cache's ``CacheBackend`` on a store: ``responses`` and ``redirects`` in two namespaces.

    ``StoreBackend(name).responses`` is ``StoreCache(name, "responses")`` and
    ``.redirects`` is ``StoreCache(name, "redirects")``, both on one
    :class:`~animedex_store.AsyncCacheRepository`: ``target`` (anything it
    takes), or ``repository=`` (see :mod:`animedex_store.integrations` for
    closing). Other keyword arguments are ``CacheBackend``'s (``expire_after``,
    ``urls_expire_after``, ``allowed_codes``, ...) and :class:`StoreCache`'s
    (``serializer``, ``secret_key``, ``salt``). ``autoclose`` is ``True``, as for
    the library's SQLite backend: closing the session closes the backend.
    """

    LIBRARY = "aiohttp-client-cache"

    def __init__(
        self,
        cache_name: str = "aiohttp-cache",
        target: Target | Any = None,
        *,
        repository: AsyncCacheRepository | None = None,
        autoclose: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(cache_name=cache_name, autoclose=autoclose, **kwargs)
        self._hold(target, repository)
        self._filters_responses = "filter_fn" in kwargs
        self.responses: StoreCache = StoreCache(cache_name, "responses", repository=self.repository, **kwargs)
        self.redirects: StoreCache = StoreCache(cache_name, "redirects", repository=self.repository, **kwargs)

    async def bulk_delete(self, keys: Iterable[str]) -> None:
        """Delete the responses of ``keys`` (a response's key, or a redirect's: then its response too)
        and the redirects left pointing at nothing; a few statements, not one per key."""
        keys = set(keys)
        targets = await self.redirects.read_many(keys)
        await self.responses.bulk_delete(keys | {target for target in targets.values() if isinstance(target, str)})
        await self.redirects.bulk_delete(keys)
        await self._prune_redirects()

    async def delete_expired_responses(self) -> None:
        """Delete the expired responses (chosen on their rows, see :meth:`StoreCache.expired_keys`),
        and those ``filter_fn`` rejects when one was given (then every response is read), with
        the redirects to them."""
        doomed = set(await self.responses.expired_keys())
        if self._filters_responses:
            doomed.update([key async for key, response in self.responses.items() if not self.filter_fn(response)])
        await self.bulk_delete(doomed)

    async def _prune_redirects(self) -> None:
        """Delete the redirects whose response is gone (:func:`.shared.dangling_redirects`)."""
        redirects = {key: target async for key, target in self.redirects.items()}
        present = await self.repository.contains_many(self.responses.backend, shared.redirect_targets(redirects))
        await self.redirects.bulk_delete(shared.dangling_redirects(redirects, present))

    def _arguments(self) -> str:
        return repr(self.name)
