"""CacheControl on animedex-store: a ``requests`` session's HTTP cache in SQLite, PostgreSQL or MariaDB.

```python
import requests
from cachecontrol import CacheControl
from animedex_store.integrations.cachecontrol import StoreCache

session = CacheControl(requests.Session(), cache=StoreCache("postgresql+psycopg://app@db/cache"))
```

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
"""

from __future__ import annotations

import io
from datetime import datetime
from typing import IO

try:  # the ignore: mypy checks this module where the optional dependency is missing too (Python 3.9)
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
from .shared import Backends, Owner, fitted_key, row_ttl

__all__ = ["StoreCache", "backends", "signature"]


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
        """The metadata stored for ``key``, or ``None`` (missing or expired)."""
        return self.repository.get(self._responses, signature(key))

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
