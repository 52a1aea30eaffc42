"""Single flight: ``get_or_fetch`` calls ``fetch()`` once per key, however many callers ask at once.

Callers of one key, in threads, processes or on machines sharing the
database, agree through a claim in ``cache_locks`` (revision 0004): a row per
key naming its holder (a random token per call) and when its lease ends, in
epoch milliseconds by the repository's clock. Claiming is one atomic
statement per engine (see :func:`animedex_store.sql.statements._claim`), never a
read followed by a write, so of any number of callers exactly one holds a
key's claim at a time.

* A live row is returned at once, exactly as ``get_with_meta`` returns it: no
  claim, no write, one read. That part lives in the operation itself
  (:meth:`animedex_store.rules.operations.Operations.get_or_fetch`), which checks
  the arguments and runs a :class:`Flight` only when the row is missing or
  expired: a hit then costs what ``get_with_meta`` costs.
* The holder reads the row again (a previous holder may have stored it just
  before releasing), calls ``fetch()``, stores the result and releases the
  claim. A ``fetch()`` that raises releases the claim too, so the next caller
  fetches at once.
* While ``fetch()`` runs, the holder renews its lease every third of it, from
  the repository's background thread (:mod:`.background`): a fetch slower than
  ``lease_seconds`` is still fetched once, whatever the caller's thread or event
  loop does meanwhile. A holder that died stops renewing, and its claim is taken
  over once the lease ends. A renewal that fails (the database unreachable) is
  logged once, on the logger ``animedex_store.rules.flight``, and tried again at the
  next third; a claim found taken over (the lease ended before a renewal got
  through) is logged there too, and renewals stop.
* Every claim statement is idempotent for its holder: run twice (its first
  reply lost with the connection), it finds the holder's own claim and holds it.
* Everyone else waits: it polls the row with a backoff (10 ms doubling to
  250 ms), tries to take the claim over at each poll (which succeeds only once
  the lease has ended, e.g. its holder died) and gives up with
  :class:`FetchTimeoutError` after ``wait_seconds`` of real time (a monotonic
  clock: a frozen or skewed repository clock cannot make a caller wait forever).
  (Coroutines of one process asking :class:`~animedex_store.AsyncCacheRepository`
  for one key share a single flight before any of this: only one of them polls.)

Every statement is its own short transaction: no database lock or transaction
is held while ``fetch()`` runs or while a caller waits, so other keys, reads
and writes never wait for a fetch.

This module knows nothing of the repository: the operations hand a flight a
:class:`FlightStore`, the things it needs of the store, and a
:class:`~animedex_store.rules.runtime.Runtime` to wait and fetch with.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol, Union

from ..core.response import CachedResponse
from ..core.validation import check_payload
from ..errors import FetchTimeoutError, StoreError
from .runtime import Key, Runtime

__all__ = ["Fetched", "FIRST_POLL_SECONDS", "LAST_POLL_SECONDS", "Flight", "FlightStore", "Key", "timed_out"]

#: What ``fetch()`` returns: the payload, or the payload and its response headers.
#: ``Union``, not ``|``: a module-level alias is evaluated at import, and the package runs on Python 3.9
#: (README, "Supported Pythons and platforms").
Fetched = Union[bytes, bytearray, memoryview, tuple[bytes, Mapping[str, str]]]  # noqa: UP007

#: A waiter's first pause between two looks at the row; each pause doubles up to :data:`LAST_POLL_SECONDS`.
FIRST_POLL_SECONDS = 0.01
#: A waiter's longest pause: a claim whose lease ended is taken over at most this late.
LAST_POLL_SECONDS = 0.25


class FlightStore(Protocol):
    """What a flight needs of the store: one key's row, and the key's claim."""

    @property
    def target(self) -> str:
        """The database, as messages name it."""

    async def read(self, key: Key) -> CachedResponse | None:
        """The stored row, live or expired (``is_stale``); ``None`` when there is none."""

    async def write(self, key: Key, payload: bytes, headers: Mapping[str, str] | None, ttl: int) -> CachedResponse:
        """Store ``payload`` (``headers=None``: as ``set`` does) and return the row as a read now would."""

    async def claim(self, key: Key, holder: str, lease_ms: int) -> bool:
        """Claim ``key`` for ``holder`` for ``lease_ms``, or take over a claim whose lease has ended;
        ``False`` while another caller's lease runs. Atomic."""

    async def renew(self, key: Key, holder: str, lease_ms: int) -> bool:
        """Extend ``holder``'s claim on ``key`` to ``lease_ms`` from now; ``False`` if it is not
        ``holder``'s any more (taken over after its lease ended)."""

    async def release(self, key: Key, holder: str) -> None:
        """Give up ``holder``'s claim on ``key``; a successor's claim is left alone."""


