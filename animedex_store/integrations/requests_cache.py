"""requests-cache on animedex-store: its HTTP cache in SQLite, PostgreSQL or MariaDB/MySQL.

.. code-block:: python

    from requests_cache import CachedSession
    from animedex_store.integrations.requests_cache import StoreCache

    session = CachedSession(backend=StoreCache("http_cache", "postgresql+psycopg://app@db/cache"), expire_after=3600)

Everything a :class:`~animedex_store.CacheRepository` does holds here: the
target opens (and migrates) as a repository does, keys compare exactly on every
engine, errors name the database with its password masked, and an up-to-date
SQLite file is read without SQLAlchemy. requests-cache is an optional
dependency (``pip install 'animedex-store[requests-cache]'``); importing
:mod:`animedex_store` never imports this module.

How requests-cache's data maps onto rows:

* ``backend`` is the namespace of one ``(cache_name, table_name)`` pair
  (:func:`namespace`, ``rc:<len>:<cache_name>:<table_name>``), so two caches, or a cache's responses and redirects,
  never see each other's keys; ``signature`` is requests-cache's key.
* ``payload`` is the serializer's output (UTF-8 when it is text). The default
  serializer is ``"json"``, which never unpickles: a row planted by anyone who
  can write the shared table cannot run code in a reader. Any requests-cache
  serializer can still be chosen (``serializer="pickle"``, ...).
* requests-cache decides freshness itself and revalidates an expired response
  with its ``ETag``/``Last-Modified``, so a row lives ``ttl_offset`` seconds
  (default an hour, as requests-cache's Redis backend) past the response's
  ``expires``; ``purge_expired()`` and ``animedex-store purge`` remove it after
  that. A response that never expires, and a redirect, never expire as rows.
* A row it cannot read (planted, damaged, nested or sized beyond reason) is a
  miss, logged on ``animedex_store.integrations.requests_cache``.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any

try:
    from requests_cache.backends.base import BaseCache, BaseStorage
    from requests_cache.models.response import CachedResponse
    from requests_cache.policy import ExpirationTime
except ImportError as exc:  # the optional dependency
    raise ImportError(
        "animedex_store.integrations.requests_cache needs requests-cache: "
        f"pip install 'animedex-store[requests-cache]' ({exc})"
    ) from exc

from ..core.clock import epoch_seconds
from ..core.validation import check_count
from ..fastpath.targets import Target
from ..repository import CacheRepository
from . import shared
from .shared import Owner, is_storable_key, log_unreadable, row_ttl

__all__ = ["StoreCache", "StoreDict", "namespace", "DEFAULT_TTL_OFFSET"]

logger = logging.getLogger(__name__)  # every failure this integration swallows is logged here, once

#: Seconds a stored response stays readable after its ``expires`` (requests-cache's Redis default).
DEFAULT_TTL_OFFSET = 3600
#: Responses loaded per query when many are read (``filter``, ``sorted``).
_PAGE = 512
#: requests-cache's sort keys, and the repository's orders for them.
_SORT_KEYS = {"expires": "expires_at", "size": "size", "key": "signature"}


def namespace(cache_name: str, table_name: str) -> str:
    """The ``backend`` of one ``(cache_name, table_name)`` pair: ``rc:<len>:<cache_name>:<table_name>``,
    or ``rc:sha256:<hex>`` when that is too long for a key (see :func:`.shared.namespace`)."""
    return shared.namespace("rc", cache_name, table_name)


class StoreDict(Owner, BaseStorage[str, Any]):
    """requests-cache's ``BaseStorage`` on a store: one ``(cache_name, table_name)`` namespace of it.

    ``target`` is anything :class:`~animedex_store.CacheRepository` takes;
    ``repository=`` shares an open one instead (see :mod:`animedex_store.integrations`
    for closing). ``serializer`` is any requests-cache serializer, ``"json"`` by
    default; ``None`` stores values as they are (``str`` or ``bytes``; text comes
    back as ``str``). Other keyword arguments are requests-cache's.
    """

    LIBRARY = "requests-cache"

    def __init__(
        self,
        cache_name: str,
        table_name: str = "responses",
        target: Target = None,
        *,
        serializer: Any = "json",
        repository: CacheRepository | None = None,
        ttl_offset: int = DEFAULT_TTL_OFFSET,
        **kwargs: Any,
    ) -> None:
        ttl_offset = check_count("ttl_offset", ttl_offset)  # at least 1: a row must outlive its response
        super().__init__(serializer=serializer, **kwargs)
        self.cache_name = cache_name
        self.table_name = table_name
        self.backend = namespace(cache_name, table_name)
        self.ttl_offset = ttl_offset
        self._hold(target, repository)

    # -- values as rows ----------------------------------------------------------------------------
    def _dump(self, value: Any) -> bytes:
        data = self.serialize(value)
        if isinstance(data, str):
            return data.encode("utf-8")
        if isinstance(data, (bytes, bytearray, memoryview)):
            return bytes(data)
        raise TypeError(f"{self!r} stores str or bytes; its serializer returned {type(data).__name__}")

    def _load(self, key: str, payload: bytes) -> Any:
        data: str | bytes = payload
        if self.serializer is None or not self.serializer.is_binary:
            try:
                data = payload.decode("utf-8")
            except UnicodeDecodeError:
                pass  # bytes from a serializer that calls itself text: let it read them
        return self.deserialize(key, data)

    def deserialize(self, key: str, value: Any) -> Any:
        """requests-cache's, except that a value its serializer cannot read, whatever it raises
        (nesting too deep, numbers too large, fields of the wrong types, a truncated body), is
        ``None`` (a miss) and logged once, on ``animedex_store.integrations.requests_cache``."""
        if not self.serializer:
            return value
        try:
            loaded = self.serializer.loads(value)
        except Exception as exc:  # anything a planted or damaged row makes a serializer raise
            log_unreadable(logger, self.repository.target, self.backend, key, exc)
            return None
        try:
            loaded.cache_key = key
        except AttributeError:
            pass  # not a response (a redirect's key)
        return loaded

    def _ttl(self, value: Any) -> int:
        """Seconds the row for ``value`` lives by the repository's clock: for ever, or ``ttl_offset`` past
        its response's ``expires`` (from now, for a response stored already expired, as one is to be
        revalidated). Both times are rounded down to the second alike, so that a response that has
        expired by now has its row chosen by :meth:`expired_keys` (``expires_at <= now + offset``)."""
        expires = getattr(value, "expires", None)
        now = self.repository.now()
        if not isinstance(expires, datetime):
            return row_ttl(None, now)
        return row_ttl(max(epoch_seconds(expires), epoch_seconds(now)), now, outlive=self.ttl_offset)

    def _responses_expire_by(self) -> datetime:
        """The moment a row's ``expires_at`` is compared with to tell whether its *response* has
        expired: the row outlives the response by ``ttl_offset``."""
        return self.repository.now() + timedelta(seconds=self.ttl_offset)

    # -- MutableMapping ----------------------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        try:
            payload = self.repository.get(self.backend, key)
        except (TypeError, ValueError):
            raise KeyError(key) from None  # not a key this store could hold
        if payload is None:
            raise KeyError(key)
        return self._load(key, payload)

    def __setitem__(self, key: str, value: Any) -> None:
        self.repository.set(self.backend, key, self._dump(value), ttl_seconds=self._ttl(value))

    def __delitem__(self, key: str) -> None:
        try:
            deleted = self.repository.delete(self.backend, key)
        except (TypeError, ValueError):
            deleted = False
        if not deleted:
            raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        try:
            return self.repository.get(self.backend, key) is not None  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return False

    def __iter__(self) -> Iterator[str]:
        return (key.signature for key in self.repository.keys(self.backend))

    def __len__(self) -> int:
        return self.repository.count(self.backend)

    # -- requests-cache's hooks ----------------------------------------------------------------------
    def bulk_delete(self, keys: Iterable[str]) -> None:
        """Delete ``keys`` (missing ones ignored) in one statement per few hundred keys."""
        self.repository.delete_many(self.backend, [key for key in keys if is_storable_key(key)])

    def clear(self) -> None:
        """Delete every row of this namespace, and only of this one."""
        self.repository.clear(self.backend)

    def count(self, expired: bool = True) -> int:
        """How many values are stored; ``expired=False``: only unexpired responses. One query."""
        if expired:
            return len(self)
        return self.repository.count(self.backend, as_of=self._responses_expire_by())

    def sorted(
        self, key: str = "expires", reversed: bool = False, limit: int | None = None, expired: bool = True
    ) -> Iterator[Any]:
        """Values by ``expires``, ``size`` (as stored) or ``key``; ``expired=False`` leaves expired
        responses out. One query chooses and orders the keys, through an index that holds the
        order; only the values returned are read."""
        if key not in _SORT_KEYS:
            raise ValueError(f"sorted() sorts by one of {', '.join(_SORT_KEYS)}, not {key!r}")
        chosen = self.repository.keys(
            self.backend,
            include_expired=expired,
            as_of=None if expired else self._responses_expire_by(),
            order_by=_SORT_KEYS[key],
            descending=reversed,
            limit=limit,
        )
        return self._values(stored.signature for stored in chosen)

    def _values(self, signatures: Iterable[str]) -> Iterator[Any]:
        """The values of ``signatures``, in that order, read a page at a time; vanished rows skipped."""
        for _signature, value in self._items(signatures):
            yield value

    def _items(self, signatures: Iterable[str]) -> Iterator[tuple[str, Any]]:
        """``(signature, value or None)`` of ``signatures``, in that order, read a page at a time;
        vanished rows skipped."""
        pending = iter(signatures)
        while page := list(itertools.islice(pending, _PAGE)):
            found = self.repository.get_many(self.backend, page)
            for signature in page:
                if signature in found:
                    yield signature, self._load(signature, found[signature])

    def expired_keys(self) -> list[str]:
        """The keys whose response has expired, chosen on the rows' expiry in one query."""
        listed = self.repository.keys(self.backend, expired_only=True, as_of=self._responses_expire_by())
        return [stored.signature for stored in listed]

    def read_items(self, *, expired: bool | None = None) -> Iterator[tuple[str, Any]]:
        """``(key, value or None)`` of every row (``expired=None``), or only of those whose response has
        expired (``True``) or has not (``False``), chosen on the rows' expiry before anything is read."""
        if expired is None:
            listed = self.repository.keys(self.backend)
        else:
            listed = self.repository.keys(self.backend, expired_only=expired, as_of=self._responses_expire_by())
        return self._items(stored.signature for stored in listed)

    def _arguments(self) -> str:
        return f"{self.cache_name!r}, {self.table_name!r}"


