"""A clock that moves only when told, for tests and for the CLI's selftest.

Any ``() -> datetime`` works as a repository's ``clock``; this one is fixed
until ``advance``d or ``set``.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Callable

__all__ = [
    "Clock",
    "FrozenClock",
    "FROZEN_AT",
    "epoch_seconds",
    "epoch_millis",
    "utc_datetime",
    "clock_now",
    "clock_seconds",
    "clock_millis",
]

#: A clock returns the current time as an aware datetime (naive is taken as UTC).
Clock = Callable[[], datetime]

#: Where a FrozenClock (and so the ``frozen_clock`` fixture) starts by default.
FROZEN_AT = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _aware(moment: datetime) -> datetime:
    """``moment``, with a naive datetime taken as UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def epoch_seconds(moment: datetime) -> int:
    """Whole epoch seconds of ``moment``; a naive datetime is taken as UTC."""
    return int(_aware(moment).timestamp())


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MILLISECOND = timedelta(milliseconds=1)
_LAST = datetime.max.replace(tzinfo=timezone.utc)
_LAST_SECONDS = int(_LAST.timestamp())
_FIRST = datetime.min.replace(tzinfo=timezone.utc)
_FIRST_SECONDS = int(_FIRST.timestamp())


def utc_datetime(seconds: int) -> datetime:
    """Epoch ``seconds`` as an aware UTC datetime, pinned to the years 1 to 9999 that a datetime can
    hold: a row may live far longer (``ttl_seconds`` up to 2**62, "for ever")."""
    if seconds >= _LAST_SECONDS:
        return _LAST
    if seconds <= _FIRST_SECONDS:
        return _FIRST
    return datetime.fromtimestamp(seconds, timezone.utc)


def epoch_millis(moment: datetime) -> int:
    """Whole epoch milliseconds of ``moment`` (exact: no float), for leases of a few seconds;
    a naive datetime is taken as UTC."""
    return (_aware(moment) - _EPOCH) // _MILLISECOND


def clock_now(clock: Clock | None) -> datetime:
    """Now by ``clock`` (``None``: the system's), aware UTC."""
    return datetime.now(timezone.utc) if clock is None else _aware(clock())


def clock_seconds(clock: Clock | None) -> int:
    """Now by ``clock`` in whole epoch seconds, as rows store times."""
    return int(time.time()) if clock is None else epoch_seconds(clock())


def clock_millis(clock: Clock | None) -> int:
    """Now by ``clock`` in epoch milliseconds, as claims store their leases."""
    return time.time_ns() // 1_000_000 if clock is None else epoch_millis(clock())


class FrozenClock:
    """A clock that moves only when told: call it for the time, ``advance`` or ``set`` it."""

    def __init__(self, start: datetime = FROZEN_AT) -> None:
        self.set(start)

    def __call__(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> datetime:
        """Move forward by ``seconds`` (may be fractional or negative); returns the new time."""
        self._now += timedelta(seconds=seconds)
        return self._now

    def set(self, moment: datetime) -> datetime:
        """Jump to ``moment`` (naive is taken as UTC); returns it."""
        if not isinstance(moment, datetime):
            raise TypeError(f"moment must be a datetime, not {type(moment).__name__}")
        self._now = _aware(moment)
        return self._now

    def timestamp(self) -> int:
        """The current time in whole epoch seconds, as the repository stores it."""
        return epoch_seconds(self._now)
