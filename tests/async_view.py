"""``AsyncCacheRepository`` seen through ``CacheRepository``'s API, so one table of behaviours tests both.

A module that sets ``BOTH_FLAVOURS = True`` runs each test that opens repositories
through ``make_repository`` (or ``repo``) twice: on ``CacheRepository``, and on an
``AsyncCacheRepository`` whose every call is awaited on an event loop of its own
in a thread (conftest's ``flavour``). Same arguments, same results, same errors.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

from animedex_store import AsyncCacheRepository

__all__ = ["EventLoopThread", "SyncView"]

T = TypeVar("T")


class EventLoopThread:
    """An event loop running in a thread of its own; :meth:`run` awaits a coroutine there."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="test event loop", daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


async def _collect(keys: AsyncIterator[Any]) -> list[Any]:
    return [key async for key in keys]


class SyncView:
    """``repository``'s coroutines as plain calls, run on ``loop``; opened now, as a sync one opens."""

    def __init__(self, repository: AsyncCacheRepository, loop: EventLoopThread) -> None:
        self._repository = repository
        self._loop = loop
        loop.run(repository.open())

    def __getattr__(self, name: str) -> Any:
        if name in ("_db", "_sql"):  # tests that look at the statements or wrap the connections
            operations = self._repository._ops
            return operations.db if name == "_db" else operations.sql
        attribute = getattr(self._repository, name)
        if name == "keys":
            return lambda *args, **kwargs: iter(self._loop.run(_collect(attribute(*args, **kwargs))))
        if inspect.iscoroutinefunction(attribute):
            return lambda *args, **kwargs: self._loop.run(attribute(*args, **kwargs))
        return attribute

    def __enter__(self) -> SyncView:
        return self

    def __exit__(self, *_exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        self._loop.run(self._repository.close())

    def __iter__(self) -> Iterator[Any]:
        raise TypeError("a repository is not iterable")
