"""A statement ready to run on a DB-API connection: its SQL text and how to bind values to it.

Standard library only: the SQLite statements are kept as text
(:mod:`animedex_store.sqlite_statements`, generated from the constructs in
:mod:`animedex_store.statements`), so running them needs no SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable

__all__ = ["Compiled", "Bind", "InOrder"]

#: Turns the values a caller passes, in a fixed order, into the driver's parameters.
Bind = Callable[[Sequence[Any]], Any]


class Compiled:
    """A statement's SQL string and a function turning ordered values into its parameters."""

    __slots__ = ("sql", "bind")

    def __init__(self, sql: str, bind: Bind) -> None:
        self.sql = sql
        self.bind = bind

    def __repr__(self) -> str:
        return f"Compiled({self.sql!r})"


class InOrder:
    """A positional ``bind`` taking the caller's values at the indexes ``order``, in that order."""

    __slots__ = ("order",)

    def __init__(self, *order: int) -> None:
        self.order = order

    def __call__(self, values: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(values[index] for index in self.order)

    def __repr__(self) -> str:
        return f"InOrder{self.order}"
