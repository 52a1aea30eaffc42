"""Rows planted in a shared table: what every integration's table of planted rows is made of.

A pickle that runs code when it is loaded, and the bad input a deserializer meets
(nesting too deep to parse, numbers too large to hold, truncated values, bytes that
are not text). Each integration's tests plant these, and values of its own with the
wrong types, and check that a read is a miss, logged once, never an exception.
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import pytest

__all__ = [
    "planted_pickle",
    "DEEP_JSON",
    "DEEP_MSGPACK",
    "HUGE_JSON_NUMBER",
    "NOT_TEXT",
    "truncated",
    "unreadable_logged",
]

#: 100,000 nested JSON arrays: deeper than Python's recursion limit.
DEEP_JSON = b"[" * 100_000
#: 100,000 nested msgpack arrays of one element.
DEEP_MSGPACK = b"\x91" * 100_000
#: A JSON number of 100,001 digits (over Python's limit on converting digits to ``int``, 3.11+).
HUGE_JSON_NUMBER = b"1" + b"0" * 100_000
#: Bytes that are neither UTF-8 nor JSON nor msgpack of anything.
NOT_TEXT = b"\xc1\xff\xfe not text"


class _Planted:
    """Unpickling this creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (self.marker,))


def planted_pickle(marker: Path) -> bytes:
    """Pickle bytes that create the file ``marker`` when unpickled (and do nothing else)."""
    return pickle.dumps(_Planted(marker))


def truncated(payload: bytes) -> bytes:
    """``payload`` cut in half, as a write cut short (or a row cut by hand) leaves it."""
    return payload[: len(payload) // 2]


def unreadable_logged(caplog: pytest.LogCaptureFixture, logger: str, signature: str, reads: int = 1) -> None:
    """One warning was logged on ``logger`` for each of the ``reads`` of the row ``signature``, naming it
    as unreadable, and nothing else."""
    records = [record for record in caplog.records if record.name == logger]
    assert [record.levelno for record in records] == [logging.WARNING] * reads, [r.getMessage() for r in records]
    assert all("unreadable" in record.getMessage() and repr(signature) in record.getMessage() for record in records)
