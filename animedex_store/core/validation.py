"""Argument checks shared by every public write and read.

Each raises ``TypeError`` for a wrong type and ``ValueError`` for a bad value,
before anything touches the database.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, TypeVar

__all__ = [
    "KEY_MAX_LENGTH",
    "MAX_TTL_SECONDS",
    "check_count",
    "check_key",
    "check_payload",
    "check_ttl",
    "MAX_WAIT_SECONDS",
    "check_seconds",
    "check_header_names",
    "encode_headers",
    "decode_headers",
    "renamed_argument",
    "check_choice",
    "check_moment",
    "check_pairs",
]

_T = TypeVar("_T")

#: Longest ``backend`` or ``signature`` accepted, in characters. Both key columns
#: together must fit one index entry on every engine: 2 x 255 x 4 bytes (utf8mb4)
#: is within MariaDB/MySQL's 3072-byte and PostgreSQL's ~2700-byte B-tree limits.
KEY_MAX_LENGTH = 255
#: Longest TTL accepted (~146 billion years): ``now + ttl`` must fit the 64-bit
#: ``expires_at`` column of every engine.
MAX_TTL_SECONDS = 2**62


def check_key(name: str, value: object) -> None:
    """``backend``/``signature``: a ``str`` of at most :data:`KEY_MAX_LENGTH` characters."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be str, not {type(value).__name__}")
    if len(value) > KEY_MAX_LENGTH:
        raise ValueError(
            f"{name} is {len(value)} characters long; the limit is {KEY_MAX_LENGTH} (keys are never truncated)"
        )


def check_payload(payload: object) -> bytes:
    """The payload as ``bytes`` (a snapshot of a ``bytearray``/``memoryview``)."""
    if type(payload) is bytes:
        return payload
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return bytes(payload)
    raise TypeError(f"payload must be bytes, bytearray or memoryview, not {type(payload).__name__}")


def check_count(name: str, value: object) -> int:
    """A count of things: an ``int`` of at least 1 (``bool`` is refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be int, not {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")
    return value


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    """One of ``choices`` (``str``s)."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be str, not {type(value).__name__}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, not {value!r}")
    return value


def check_moment(name: str, value: object) -> datetime:
    """A point in time: a ``datetime`` (naive is taken as UTC where it is used)."""
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, not {type(value).__name__}")
    return value


def check_ttl(ttl_seconds: object) -> int:
    """``ttl_seconds``: an ``int`` from 0 to :data:`MAX_TTL_SECONDS` (``bool`` is refused)."""
    if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int):
        raise TypeError(f"ttl_seconds must be int, not {type(ttl_seconds).__name__}")
    if not 0 <= ttl_seconds <= MAX_TTL_SECONDS:
        raise ValueError(f"ttl_seconds must be between 0 and {MAX_TTL_SECONDS}, got {ttl_seconds}")
    return int(ttl_seconds)


#: Longest ``wait_seconds``/``lease_seconds`` accepted (~31 years): lease ends, in epoch
#: milliseconds, must fit the 64-bit ``lease_until`` column of every engine.
MAX_WAIT_SECONDS = 10**9


def check_seconds(name: str, value: object, *, positive: bool = False) -> float:
    """A duration in seconds: an ``int`` or ``float`` (not ``bool``), finite, at least 0
    (more than 0 when ``positive``) and at most :data:`MAX_WAIT_SECONDS`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be an int or float number of seconds, not {type(value).__name__}")
    if not (0 < value if positive else 0 <= value) or not value <= MAX_WAIT_SECONDS:  # NaN fails both
        bound = "more than 0" if positive else "at least 0"
        raise ValueError(f"{name} must be {bound} and at most {MAX_WAIT_SECONDS} seconds, got {value!r}")
    return float(value)


def check_header_names(names: object) -> frozenset[str]:
    """``redact_headers``: an iterable of header names (not one bare ``str``), casefolded."""
    if isinstance(names, (str, bytes)) or not isinstance(names, Iterable):
        raise TypeError(f"redact_headers must be an iterable of header names, not {type(names).__name__}")
    names = list(names)
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"redact_headers must hold str header names, not {type(name).__name__}")
    return frozenset(name.casefold() for name in names)


def encode_headers(headers: object, redact: frozenset[str] = frozenset()) -> bytes:
    """Headers as the seed stored them: UTF-8 JSON of a str→str object, without
    the names in ``redact`` (casefolded; header names are case-insensitive)."""
    if not isinstance(headers, Mapping):
        raise TypeError(f"response_headers must be a mapping of str to str, not {type(headers).__name__}")
    for key, value in headers.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"response_headers must map str to str; got {type(key).__name__} -> {type(value).__name__}")
    kept = {key: value for key, value in headers.items() if key.casefold() not in redact} if redact else dict(headers)
    return json.dumps(kept, ensure_ascii=False).encode("utf-8")


def decode_headers(blob: bytes | None, where: tuple[str, str, str] | None = None) -> dict[str, str]:
    """The stored headers; ``{}`` for rows written before v2 or an unreadable blob, which is logged
    on the logger ``animedex_store.core.validation`` naming ``where`` (target, backend, signature)."""
    if not blob:
        return {}
    try:
        # Decoded first: json.loads on bytes sniffs the encoding, ~0.5 µs of every get_with_meta.
        headers = json.loads(str(blob, "utf-8"))
    except (ValueError, RecursionError) as exc:  # not UTF-8 (UnicodeDecodeError), not JSON, nested too deep
        _unreadable_headers(where, f"{type(exc).__name__}: {exc}")
        return {}
    if isinstance(headers, dict):
        return headers
    _unreadable_headers(where, f"a JSON {type(headers).__name__}, not an object")
    return {}


def _unreadable_headers(where: tuple[str, str, str] | None, why: str) -> None:
    import logging  # only when a row is damaged: the fast path does not load logging

    target, backend, signature = where or ("?", "?", "?")
    logging.getLogger(__name__).warning(
        "%s: the response headers stored with %r, %r are unreadable (%.200s); they read as {}",
        target,
        backend,
        signature,
        why,
    )


def renamed_argument(old: str, new: str, value: _T) -> _T:
    """``value``, passed under the old name ``old`` of the argument now called ``new``: warns with a
    :class:`DeprecationWarning` pointing at the caller's caller. Old names work for one more release."""
    warnings.warn(
        f"{old}= is deprecated and will be removed in the next release; use {new}=",
        DeprecationWarning,
        stacklevel=3,
    )
    return value


def check_pairs(items: object) -> Iterator[tuple[Any, Any]]:
    """``(signature, payload)`` pairs from an iterable, refusing anything else with ``TypeError``."""
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise TypeError(
            f"items must be a mapping or an iterable of (signature, payload) pairs, not {type(items).__name__}"
        )
    for item in items:
        try:
            signature, payload = item
        except (TypeError, ValueError):
            raise TypeError(f"each item must be a (signature, payload) pair, not {item!r:.80}") from None
        yield signature, payload
