"""Django's cache semantics, written once as coroutines over a repository: :class:`Operations`.

Part of :mod:`animedex_store.integrations.django`; not public API. Django's ``StoreCache`` runs each
operation to its end with ``run_blocking`` over a :class:`~animedex_store.CacheRepository` (its sync
methods) and awaits it over an :class:`~animedex_store.AsyncCacheRepository` (its async ones).
"""

from __future__ import annotations

import contextlib
import pickle
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from django.core.cache.backends.base import DEFAULT_TIMEOUT  # type: ignore[import-untyped,import-not-found,unused-ignore]

from ...core.validation import MAX_TTL_SECONDS
from ...errors import FetchTimeoutError
from ..shared import fitted_key, log_unreadable, row_ttl
from .census import Census
from .store import Rows, logger

__all__ = ["Operations", "signature", "dump"]

#: How a key too long (or unfit) for a row's signature starts once hashed.
_HASHED = "sha256:"
#: Seconds ``get_or_set`` waits for another caller's value before computing its own.
_FLIGHT_WAIT_SECONDS = 30.0
#: What :meth:`Operations.get` returns for a missing key where ``None`` may be a stored value.
_MISSING = object()


def signature(key: str) -> str:
    """The row signature of a Django cache key (``make_key``'s result): the key itself, or
    ``sha256:<hex>`` of it when it is longer than a row's key, starts with ``sha256:``, or holds a NUL
    or a lone surrogate (which PostgreSQL's text refuses)."""
    if "\x00" in key or not (key.isascii() or _utf8(key)):
        # Hashed, as fitted_key hashes every key starting with the prefix; such a key is unfit too, so
        # it never meets a fit key, spelled out or hashed.
        key = _HASHED + key
    return fitted_key(key, _HASHED)


def _utf8(key: str) -> bool:
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def dump(value: Any) -> bytes:
    return pickle.dumps(value, pickle.HIGHEST_PROTOCOL)


class Unreadable(Exception):
    """A stored payload that does not unpickle (:meth:`Operations.load` logged it)."""


class Cache(Protocol):
    """What the operations read of the ``BaseCache`` they serve (at each call: Django's tests change
    ``_max_entries`` on the instance)."""

    namespace: str
    default_timeout: float | None
    _max_entries: int
    _cull_frequency: int

    def make_and_validate_key(self, key: Any, version: int | None = None) -> str: ...


