"""Run one of the repository's operations to its end on the calling thread, without an event loop.

Every operation is written once, as a coroutine over a
:class:`~animedex_store.core.connections.Connections` (:mod:`animedex_store.rules.operations`).
:class:`~animedex_store.AsyncCacheRepository` awaits it on its event loop;
:class:`~animedex_store.CacheRepository` hands it connections whose coroutines
never suspend (each call runs the driver to the end on the caller's thread), so
the whole operation finishes on its first step and :func:`run_blocking` only has
to take its result. No ``asyncio`` is imported: the sync path starts no loop.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["run_blocking"]

T = TypeVar("T")


def run_blocking(operation: Coroutine[Any, Any, T]) -> T:
    """The result of ``operation``, whose every await completes without suspending."""
    try:
        operation.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    operation.close()
    raise RuntimeError("an operation of a blocking repository suspended: its connections must never suspend")
