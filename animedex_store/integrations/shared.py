"""What every integration shares, each rule once: owning or borrowing a repository, namespaces and their
backends, keys that fit a row, row TTLs, redirect pruning, and how a swallowed failure is logged.

**The constructor convention** (every public class of :mod:`animedex_store.integrations`):
first what the library's own backends take (requests-cache's and aiohttp-client-cache's
``cache_name``, hishel's and CacheControl's nothing), then ``target``, anything
:class:`~animedex_store.CacheRepository` takes (``None``: ``$ANIMEDEX_STORE_URL``, else the
default cache file), then keyword-only options, among them ``repository=``: an open repository
to use instead of ``target`` (an :class:`~animedex_store.AsyncCacheRepository` for the async
classes). A repository opened from ``target`` is the object's own, and ``close()`` closes it; one
handed in is borrowed, and stays open. ``close()`` is idempotent; ``with`` (``async with`` for the
async classes) closes on the way out. :class:`Owner` and :class:`AsyncOwner` are that convention.

Nothing here imports an optional cache library: each integration imports its own.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, ClassVar, Generic, TypeVar, Union

from ..async_repository import AsyncCacheRepository
from ..core.clock import epoch_seconds
from ..core.validation import KEY_MAX_LENGTH, MAX_TTL_SECONDS, check_key
from ..repository import CacheRepository
from ..rules.operations import Operations

__all__ = [
    "Owner",
    "AsyncOwner",
    "Backends",
    "check_namespace",
    "namespace",
    "fitted_key",
    "is_storable_key",
    "row_ttl",
    "redirect_targets",
    "dangling_redirects",
    "log_unreadable",
    "log_swallowed",
    "operations",
]

R = TypeVar("R", CacheRepository, AsyncCacheRepository)
Repository = Union[CacheRepository, AsyncCacheRepository]
_O = TypeVar("_O", bound="Owner")
_A = TypeVar("_A", bound="AsyncOwner")


# -- owning or borrowing a repository ------------------------------------------------------------------
class _Holding(Generic[R]):
    """The convention's state, on either side: the repository, and whether it is this object's own."""

    #: The library this class serves, as its users name it (``repr()`` says it).
    LIBRARY: ClassVar[str]
    _repository_class: ClassVar[type[Any]]
    repository: R
    _owned: R | None

    def _hold(self, target: object, repository: R | None) -> None:
        """Take ``repository=`` (borrowed), or open one of this side's class on ``target`` (owned)."""
        kind = self._repository_class
        if repository is None:
            self.repository = self._owned = kind(target)
            return
        if not isinstance(repository, kind):
            raise TypeError(f"repository must be a {kind.__name__}, not {type(repository).__name__}")
        self.repository, self._owned = repository, None

    def _release(self) -> R | None:
        """The repository to close, once: this object's own, else ``None``."""
        owned, self._owned = getattr(self, "_owned", None), None
        return owned

    def _arguments(self) -> str:
        """What ``repr()`` shows between the parentheses: the library's arguments, the options that matter."""
        return ""

    def __repr__(self) -> str:
        return f"<{self.LIBRARY} {type(self).__name__}({self._arguments()}) on {self.repository!r}>"


