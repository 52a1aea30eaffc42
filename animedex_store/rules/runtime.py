"""What the rules need of the side that runs them, besides the database (:class:`Runtime`).

The blocking runtime of :class:`~animedex_store.CacheRepository` sleeps and locks
the calling thread and renews a claim from a thread; the asynchronous one of
:class:`~animedex_store.AsyncCacheRepository` awaits ``asyncio.sleep``, takes an
``asyncio.Lock`` and renews from a task. The rules never import either.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..core.response import CachedResponse

__all__ = ["Runtime", "Lock", "Key"]

#: ``(backend, signature)``.
Key = tuple[str, str]


class Lock(Protocol):
    """Mutual exclusion across an ``await``: ``async with lock: ...``."""

    async def __aenter__(self) -> Any: ...

    async def __aexit__(self, *exc_info: Any) -> Any: ...


class Runtime(Protocol):
    """Waiting, mutual exclusion, calling a user's ``fetch`` while its claim is kept alive, and
    sharing one key's flight among the callers of one process that can share it."""

    def new_lock(self) -> Lock:
        """A new lock for one piece of shared state (the size cap's running total)."""

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of real time."""

    async def fetch(
        self, fetch: Callable[[], Any], renew: Callable[[], Coroutine[Any, Any, bool]], every: float
    ) -> Any:
        """``fetch()``'s result (awaited if it is awaitable), calling ``renew()`` every ``every``
        seconds while it runs, until ``renew()`` says ``False`` (the claim was lost)."""

    def in_flight(self, key: Key) -> bool:
        """Whether a flight of ``key`` started here (:meth:`lead`) is under way, for callers to join."""

    async def join(self, key: Key, wait: float) -> CachedResponse:
        """The result of the flight of ``key`` under way; ``TimeoutError`` after ``wait`` seconds."""

    async def lead(self, key: Key, flight: Coroutine[Any, Any, CachedResponse]) -> CachedResponse:
        """``flight``'s result, which the callers that :meth:`join` meanwhile share."""