class Operations:
    """Django's cache semantics over one side's repository, written once as coroutines: the sync
    methods run them to the end with ``run_blocking`` over a :class:`CacheRepository`, the async ones
    await them over an :class:`~animedex_store.AsyncCacheRepository`. ``rows()`` gives that side's
    repository (opened on first use)."""

    def __init__(self, cache: Cache, rows: Callable[[], Rows], census: Census, where: Callable[[], str]) -> None:
        self.cache = cache
        self.namespace = cache.namespace
        self.rows = rows
        self.census = census
        self.where = where  # the database, as messages name it

    # -- keys, timeouts, values -----------------------------------------------------------------
    def signature(self, key: Any, version: int | None) -> str:
        """The row signature of ``key``: Django's key (``make_key``, warned about by ``validate_key``), fitted."""
        return signature(self.cache.make_and_validate_key(key, version=version))

    def ttl(self, rows: Rows, timeout: Any) -> int:
        """Seconds a row lives for Django's ``timeout``: ``None`` for ever, 0 or less not at all, else at
        least ``timeout`` (whole seconds, rounded up: never expired early)."""
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.cache.default_timeout
        if timeout is None or timeout >= MAX_TTL_SECONDS:
            return MAX_TTL_SECONDS
        if timeout <= 0:
            return 0
        now = rows.now().timestamp()
        return row_ttl(now + timeout, now)

    def load(self, payload: bytes, row: str) -> Any:
        """The value pickled in ``payload``; :class:`Unreadable` (logged) when it does not unpickle."""
        try:
            return pickle.loads(payload)  # noqa: S301 - Django's cache values are pickles (module docs)
        except Exception as error:  # any damage: UnpicklingError, EOFError, a class gone, ...
            log_unreadable(logger, self.where(), self.namespace, row, error)
            raise Unreadable from error

    # -- reads ------------------------------------------------------------------------------------
    async def get(self, key: Any, default: Any, version: int | None) -> Any:
        row = self.signature(key, version)
        payload = await self.rows().get(self.namespace, row)
        if payload is None:
            return default
        try:
            return self.load(payload, row)
        except Unreadable:
            return default

    async def get_many(self, keys: Iterable[Any], version: int | None) -> dict[Any, Any]:
        rows = {self.signature(key, version): key for key in keys}
        if not rows:
            return {}
        found = {}
        for row, payload in (await self.rows().get_many(self.namespace, rows)).items():
            with contextlib.suppress(Unreadable):
                found[rows[row]] = self.load(payload, row)
        return found

    async def has_key(self, key: Any, version: int | None) -> bool:
        row = self.signature(key, version)
        return row in await self.rows().contains_many(self.namespace, (row,))

    # -- writes -----------------------------------------------------------------------------------
    async def set(self, key: Any, value: Any, timeout: Any, version: int | None) -> None:
        row, payload, rows = self.signature(key, version), dump(value), self.rows()
        ttl = self.ttl(rows, timeout)
        await self.make_room(rows, 1)
        await rows.set(self.namespace, row, payload, ttl_seconds=ttl)

    async def add(self, key: Any, value: Any, timeout: Any, version: int | None) -> bool:
        row, payload, rows = self.signature(key, version), dump(value), self.rows()
        ttl = self.ttl(rows, timeout)
        await self.make_room(rows, 1)
        return await rows.set_if_missing(self.namespace, row, payload, ttl_seconds=ttl)

    async def set_many(self, data: Mapping[Any, Any], timeout: Any, version: int | None) -> list[Any]:
        items = {self.signature(key, version): dump(value) for key, value in data.items()}
        if items:
            rows = self.rows()
            ttl = self.ttl(rows, timeout)
            await self.make_room(rows, len(items))
            await rows.set_many(self.namespace, items, ttl_seconds=ttl)
        return []

    async def touch(self, key: Any, timeout: Any, version: int | None) -> bool:
        row, rows = self.signature(key, version), self.rows()
        return await rows.touch(self.namespace, row, ttl_seconds=self.ttl(rows, timeout))

    async def incr(self, key: Any, delta: int, version: int | None) -> Any:
        row = self.signature(key, version)
        result: list[Any] = []

        def add_delta(payload: bytes) -> bytes:
            result[:] = [self.load(payload, row) + delta]  # TypeError for a value without "+ int" propagates
            return dump(result[0])

        try:
            changed = await self.rows().modify(self.namespace, row, add_delta)
        except Unreadable:
            changed = None
        if changed is None:
            raise ValueError(f"Key '{key}' not found")
        return result[0]

    async def get_or_set(self, key: Any, default: Any, timeout: Any, version: int | None) -> Any:
        if not callable(default):  # BaseCache's get_or_set, on this side's operations
            value = await self.get(key, _MISSING, version)
            return await self.add_then_get(key, default, timeout, version) if value is _MISSING else value
        row, rows = self.signature(key, version), self.rows()
        ttl = self.ttl(rows, timeout)
        computed: list[Any] = []

        def fetch() -> bytes:
            computed.append(default())
            return dump(computed[0])

        try:
            response = await rows.get_or_fetch(
                self.namespace, row, fetch, ttl_seconds=ttl, wait_seconds=_FLIGHT_WAIT_SECONDS
            )
        except FetchTimeoutError as error:  # another caller's fetch outlived the wait: compute our own
            logger.warning(
                "get_or_set(%r) in %s, %r: computes its own value: %s", key, self.where(), self.namespace, error
            )
            response = None
        if computed:  # this call computed the value and stored it
            await self.make_room(rows, 1, keep=row)
            return computed[0]
        if response is None:  # the wait ran out: as BaseCache's get_or_set would
            return await self.add_then_get(key, default(), timeout, version)
        try:
            return self.load(response.payload, row)
        except Unreadable:  # a live row that does not unpickle: replaced
            value = default()
            await self.set(key, value, timeout, version)
            return value

    async def add_then_get(self, key: Any, value: Any, timeout: Any, version: int | None) -> Any:
        """``value`` added (as :meth:`add`), then what is stored: another writer's value may have won."""
        await self.add(key, value, timeout, version)
        return await self.get(key, value, version)

    async def delete(self, key: Any, version: int | None) -> bool:
        return await self.rows().delete(self.namespace, self.signature(key, version))

    async def delete_many(self, keys: Iterable[Any], version: int | None) -> None:
        rows = [self.signature(key, version) for key in keys]
        if rows:
            await self.rows().delete_many(self.namespace, rows)

    async def clear(self) -> None:
        await self.rows().clear(self.namespace)
        self.census.cleared()

    # -- culling and expired rows -----------------------------------------------------------------
    async def make_room(self, rows: Rows, adding: int, *, keep: str | None = None) -> None:
        """Before writing ``adding`` rows: every :data:`PURGE_EVERY_WRITES` writes, delete the namespace's
        expired rows; when its count (as :class:`Census` knows it) would go over ``MAX_ENTRIES``, count
        exactly and cull (:meth:`cull`), sparing ``keep``."""
        limit = self.cache._max_entries  # read at each call: Django's tests change it on the instance
        work = self.census.claim(adding, limit)
        if work is None:
            return
        counted = culled = None
        try:
            removed = await rows.purge_expired(self.namespace)
            if work == Census.COUNT:
                counted = await rows.count(self.namespace, include_expired=True)
                culled = await self.cull(rows, counted, keep) if counted + adding > limit else 0
        except BaseException:
            self.census.forget()
            raise
        self.census.done(adding, limit, removed, counted, culled or 0)

    async def cull(self, rows: Rows, count: int, keep: str | None) -> int:
        """Delete a ``CULL_FREQUENCY``\\ th of the namespace's ``count`` rows (all of them with 0), those
        closest to expiry first, as the ``expires_at`` index lists them; returns how many were deleted."""
        frequency = self.cache._cull_frequency
        wanted = count if frequency <= 0 else count // frequency
        if wanted <= 0:
            return 0
        listing = rows.keys(self.namespace, include_expired=True, order_by="expires_at", limit=wanted + 1)
        chosen = [stored.signature async for stored in listing if stored.signature != keep][:wanted]
        return await rows.delete_many(self.namespace, chosen)