class Flight:
    """One ``get_or_fetch`` call's way to a row it did not find live: claim and fetch, or wait for
    the holder. The operation checks every argument, then awaits :meth:`run`."""

    def __init__(
        self,
        store: FlightStore,
        runtime: Runtime,
        key: Key,
        fetch: Callable[[], Any],
        *,
        ttl: int,
        serve_stale: bool,
        lease_seconds: float,
    ) -> None:
        self.store = store
        self.runtime = runtime
        self.key = key
        self.fetch = fetch
        self.ttl = ttl
        self.serve_stale = bool(serve_stale)
        # Whole milliseconds, rounded up: a lease is never shorter than asked.
        self.lease_ms = math.ceil(lease_seconds * 1000)
        # Per call, not per repository or thread: threads sharing a repository then exclude each other too.
        # What secrets.token_hex(16) returns, without importing secrets (hashlib, hmac, random):
        # this module loads with every repository, and start-up is paid on every CLI call.
        self.holder = os.urandom(16).hex()
        self._renewal_failed = False  # logged once per flight

    async def run(self, wait: float, stale: CachedResponse | None) -> CachedResponse:
        """Fetch, or wait up to ``wait`` seconds for another caller's fetch; ``stale``: the expired
        row the first read found, or ``None``."""
        deadline = time.monotonic() + wait
        pause = FIRST_POLL_SECONDS
        while True:
            if await self._claim():
                return await self._fetch_and_store(stale)
            if self.serve_stale and stale is not None:
                return stale  # another caller is refreshing it
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise timed_out(self.store.target, self.key, wait)
            await self.runtime.sleep(min(pause, remaining))
            pause = min(pause * 2, LAST_POLL_SECONDS)
            found = await self.store.read(self.key)
            if found is not None:
                if not found.is_stale:
                    return found  # the holder stored it
                stale = found

    async def _claim(self) -> bool:
        try:
            return await self.store.claim(self.key, self.holder, self.lease_ms)
        except BaseException:
            # Interrupted (cancelled) while the statement ran: it may have claimed the key all the
            # same, so give the claim up rather than leave it to its lease.
            with contextlib.suppress(StoreError):
                await self.runtime.to_the_end(self.store.release(self.key, self.holder))
            raise

    async def _fetch_and_store(self, stale: CachedResponse | None) -> CachedResponse:
        try:
            result = await self._holding(stale)
        except BaseException:
            # The caller hears about the first failure (a cancellation too), after the release, which
            # a second cancellation (the flight's last caller leaving too) does not cut short.
            with contextlib.suppress(StoreError):
                await self.runtime.to_the_end(self.store.release(self.key, self.holder))
            raise
        await self.runtime.to_the_end(self.store.release(self.key, self.holder))
        return result

    async def _holding(self, stale: CachedResponse | None) -> CachedResponse:
        # The previous holder may have stored the row between our first look and our claim.
        found = await self.store.read(self.key)
        if found is not None:
            if not found.is_stale:
                return found
            stale = found
        try:
            fetched = await self.runtime.fetch(self.fetch, self._renew, self.lease_ms / 3000)
        except Exception:
            if self.serve_stale and stale is not None:
                return stale
            raise
        payload, headers = _split(fetched)
        return await self.store.write(self.key, payload, headers, self.ttl)

    async def _renew(self) -> bool:
        """Renew the lease; ``False`` (stop renewing) once the claim is someone else's."""
        backend, signature = self.key
        try:
            held = await self.store.renew(self.key, self.holder, self.lease_ms)
        except Exception as exc:
            if not self._renewal_failed:
                self._renewal_failed = True
                _log().warning(
                    "%s: renewing the claim on %r, %r failed (%s); trying again every %.3g s while the fetch "
                    "runs: if none gets through before the lease ends, another caller may fetch this key too",
                    self.store.target,
                    backend,
                    signature,
                    exc,
                    self.lease_ms / 3000,
                )
            return True  # the lease has two thirds left: the next renewal may get through
        if not held:
            _log().warning(
                "%s: the claim on %r, %r was taken over while its fetch ran (the lease ended before a "
                "renewal got through); another caller may be fetching this key too",
                self.store.target,
                backend,
                signature,
            )
        return held


def _log() -> Any:
    import logging  # only when something went wrong: the fast path does not load logging

    return logging.getLogger(__name__)


def timed_out(target: str, key: Key, wait: float) -> FetchTimeoutError:
    """The error of a caller that waited ``wait`` seconds for another's fetch of ``key`` and gave up."""
    backend, signature = key
    return FetchTimeoutError(
        f"{target}: waited {wait:g} s for another caller's fetch of {backend!r}, {signature!r} and gave up "
        "(nothing was fetched or stored by this call); raise wait_seconds, or pass serve_stale=True "
        "to get the expired row meanwhile",
        target=target,
        backend=backend,
        signature=signature,
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
