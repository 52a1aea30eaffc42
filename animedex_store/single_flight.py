"""Single flight: ``get_or_fetch`` calls ``fetch()`` once per key, however many callers ask at once.

Callers of one key, in threads, processes or on machines sharing the
database, agree through a claim in ``cache_locks`` (revision 0004): a row per
key naming its holder (a random token per call) and when its lease ends, in
epoch milliseconds by the repository's clock. Claiming is one atomic
statement per engine (see :func:`animedex_store.statements._claim`), never a
read followed by a write, so of any number of callers exactly one holds a
key's claim at a time.

* A live row is returned at once, exactly as ``get_with_meta`` returns it: no
  claim, no write, one read. That part lives in
  :meth:`CacheRepository.get_or_fetch` itself, which checks the arguments and
  calls :class:`Flight` only when the row is missing or expired: a hit then
  costs what ``get_with_meta`` costs.
* The holder reads the row again (a previous holder may have stored it just
  before releasing), calls ``fetch()``, stores the result and releases the
  claim. A ``fetch()`` that raises releases the claim too, so the next caller
  fetches at once.
* Everyone else waits: it polls the row with a backoff (10 ms doubling to
  250 ms), tries to take the claim over at each poll (which succeeds only once
  the lease has ended, e.g. its holder died) and gives up with
  :class:`FetchTimeoutError` after ``wait_seconds`` of real time (a monotonic
  clock: a frozen or skewed repository clock cannot make a caller wait forever).

Every statement is its own short transaction: no database lock or transaction
is held while ``fetch()`` runs or while a caller waits, so other keys, reads
and writes never wait for a fetch.

No SQLAlchemy here: the statements come compiled from the repository.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Union

from .errors import FetchTimeoutError, StoreError
from .response import CachedResponse
from .validation import check_payload, decode_headers, encode_headers

if TYPE_CHECKING:
    from .repository import CacheRepository

__all__ = ["Fetched", "FIRST_POLL_SECONDS", "LAST_POLL_SECONDS", "Flight"]

#: What ``fetch()`` returns: the payload, or the payload and its response headers.
#: ``Union``, not ``|``: a module-level alias is evaluated at import, and SPEC §9 asks for Python 3.9.
Fetched = Union[bytes, bytearray, memoryview, tuple[bytes, Mapping[str, str]]]  # noqa: UP007

#: A waiter's first pause between two looks at the row; each pause doubles up to :data:`LAST_POLL_SECONDS`.
FIRST_POLL_SECONDS = 0.01
#: A waiter's longest pause: a claim whose lease ended is taken over at most this late.
LAST_POLL_SECONDS = 0.25


class Flight:
    """One ``get_or_fetch`` call's way to a row it did not find live: claim and fetch, or wait for
    the holder. :meth:`CacheRepository.get_or_fetch` checks every argument, then calls :meth:`run`."""

    def __init__(
        self,
        repository: CacheRepository,
        backend: str,
        signature: str,
        fetch: Callable[[], Fetched],
        *,
        ttl: int,
        serve_stale: bool,
        lease_seconds: float,
    ) -> None:
        self.repository = repository
        self.key = (backend, signature)
        self.fetch = fetch
        self.ttl = ttl
        self.serve_stale = bool(serve_stale)
        # Whole milliseconds, rounded up: a lease is never shorter than asked.
        self.lease_ms = math.ceil(lease_seconds * 1000)
        # Per call, not per repository or thread: threads sharing a repository then exclude each other too.
        # What secrets.token_hex(16) returns, without importing secrets (hashlib, hmac, random):
        # this module loads with every repository, and start-up is paid on every CLI call.
        self.holder = os.urandom(16).hex()

    def run(self, wait: float, stale: CachedResponse | None) -> CachedResponse:
        """Fetch, or wait up to ``wait`` seconds for another caller's fetch; ``stale``: the expired
        row the first read found, or ``None``."""
        deadline = time.monotonic() + wait
        pause = FIRST_POLL_SECONDS
        while True:
            if self._claim():
                return self._fetch_and_store(stale)
            if self.serve_stale and stale is not None:
                return stale  # another caller is refreshing it
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._timed_out(wait)
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, LAST_POLL_SECONDS)
            found = self.repository.get_with_meta(*self.key, allow_stale=True)
            if found is not None:
                if not found.is_stale:
                    return found  # the holder stored it
                stale = found

    def _claim(self) -> bool:
        """Claim the key, or take over a claim whose lease has ended: one atomic statement
        (two on MariaDB/MySQL, each atomic)."""
        repository = self.repository
        sql = repository._sql
        now_ms = repository._now_ms()
        values = (*self.key, self.holder, now_ms + self.lease_ms, now_ms)
        if repository._db.execute(sql.claim, values) == 1:
            return True
        takeover = sql.claim_takeover
        return takeover is not None and repository._db.execute(takeover, values) == 1

    def _release(self) -> None:
        """Delete our claim; a claim taken over after our lease ended is someone else's and stays."""
        self.repository._db.execute(self.repository._sql.release, (*self.key, self.holder))

    def _fetch_and_store(self, stale: CachedResponse | None) -> CachedResponse:
        try:
            result = self._holding(stale)
        except BaseException:
            # The caller hears about the first failure; an unreleased claim only waits out its lease.
            with contextlib.suppress(StoreError):
                self._release()
            raise
        self._release()
        return result

    def _holding(self, stale: CachedResponse | None) -> CachedResponse:
        repository = self.repository
        # The previous holder may have stored the row between our first look and our claim.
        found = repository.get_with_meta(*self.key, allow_stale=True)
        if found is not None:
            if not found.is_stale:
                return found
            stale = found
        try:
            fetched = self.fetch()
        except Exception:
            if self.serve_stale and stale is not None:
                return stale
            raise
        payload, headers = _split(fetched)
        if headers is None:
            repository.set(*self.key, payload, ttl_seconds=self.ttl)
        else:
            repository.set_with_meta(*self.key, payload, response_headers=headers, ttl_seconds=self.ttl)
        stored = repository.get_with_meta(*self.key, allow_stale=True)
        if stored is None:  # deleted (clear, purge) right after we wrote it: what we wrote
            return _as_written(repository, payload, headers, self.ttl)
        return stored

    def _timed_out(self, wait: float) -> FetchTimeoutError:
        backend, signature = self.key
        target = self.repository.target
        return FetchTimeoutError(
            f"{target}: waited {wait:g} s for another caller's fetch of {backend!r}, {signature!r} and gave up "
            "(nothing was fetched or stored by this call); raise wait_seconds, or pass serve_stale=True "
            "to get the expired row meanwhile",
            target=target,
            backend=backend,
            signature=signature,
        )


def _as_written(
    repository: CacheRepository, payload: bytes, headers: Mapping[str, str] | None, ttl: int
) -> CachedResponse:
    """The response as a read right after our write would have returned it."""
    now = repository._now()
    blob = encode_headers({} if headers is None else headers, repository._redacted)
    expires_at = now + ttl
    return CachedResponse(
        payload,
        decode_headers(blob),
        datetime.fromtimestamp(now, timezone.utc),
        datetime.fromtimestamp(expires_at, timezone.utc),
        expires_at <= now,
    )


def _split(fetched: object) -> tuple[bytes, Mapping[str, str] | None]:
    """``(payload, headers or None)`` from what ``fetch()`` returned; ``TypeError`` for anything else.
    The headers are checked when they are stored."""
    if isinstance(fetched, (bytes, bytearray, memoryview)):
        return check_payload(fetched), None
    if isinstance(fetched, tuple) and len(fetched) == 2 and isinstance(fetched[0], (bytes, bytearray, memoryview)):
        return check_payload(fetched[0]), fetched[1]
    raise TypeError(
        "fetch() must return bytes (or bytearray/memoryview) or a (bytes, headers mapping) pair, "
        f"not {type(fetched).__name__}; nothing was stored"
    )
