"""CacheControl on animedex-store: a ``requests`` session's HTTP cache in SQLite, PostgreSQL or MariaDB.

.. code-block:: python

    import requests
    from cachecontrol import CacheControl
    from animedex_store.integrations.cachecontrol import StoreCache

    session = CacheControl(requests.Session(), cache=StoreCache("postgresql+psycopg://app@db/cache"))

:class:`StoreCache` is CacheControl's ``SeparateBodyBaseCache`` on a
:class:`~animedex_store.CacheRepository`. CacheControl is an optional dependency
(``pip install 'animedex-store[cachecontrol]'``, Python 3.10 and later);
importing :mod:`animedex_store` never imports this module.

How its data maps onto rows, under the backends of one ``namespace`` (default
``"cachecontrol"``, see :func:`backends`):

* ``<namespace>:responses``: CacheControl's metadata of a response (its own
  msgpack serialization; it never unpickles), living as long as CacheControl
  asks: ``expires`` seconds, or for ever when it gives none;
* ``<namespace>:bodies``: the body, stored apart as CacheControl hands it over,
  living as long as its metadata at least (CacheControl serves a response whose
  body is missing with an empty body).

The signature of both is CacheControl's key, the whole URL; a URL longer than a
row's key is ``sha256:<hex>`` instead (:func:`signature`).

CacheControl reads the metadata itself, and raises on shapes it never writes (a
list, a missing field, headers of the wrong type): a row planted or damaged in a
shared table would fail every request for its URL. So :meth:`StoreCache.get`
hands over only metadata of the shape CacheControl writes (its format ``cc=4``,
checked field by field; other formats it ignores on its own), and reads anything
else as missing, logged on ``animedex_store.integrations.cachecontrol``.
"""

from __future__ import annotations

import io
import logging
from datetime import datetime
from typing import IO

try:  # the ignores: mypy checks this module where the optional dependency is missing too (Python 3.9)
    import msgpack  # type: ignore[import-untyped,import-not-found,unused-ignore]  # a dependency of CacheControl
    from cachecontrol.cache import SeparateBodyBaseCache  # type: ignore[import-not-found,unused-ignore]
except ImportError as exc:  # the optional dependency
    raise ImportError(
        "animedex_store.integrations.cachecontrol needs CacheControl: "
        f"pip install 'animedex-store[cachecontrol]' (Python 3.10+) ({exc})"
    ) from exc

from ..core.clock import epoch_seconds, utc_datetime
from ..core.validation import MAX_TTL_SECONDS
from ..fastpath.targets import Target
from ..repository import CacheRepository
from .shared import Backends, Owner, fitted_key, log_unreadable, row_ttl

__all__ = ["StoreCache", "backends", "signature"]

logger = logging.getLogger(__name__)  # every failure this integration swallows is logged here, once
#: The format of CacheControl's metadata that :func:`check_metadata` knows (its serializer's ``cc=4``).
_FORMAT = b"cc=4,"
#: The fields of a response in that format, and the types CacheControl writes them with.
_RESPONSE_FIELDS: dict[str, tuple[type, ...]] = {
    "body": (bytes,),
    "headers": (dict,),
    "status": (int,),
    "version": (int,),
    "reason": (str,),
    "decode_content": (bool,),
    "strict": (bool, int, type(None)),  # written by old releases, dropped on read
}


def backends(namespace: str = "cachecontrol") -> Backends:
    """The backends a namespace's rows are under, ``.responses`` (the metadata) and ``.bodies``;
    ``TypeError``/``ValueError`` for a bad namespace."""
    return Backends(namespace, ("responses", "bodies"))


def signature(key: str) -> str:
    """The signature of CacheControl's ``key`` (a URL): the key itself, or ``sha256:<hex>`` of it
    when it is longer than a row's key (or starts with ``sha256:``)."""
    if not isinstance(key, str):
        raise TypeError(f"key must be str, not {type(key).__name__}")
    return fitted_key(key, "sha256:")


