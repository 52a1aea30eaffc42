"""hishel's entries as rows: the backends of a namespace, entry ids, and the encoding of an entry's row.

Pure values and functions (no repository, no I/O): what the store writes and reads
(:mod:`.store`) and the saver streams (:mod:`.saver`) agree on here.
"""

from __future__ import annotations

import math
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

# The ignores: mypy checks this module where the optional dependency is missing too (Python 3.9).
import msgpack  # type: ignore[import-untyped,import-not-found,unused-ignore]  # a dependency of hishel
from hishel import Headers  # type: ignore[import-not-found,unused-ignore]

from ..shared import Backends

__all__ = [
    "CHUNK_SIZE",
    "GRACE_SECONDS",
    "ROWS_OUTLIVE_ENTRIES",
    "FORMAT",
    "STORED",
    "WRITING",
    "Stored",
    "Leftovers",
    "NewerFormat",
    "backends",
    "chunk_signature",
    "header_lists",
    "new_id",
    "unpack_entry",
    "unpack_leftovers",
]

#: Bytes of body per chunk row; a body up to this size is kept in its entry's row.
CHUNK_SIZE = 256 * 1024
#: Seconds a removed or expired entry's chunks stay for readers already streaming it, and how long a
#: writer's claim on the chunks it is writing lasts unless renewed (every half of it, by the clock).
GRACE_SECONDS = 180.0
#: How long an entry's row (and a removed one's leftovers) outlive the entry, so that ``purge`` leaves
#: them to this package, which reclaims their chunks first.
ROWS_OUTLIVE_ENTRIES = timedelta(days=365)
#: The row format this version writes and reads; a row of a later one is left alone (:class:`NewerFormat`).
FORMAT = 1
STORED, WRITING = "stored", "writing"
_STATES = (STORED, WRITING)


def backends(namespace: str = "hishel") -> Backends:
    """The backends a namespace's rows are under (``TypeError``/``ValueError`` for a bad namespace):
    ``.entries`` (an entry's row, or a writer's claim), ``.chunks`` (bodies larger than a chunk),
    ``.removed`` (what a removed entry leaves for its readers), and ``.of_key(key)`` (the entries
    of hishel's cache key)."""
    return Backends(namespace, ("entries", "chunks", "removed"), per_key=True)


class _EntryIds:
    """New entry ids: UUIDs of the version 7 layout, whose first 48 bits are epoch milliseconds and
    whose other 74 free bits are random, except that within a process each id is greater than the
    one before (RFC 9562's monotonic random: an id in the same millisecond as the last, or with the
    clock set back, is the last one plus one). A key's entries are listed oldest first by id."""

    _FREE_BITS = 74  # 12 bits of rand_a and 62 of rand_b, around the version and variant

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = (0, 0)  # (milliseconds, free bits) of the last id

    def new(self) -> uuid.UUID:
        milliseconds = time.time_ns() // 1_000_000
        free = int.from_bytes(os.urandom(10), "big") >> (80 - self._FREE_BITS)
        with self._lock:
            last_milliseconds, last_free = self._last
            if milliseconds <= last_milliseconds:
                milliseconds, free = last_milliseconds, last_free + 1
                if free >> self._FREE_BITS:  # the millisecond's ids are used up: the next one's
                    milliseconds, free = milliseconds + 1, 0
            self._last = (milliseconds, free)
        rand_a, rand_b = free >> 62, free & (1 << 62) - 1
        return uuid.UUID(int=milliseconds << 80 | 0x7 << 76 | rand_a << 64 | 0x2 << 62 | rand_b)


new_id = _EntryIds().new


def chunk_signature(entry_id: str, number: int) -> str:
    return f"{entry_id}:{number:08x}"


def header_lists(headers: Headers) -> dict[str, list[str]]:
    return {name: list(headers.get_list(name) or ()) for name in headers}


class NewerFormat(ValueError):
    """A row written by a later version of this package: skipped, never deleted (a fleet mid-upgrade
    keeps its cache)."""


