"""A repository's options, checked before it opens, and the rule that one docstring documents both shells.

Standard library only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

from ..core.clock import Clock
from ..core.codecs import check_compression
from ..core.validation import check_header_names
from .size_cap import check_max_bytes

__all__ = ["Options", "check_options", "documented_by"]

F = TypeVar("F", bound=Callable[..., Any])


class Options(NamedTuple):
    """A repository's settings that do not depend on its database, checked before it opens."""

    clock: Clock | None
    redacted: frozenset[str]
    codec: int
    max_bytes: int | None


def check_options(clock: object, max_bytes: object, redact_headers: object, compression: object) -> Options:
    """The constructor's options checked (``TypeError``/``ValueError``), before anything opens."""
    if clock is not None and not callable(clock):
        raise TypeError(f"clock must be a callable returning a datetime, not {type(clock).__name__}")
    return Options(
        clock, check_header_names(redact_headers), check_compression(compression), check_max_bytes(max_bytes)
    )


def documented_by(operation: Callable[..., Any]) -> Callable[[F], F]:
    """Give a repository's method the docstring of the operation it runs: written once, here."""

    def document(method: F) -> F:
        method.__doc__ = operation.__doc__
        return method

    return document