class StoreCache(Owner, BaseCache):
    """requests-cache's ``BaseCache`` on a store: ``responses`` and ``redirects`` in two namespaces.

    ``StoreCache(name).responses`` is ``StoreDict(name, "responses")`` (JSON
    unless ``serializer`` says otherwise) and ``.redirects`` is
    ``StoreDict(name, "redirects", serializer=None)``, both on one repository:
    ``target`` (anything :class:`~animedex_store.CacheRepository` takes), or
    ``repository=`` (see :mod:`animedex_store.integrations` for closing). Other
    keyword arguments are requests-cache's (a ``CachedSession`` passes its
    settings here).
    """

    LIBRARY = "requests-cache"

    def __init__(
        self,
        cache_name: str = "http_cache",
        target: Target = None,
        *,
        serializer: Any = None,
        repository: CacheRepository | None = None,
        ttl_offset: int = DEFAULT_TTL_OFFSET,
        **kwargs: Any,
    ) -> None:
        super().__init__(cache_name=cache_name, **kwargs)
        self._hold(target, repository)
        self.responses: StoreDict = StoreDict(
            cache_name,
            "responses",
            serializer=serializer or "json",
            repository=self.repository,
            ttl_offset=ttl_offset,
            **kwargs,
        )
        self.redirects: StoreDict = StoreDict(
            cache_name, "redirects", serializer=None, repository=self.repository, **kwargs
        )

    def get_response(self, key: str, default: Any = None) -> CachedResponse | None:
        """As requests-cache's, except that a value that is no response (valid JSON of something
        else, planted) is ``default``, a miss, logged once."""
        response: CachedResponse | None = super().get_response(key, default)
        return response if response is default else self._response(key, response, default)

    def _response(self, key: str, value: Any, default: Any = None) -> CachedResponse | None:
        """``value`` if it is a response (or ``None``), else ``default``, logged as unreadable."""
        if value is None or isinstance(value, CachedResponse):
            return value
        log_unreadable(
            logger,
            self.repository.target,
            self.responses.backend,
            key,
            TypeError(f"{type(value).__name__}, not a response"),
        )
        found: CachedResponse | None = default
        return found

    def count(self, expired: bool = True) -> int:
        """How many responses are stored; ``expired=False``: only unexpired ones."""
        return self.responses.count(expired=expired)

    def sorted(
        self, key: str = "expires", reversed: bool = False, limit: int | None = None, expired: bool = True
    ) -> Iterator[Any]:
        """Responses sorted by ``expires``, ``size`` or ``key`` (see :meth:`StoreDict.sorted`)."""
        return self.responses.sorted(key=key, reversed=reversed, limit=limit, expired=expired)

    def filter(
        self,
        valid: bool = True,
        expired: bool = True,
        invalid: bool = False,
        older_than: ExpirationTime = None,
    ) -> Iterator[CachedResponse]:
        """As requests-cache's, reading only the responses the rows' expiry cannot rule out."""
        if not any([valid, expired, invalid, older_than]):
            return
        only = None
        if not (invalid or older_than) and valid != expired:
            only = expired  # only expired, or only unexpired, responses: chosen on the keys
        for key, value in self.responses.read_items(expired=only):
            response = self._response(key, value)
            if invalid and response is None:
                placeholder = CachedResponse(status_code=504)
                placeholder.cache_key = key
                yield placeholder
            elif response is not None and (
                (valid and not response.is_expired)
                or (expired and response.is_expired)
                or (older_than and response.is_older_than(older_than))
            ):
                yield response

    def delete(self, *keys: str, expired: bool = False, **kwargs: Any) -> None:
        """As requests-cache's; ``expired=True`` chooses the expired responses on their rows' expiry in
        one query, reading none of them."""
        if expired and not any(value for name, value in kwargs.items() if name != "verify"):
            super().delete(*keys, *self.responses.expired_keys())
            return
        super().delete(*keys, expired=expired, **kwargs)

    def _prune_redirects(self) -> None:
        """Delete the redirects whose response is gone (:func:`.shared.dangling_redirects`)."""
        redirects = dict(self.redirects.read_items())
        present = self.repository.contains_many(self.responses.backend, shared.redirect_targets(redirects))
        self.redirects.bulk_delete(shared.dangling_redirects(redirects, present))

    def _arguments(self) -> str:
        return repr(self.cache_name)