@dataclass
class Stored:
    """An entry's row, decoded: a stored entry, or (``WRITING``) a writer's claim on its chunks."""

    key: str
    state: str
    method: str = ""
    url: str = ""
    request_headers: dict[str, list[str]] = field(default_factory=dict)
    status: int = 0
    response_headers: dict[str, list[str]] = field(default_factory=dict)
    deadline: float | None = None  # the TTL's end, epoch seconds
    tti: float | None = None
    restarted: float = 0.0  # when the TTI last restarted (while writing: when the claim was last renewed)
    chunks: int = 0  # chunk rows; 0: the body is ``body``
    body: bytes = b""

    def expires(self) -> float | None:
        """When the entry expires (a claim: when it was last renewed), or ``None``."""
        if self.state != STORED:
            return self.restarted
        idle_until = None if self.tti is None else self.restarted + self.tti
        return min((limit for limit in (self.deadline, idle_until) if limit is not None), default=None)

    def pack(self) -> bytes:
        fields: list[Any] = [FORMAT, self.key, self.state, self.restarted]
        if self.state == STORED:
            fields += [self.method, self.url, self.request_headers, self.status, self.response_headers]
            fields += [self.deadline, self.tti, self.chunks, self.body]
        packed: bytes = msgpack.packb(fields, use_bin_type=True)
        return packed


@dataclass
class Leftovers:
    """What a removed entry leaves until its readers are done: its key and how many chunk rows it has
    (-1: unknown, a writer's whose claim lapsed)."""

    key: str
    chunks: int

    def pack(self) -> bytes:
        packed: bytes = msgpack.packb([FORMAT, self.key, self.chunks], use_bin_type=True)
        return packed


def _fields(payload: bytes, lengths: tuple[int, ...]) -> list[Any]:
    """A row's msgpack fields, checked to be a list of one of ``lengths`` in this :data:`FORMAT`;
    :class:`NewerFormat` for a later format, ``ValueError`` for anything else (a row planted in a
    shared table must not reach hishel as something else)."""
    try:
        fields = msgpack.unpackb(payload)
    except Exception as exc:  # msgpack raises several unrelated classes for bad input (StackError, ...)
        raise ValueError(f"not msgpack ({type(exc).__name__})") from exc
    if type(fields) is list and fields and type(fields[0]) is int and fields[0] > FORMAT:
        raise NewerFormat(f"a row of format {fields[0]}, newer than this version's {FORMAT}")
    if type(fields) is not list or len(fields) not in lengths or fields[0] != FORMAT:
        raise ValueError("not a row of this format")
    return fields


def unpack_entry(payload: bytes) -> Stored:
    """An entry's row (:func:`_fields` says what it raises), checked field by field."""
    fields = _fields(payload, (4, 13))
    key, state, restarted = fields[1:4]
    if type(key) is not str or state not in _STATES or not _is_seconds(restarted):
        raise ValueError("not an entry row of this format")
    if len(fields) == 4 and state != STORED:
        return Stored(key, state, restarted=restarted)
    method, url, request_headers, status, response_headers, deadline, tti, chunks, body = fields[4:]
    if not (
        state == STORED
        and type(method) is str
        and type(url) is str
        and type(status) is int
        and 100 <= status <= 999
        and type(chunks) is int
        and chunks >= 0
        and type(body) is bytes
        and (deadline is None or _is_seconds(deadline))
        and (tti is None or _is_seconds(tti))
        and _are_headers(request_headers)
        and _are_headers(response_headers)
    ):
        raise ValueError("an entry row with fields of the wrong types")
    return Stored(
        key, state, method, url, request_headers, status, response_headers, deadline, tti, restarted, chunks, body
    )


def unpack_leftovers(payload: bytes) -> Leftovers:
    """A removed entry's leftovers row (:func:`_fields` says what it raises)."""
    _format, key, chunks = _fields(payload, (3,))
    if type(key) is not str or type(chunks) is not int or chunks < -1:
        raise ValueError("a leftovers row with fields of the wrong types")
    return Leftovers(key, chunks)


def _is_seconds(value: object) -> bool:
    return type(value) is int or (type(value) is float and math.isfinite(value))  # inf and NaN are no moments


def _are_headers(value: object) -> bool:
    # Plain loops: checked on every hit, they cost a third of nested all() over generators.
    if type(value) is not dict:
        return False
    for name, items in value.items():
        if type(name) is not str or type(items) is not list:
            return False
        for item in items:
            if type(item) is not str:
                return False
    return True
