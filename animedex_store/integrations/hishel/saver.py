"""Saving a new entry's body as its consumer reads it, once, as coroutines over the repository's operations.

:func:`saving` is the stream hishel hands the consumer: an async generator over the
upstream body (the sync storage hands it a view of its sync body that never suspends,
and runs each step with :func:`~animedex_store.core.blocking.run_blocking`). Full chunks
become rows as they arrive, under a claim (a ``writing`` entry row) renewed by the clock
on every piece, not on every chunk, so a slow stream keeps it; the entry's rows are
written at the end, the entry's own only while the claim still stands. A storage
failure, a lapsed claim or a body over the limit stops the saving (the rows written
so far deleted, the failure logged); the consumer is never told.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING

from ...errors import StoreError
from ..shared import log_swallowed, operations, row_ttl
from .rows import CHUNK_SIZE, GRACE_SECONDS, STORED, WRITING, Stored, chunk_signature, header_lists, new_id
from .store import Store, logger

if TYPE_CHECKING:
    from hishel import Headers, Request  # type: ignore[import-not-found,unused-ignore]

    from ...rules.operations import Operations

__all__ = ["Saver", "start", "saving"]


class _ClaimLapsed(Exception):
    """The writer's claim was reclaimed (renewed too late): its chunks may be gone."""


class Saver:
    """Saves one new entry (``deadline`` and ``tti`` as hishel computed them) of ``key``, its body at
    most ``limit`` bytes."""

    def __init__(
        self,
        store: Store,
        key: str,
        request: Request,
        deadline: float | None,
        tti: float | None,
        limit: int | None,
    ) -> None:
        self.store = store
        self.id: uuid.UUID = new_id()
        self.key = key
        self.request = request
        self.deadline = deadline
        self.tti = tti
        self.limit = limit
        self.saving = True
        self.buffer = bytearray()
        self.size = 0
        self.chunks = 0
        self.claimed: float | None = None  # when the claim on the chunks was last written
        self.written = False  # whether any row of the entry may have been written

    async def add(self, data: bytes) -> None:
        """A piece of the body: full chunks written, the claim renewed when half its life has passed."""
        if not self.saving:
            return
        self.size += len(data)
        if self.limit is not None and self.size > self.limit:
            await self.abort()
            return
        self.buffer += data
        try:
            ops = await operations(self.store.repository)
            while len(self.buffer) >= CHUNK_SIZE:
                await self._write_chunk(ops, bytes(self.buffer[:CHUNK_SIZE]))
                del self.buffer[:CHUNK_SIZE]
            if self.claimed is not None:
                await self._keep_claim(ops, self.store.now())
        except (StoreError, _ClaimLapsed):
            await self._failed("could not save a response body")

    async def _keep_claim(self, ops: Operations, now: float) -> None:
        """Claim the chunks (if this writer dies, they are reclaimed :data:`~.rows.GRACE_SECONDS` after
        its last renewal), or renew the claim once half of that has passed, only while it stands."""
        if self.claimed is not None and now - self.claimed < GRACE_SECONDS / 2:
            return
        claim = Stored(self.key, WRITING, restarted=now)
        self.written = True
        if not await self.store.write_entry(ops, self.id.hex, claim, now, new=self.claimed is None):
            raise _ClaimLapsed
        self.claimed = now

    async def _write_chunk(self, ops: Operations, data: bytes) -> None:
        await self._keep_claim(ops, self.store.now())
        signature = chunk_signature(self.id.hex, self.chunks)
        await ops.set(self.store.chunks, signature, data, ttl_seconds=row_ttl(None, 0))
        self.chunks += 1

    async def finish(self, status: int, response_headers: Headers) -> None:
        """The body was read to its end: store the entry (a failure only logged)."""
        if not self.saving:
            return
        store = self.store
        try:
            ops = await operations(store.repository)
            body = bytes(self.buffer)
            if self.chunks and body:
                await self._write_chunk(ops, body)
            now = store.now()
            stored = Stored(
                self.key,
                STORED,
                method=self.request.method,
                url=self.request.url,
                request_headers=header_lists(self.request.headers),
                status=status,
                response_headers=header_lists(response_headers),
                deadline=self.deadline,
                tti=self.tti,
                restarted=now,
                chunks=self.chunks,
                body=b"" if self.chunks else body,
            )
            expires = stored.expires()
            if expires is not None and expires <= now:
                await self.abort()  # expired already (a TTL of 0)
                return
            self.written = True
            if not await store.write_entry(ops, self.id.hex, stored, now, new=self.claimed is None):
                raise _ClaimLapsed
            await ops.set(store.backends.of_key(self.key), self.id.hex, b"", ttl_seconds=row_ttl(expires, now))
            self.saving = False
        except (StoreError, _ClaimLapsed):
            await self._failed("could not store a response")
            return
        try:
            await store.after_storing(ops, self.size)
        except StoreError:
            log_swallowed(logger, "hishel: could not keep the namespace under max_size")

    async def _failed(self, what: str) -> None:
        log_swallowed(logger, f"hishel: {what}; it is served uncached")
        await self.abort()

    async def abort(self) -> None:
        """Stop saving and delete what was written (nothing once the entry is stored); a failure only logged."""
        if not self.saving:
            return
        self.saving = False
        self.buffer = bytearray()
        if not self.written:
            return
        try:
            ops = await operations(self.store.repository)
            await self.store.delete_chunks(ops, self.id.hex, self.chunks)
            await ops.delete(self.store.entries, self.id.hex)
        except StoreError:
            log_swallowed(logger, "hishel: could not delete an abandoned response body; it is reclaimed later")


async def start(
    store: Store, request: Request, key: str, deadline: float | None, tti: float | None, limit: int | None
) -> Saver:
    """A saver for a new entry of ``key``, once what expired in the namespace is reclaimed (a failure
    only logged)."""
    try:
        await store.reclaim(await operations(store.repository))
    except StoreError:
        log_swallowed(logger, "hishel: could not reclaim expired entries")
    return Saver(store, key, request, deadline, tti, limit)


async def saving(
    body: AsyncIterator[bytes], saver: Saver, status: int, headers: Headers
) -> AsyncGenerator[bytes, None]:
    """``body`` as the consumer reads it, saved by ``saver`` on the way; an unfinished stream (closed,
    failed, dropped) leaves no rows behind."""
    try:
        async for data in body:
            await saver.add(data)
            yield data
        await saver.finish(status, headers)
    finally:
        await saver.abort()  # unfinished: its rows go (nothing once stored)