class Owner(_Holding[CacheRepository]):
    """The constructor convention for a class on a :class:`~animedex_store.CacheRepository`
    (see the module docstring): ``close()`` and ``with``."""

    _repository_class = CacheRepository

    def close(self) -> None:
        """Close this object: the library's part, then the repository if it is this object's own (opened
        from ``target``); one handed in (``repository=``) stays open. Idempotent."""
        library_close = getattr(super(), "close", None)  # the library's base class, next in the MRO
        if library_close is not None:
            library_close()
        owned = self._release()
        if owned is not None:
            owned.close()

    def __enter__(self: _O) -> _O:
        return self

    def __exit__(self, *_exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        # Deterministically, as requests-cache's own SQLiteDict does: a SQLite connection in WAL mode
        # left open when the process forks breaks the children's reads (SQLITE_IOERR_SHORT_READ).
        owned = self._release()
        if owned is not None:
            owned.close()


class AsyncOwner(_Holding[AsyncCacheRepository]):
    """:class:`Owner` for a class on an :class:`~animedex_store.AsyncCacheRepository`: ``await close()``
    and ``async with``."""

    _repository_class = AsyncCacheRepository

    async def close(self) -> None:
        """Close this object: the library's part, then the repository if it is this object's own (opened
        from ``target``); one handed in (``repository=``) stays open. Idempotent."""
        library_close = getattr(super(), "close", None)  # the library's base class, next in the MRO
        if library_close is not None:
            await library_close()
        owned = self._release()
        if owned is not None:
            await owned.close()

    async def __aenter__(self: _A) -> _A:
        return self

    async def __aexit__(self, *_exc_info: object) -> None:
        await self.close()


async def operations(repository: Repository) -> Operations:
    """The coroutine core ``repository`` runs (:class:`~animedex_store.rules.operations.Operations`),
    opening an async one if it is not yet: an integration written as coroutines over it runs them as the
    repositories do, to completion on the calling thread for a :class:`~animedex_store.CacheRepository`
    (:func:`~animedex_store.core.blocking.run_blocking`, nothing suspends), awaited for an
    :class:`~animedex_store.AsyncCacheRepository`. The one place an integration reaches into a repository."""
    if isinstance(repository, CacheRepository):
        return repository._ops
    return repository._ops or await repository._operations()


# -- namespaces and keys -------------------------------------------------------------------------------
def namespace(prefix: str, cache_name: str, table_name: str) -> str:
    """The backend of one ``(cache_name, table_name)`` pair of a library whose backends take both
    (requests-cache, aiohttp-client-cache): ``<prefix>:<len>:<cache_name>:<table_name>``.

    The length prefix keeps ``("a:b", "c")`` and ``("a", "b:c")`` apart; a pair
    too long for a key is ``<prefix>:sha256:<hex>`` instead, which no spelled-out
    name can be (those have a digit after ``<prefix>:``).
    """
    return fitted_key(f"{prefix}:{len(cache_name)}:{cache_name}:{table_name}", f"{prefix}:sha256:")


def fitted_key(key: str, hashed_prefix: str) -> str:
    """``key`` as a row's ``backend`` or ``signature``: itself when it fits, else ``hashed_prefix``
    followed by its SHA-256 in hex. A key that itself starts with ``hashed_prefix`` is hashed too,
    so a key spelled out and a hashed one never meet."""
    if len(key) <= KEY_MAX_LENGTH and not key.startswith(hashed_prefix):
        return key
    return hashed_prefix + _sha256(key)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def is_storable_key(key: object) -> bool:
    """Whether ``key`` could be a row's signature (else no row holds it)."""
    try:
        check_key("signature", key)
    except (TypeError, ValueError):
        return False
    return True


_PER_KEY = ":key:"


def check_namespace(namespace: object, longest: int = KEY_MAX_LENGTH) -> str:
    """A ``namespace=`` checked: a ``str`` of 1 to ``longest`` characters (``TypeError``/``ValueError``)."""
    if not isinstance(namespace, str):
        raise TypeError(f"namespace must be str, not {type(namespace).__name__}")
    if not 0 < len(namespace) <= longest:
        raise ValueError(f"namespace must be 1 to {longest} characters long, not {len(namespace)}")
    return namespace


class Backends:
    """The backends of one ``namespace=`` (CacheControl, hishel): ``backends.<kind>`` is
    ``<namespace>:<kind>`` for each of the integration's ``kinds``, and with ``per_key``,
    :meth:`of_key` is ``<namespace>:key:<SHA-256 of the key>``, a backend per key of the library's.

    The namespace is checked: a ``str`` of 1 character or more, short enough for its longest
    backend to be a key (``TypeError``/``ValueError``); iterating gives the kinds' backends.
    """

    __slots__ = ("namespace", "_backends", "_per_key")

    def __init__(self, namespace: str, kinds: Iterable[str], *, per_key: bool = False) -> None:
        kinds = tuple(kinds)
        suffixes = [f":{kind}" for kind in kinds] + ([_PER_KEY + "0" * 64] if per_key else [])
        self.namespace = check_namespace(namespace, KEY_MAX_LENGTH - max(map(len, suffixes)))
        self._backends = {kind: f"{namespace}:{kind}" for kind in kinds}
        self._per_key = per_key

    def __getattr__(self, kind: str) -> str:
        try:
            return self._backends[kind]
        except KeyError:
            raise AttributeError(f"the namespace {self.namespace!r} keeps no {kind!r} rows") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._backends.values())

    def of_key(self, key: str) -> str:
        """The backend of the library's ``key`` (any length, any text)."""
        if not self._per_key:
            raise TypeError(f"the namespace {self.namespace!r} keeps no backend per key")
        return f"{self.namespace}{_PER_KEY}{_sha256(key)}"

    def __repr__(self) -> str:
        return f"Backends({self.namespace!r}, {list(self._backends)!r})"


# -- row TTLs ------------------------------------------------------------------------------------------
def row_ttl(moment: datetime | float | None, now: datetime | float, *, outlive: float = 0) -> int:
    """``ttl_seconds`` for a row written at ``now`` that must live until ``moment`` and ``outlive``
    seconds more: for ever when ``moment`` is ``None``; else rounded up, as rows keep whole seconds
    and count from ``now`` rounded down, so the row never expires before it (exact to the
    microsecond for datetimes, naive ones UTC); 0 for a moment already past; at most the longest TTL."""
    if moment is None:
        return MAX_TTL_SECONDS
    if isinstance(moment, datetime):
        end = epoch_seconds(moment) + (moment.microsecond > 0) + math.ceil(outlive)
    else:
        end = math.ceil(moment + outlive)
    start = epoch_seconds(now) if isinstance(now, datetime) else math.floor(now)
    return min(max(end - start, 0), MAX_TTL_SECONDS)


# -- redirects -----------------------------------------------------------------------------------------
def redirect_targets(redirects: Mapping[str, object]) -> list[str]:
    """The responses' keys that ``redirects`` (redirect key -> value read) point at and a row could hold."""
    return [target for target in redirects.values() if isinstance(target, str) and is_storable_key(target)]


def dangling_redirects(redirects: Mapping[str, object], present: frozenset[str]) -> list[str]:
    """The redirects whose response is gone (not among ``present``): what pruning deletes. The
    redirects are read (they are few); their targets are looked up a few hundred a query
    (``contains_many`` of :func:`redirect_targets`), no response read."""
    return [key for key, target in redirects.items() if target not in present]


# -- logging what is swallowed -------------------------------------------------------------------------
def log_unreadable(
    logger: logging.Logger, target: str | None, backend: str, signature: str, error: BaseException
) -> None:
    """A row the integration cannot read (planted, damaged, or deeper, bigger or stranger than any it
    writes), which it then treats as missing: a warning naming the database (``target``, its password
    masked), the row and why, once per read."""
    logger.warning("an unreadable row (%r, %r) of %s reads as missing: %s", backend, signature, target, _summary(error))


def log_swallowed(logger: logging.Logger, what: str) -> None:
    """A storage failure the integration hides from its library (``what`` it could not do, and what
    happens instead), logged at ``ERROR`` with the exception: call it in the ``except`` block."""
    logger.error("%s", what, exc_info=True)


def _summary(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text[:200]}" if text else type(error).__name__