def check_metadata(value: bytes) -> None:
    """``ValueError`` unless ``value`` is metadata CacheControl can read without raising: its ``cc=4``
    format of the shape its serializer writes (any other format it ignores on its own)."""
    if not value.startswith(_FORMAT):
        return
    try:
        cached = msgpack.unpackb(value[len(_FORMAT) :], raw=False)
    except Exception:  # msgpack raises several unrelated classes; CacheControl ignores what it cannot unpack
        return
    response = cached.get("response") if type(cached) is dict else None
    if type(response) is not dict or not {"body", "headers", "status"} <= response.keys():
        raise ValueError("no response in CacheControl's metadata")
    for name, field in response.items():
        if not isinstance(field, _RESPONSE_FIELDS.get(name, ())):
            raise ValueError(f"the response's {name!r} is not what CacheControl writes")
    if not 100 <= response["status"] <= 999:
        raise ValueError(f"a response status of {response['status']}")
    vary = cached.get("vary", {})
    if not (_is_text_map(response["headers"], str) and _is_text_map(vary, (str, type(None)))):
        raise ValueError("headers or vary headers that are not text")


def _is_text_map(value: object, kinds: type | tuple[type, ...]) -> bool:
    return type(value) is dict and all(type(key) is str and isinstance(item, kinds) for key, item in value.items())


class StoreCache(Owner, SeparateBodyBaseCache):  # type: ignore[misc,unused-ignore]  # Any where it is missing
    """CacheControl's ``SeparateBodyBaseCache`` on a store: a response's metadata and body in two rows.

    ``target`` is anything :class:`~animedex_store.CacheRepository` takes;
    ``repository=`` shares an open one instead (see :mod:`animedex_store.integrations`
    for closing: a session closes its cache once for each of its two adapters,
    ``http://`` and ``https://``). ``namespace`` keeps this cache's rows apart from
    any other's (:func:`backends`).
    """

    LIBRARY = "CacheControl"

    def __init__(
        self, target: Target = None, *, namespace: str = "cachecontrol", repository: CacheRepository | None = None
    ) -> None:
        self.backends = backends(namespace)
        self.namespace = namespace
        self._responses, self._bodies = self.backends
        self._hold(target, repository)

    def _ttl(self, expires: int | datetime | None) -> int:
        """Seconds a row lives for CacheControl's ``expires``: seconds from now (what it passes), a
        moment (naive: UTC), or ``None``, for ever. A moment past, or a number below 1: 0 (stale at once)."""
        if expires is None or isinstance(expires, datetime):
            return row_ttl(expires, self.repository.now())
        if isinstance(expires, bool) or not isinstance(expires, int):
            raise TypeError(f"expires must be int seconds, a datetime or None, not {type(expires).__name__}")
        return min(max(expires, 0), MAX_TTL_SECONDS)

    def get(self, key: str) -> bytes | None:
        """The metadata stored for ``key``, or ``None``: missing, expired, or not of a shape CacheControl
        can read (logged once, see :func:`check_metadata`)."""
        row = signature(key)
        value = self.repository.get(self._responses, row)
        if value is None:
            return None
        try:
            check_metadata(value)
        except ValueError as exc:
            log_unreadable(logger, self.repository.target, self._responses, row, exc)
            return None
        return value

    def set(self, key: str, value: bytes, expires: int | datetime | None = None) -> None:
        """Store ``key``'s metadata for ``expires`` (see :meth:`_ttl`). A body already stored that would
        expire before it (CacheControl re-stores only the metadata after a ``304``) is given its TTL."""
        row = signature(key)
        ttl = self._ttl(expires)
        self.repository.set(self._responses, row, value, ttl_seconds=ttl)
        body = self.repository.get_with_meta(self._bodies, row)
        # Compared as reads report them (the year 9999 stands for every later moment).
        if body is not None and body.expires_at < utc_datetime(epoch_seconds(self.repository.now()) + ttl):
            self.repository.set(self._bodies, row, body.payload, ttl_seconds=ttl)

    def set_body(self, key: str, body: bytes) -> None:
        """Store ``key``'s body (a copy: CacheControl hands over a view of a temporary file), to live as
        long as its metadata does; with no metadata stored it is not kept."""
        row = signature(key)
        metadata = self.repository.get_with_meta(self._responses, row)
        ttl = 0 if metadata is None else row_ttl(metadata.expires_at, self.repository.now())
        self.repository.set(self._bodies, row, body, ttl_seconds=ttl)

    def get_body(self, key: str) -> IO[bytes] | None:
        """``key``'s body as a file object, or ``None``."""
        body = self.repository.get(self._bodies, signature(key))
        return None if body is None else io.BytesIO(body)

    def delete(self, key: str) -> None:
        """Delete ``key``'s metadata and body; nothing happens when they are missing."""
        row = signature(key)
        for backend in self.backends:
            self.repository.delete(backend, row)

    def _arguments(self) -> str:
        return f"namespace={self.namespace!r}"
