"""What the rules need of the side that runs them, besides the database (:class:`Runtime`).

The blocking runtime of :class:`~animedex_store.CacheRepository` sleeps and locks
the calling thread and renews a claim from a thread; the asynchronous one of
:class:`~animedex_store.AsyncCacheRepository` awaits ``asyncio.sleep``, takes an
``asyncio.Lock`` and renews from a task. The rules never import either.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Protocol

__all__ = ["Runtime", "Lock"]


class Lock(Protocol):
    """Mutual exclusion across an ``await``: ``async with lock: ...``."""

    async def __aenter__(self) -> Any: ...

    async def __aexit__(self, *exc_info: Any) -> Any: ...


class Runtime(Protocol):
    """Waiting, mutual exclusion, and calling a user's ``fetch`` while its claim is kept alive."""

    def new_lock(self) -> Lock:
        """A new lock for one piece of shared state (the size cap's running total)."""

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of real time."""

    async def fetch(
        self, fetch: Callable[[], Any], renew: Callable[[], Coroutine[Any, Any, bool]], every: float
    ) -> Any:
        """``fetch()``'s result (awaited if it is awaitable), calling ``renew()`` every ``every``
        seconds while it runs, until ``renew()`` says ``False`` (the claim was lost)."""
