"""A statement ready to run on a DB-API connection: its SQL text and how to bind values to it.

Standard library only: the SQLite statements are kept as text
(:mod:`animedex_store.fastpath.statements`, generated from the constructs in
:mod:`animedex_store.sql.statements`), so running them needs no SQLAlchemy.
:class:`StatementSet` is what both of them are, as the repository sees them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Callable, Protocol

if TYPE_CHECKING:
    from .listing import KeyPage

__all__ = ["Compiled", "Bind", "InOrder", "StatementSet"]

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


class StatementSet(Protocol):
    """Every statement a repository runs, compiled for one kind of database: the frozen SQLite module
    :mod:`animedex_store.fastpath.statements` and :class:`animedex_store.sql.statements.Statements`
    both are one, and mypy holds them to it. What each statement does and which values it takes, in
    order, is documented on ``Statements``."""

    @property
    def get_many_chunk(self) -> int: ...
    @property
    def get(self) -> Compiled: ...
    @property
    def get_with_meta(self) -> Compiled: ...
    @property
    def count_live(self) -> Compiled: ...
    @property
    def count_expired(self) -> Compiled: ...
    @property
    def upsert(self) -> Compiled: ...
    @property
    def replace(self) -> Compiled: ...
    @property
    def purge_expired(self) -> Compiled: ...
    @property
    def purge_expired_backend(self) -> Compiled: ...
    @property
    def insert_missing(self) -> Compiled: ...
    @property
    def replace_expired(self) -> Compiled | None: ...
    @property
    def touch(self) -> Compiled: ...
    @property
    def swap(self) -> Compiled: ...
    @property
    def delete(self) -> Compiled: ...
    @property
    def clear(self) -> Compiled: ...
    @property
    def clear_backend(self) -> Compiled: ...
    @property
    def stats(self) -> Compiled: ...
    @property
    def payload_size(self) -> Compiled: ...
    @property
    def payload_total(self) -> Compiled: ...
    @property
    def backend_payload_total(self) -> Compiled: ...
    @property
    def eviction_batch(self) -> Compiled: ...
    @property
    def claim(self) -> Compiled: ...
    @property
    def claim_takeover(self) -> Compiled | None: ...
    @property
    def renew(self) -> Compiled: ...
    @property
    def release(self) -> Compiled: ...
    @property
    def purge_claims(self) -> Compiled: ...
    @property
    def claims_held(self) -> Compiled: ...
    def get_many(self, size: int) -> Compiled: ...
    def delete_many(self, size: int) -> Compiled: ...
    def present_many(self, size: int) -> Compiled: ...
    def keys_page(self, page: KeyPage) -> Compiled: ...
