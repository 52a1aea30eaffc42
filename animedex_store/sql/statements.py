"""The repository's SQL, built from SQLAlchemy constructs: the one source of truth for every engine.

The hot path runs the compiled strings on the DB-API connection: SQLAlchemy's
``Connection.execute`` costs ~20 µs per call, twice a raw SQLite ``get``.
Parameters are always bound, never pasted into SQL.

Servers compile these once per kind of database. For SQLite the compiled text
is frozen into :mod:`animedex_store.fastpath.statements`, so the SQLite fast path
runs it without importing SQLAlchemy. After changing a construct here,
regenerate that module (a test fails until you do) with :mod:`animedex_store.sql.freeze`::

    python -m animedex_store.sql.freeze          # rewrite animedex_store/fastpath/statements.py
    python -m animedex_store.sql.freeze --check  # exit 1 if it is stale
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Any, cast

from sqlalchemy import (
    Dialect,
    Table,
    and_,
    bindparam,
    case,
    delete,
    func,
    literal_column,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.sql import ClauseElement, ColumnElement, Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import BindParameter

from ..core.compiled import Compiled, InOrder
from ..core.listing import KeyPage
from .models import CacheLock, CacheRow

__all__ = [
    "Compiled",
    "Statements",
    "GET_MANY_CHUNK",
    "VALUE_NAMES",
]

#: Signatures per ``get_many`` query: a power of two under every engine's limit on bound
#: parameters (SQLite before 3.32 allowed 999).
GET_MANY_CHUNK = 512

_rows = cast(Table, CacheRow.__table__)
_key_matches = (_rows.c.backend == bindparam("backend"), _rows.c.signature == bindparam("signature"))
_expired = _rows.c.expires_at <= bindparam("now")
_after_bound = _rows.c.expires_at > bindparam("bound")
_by_bound = _rows.c.expires_at <= bindparam("bound")
_payload_length = func.length(_rows.c.payload)  # bytes for a BLOB/bytea; SQLite reads no overflow page for it
# Constants as SQL literals, not bound parameters: callers bind only the values they pass.
_ZERO: ColumnElement[int] = literal_column("0")
_with_meta = (_rows.c.payload, _rows.c.response_headers, _rows.c.fetched_at, _rows.c.expires_at, _rows.c.codec)
_KEY = ("backend", "signature")
#: The values a write takes, in this order, which is the table's (``payload`` as stored, ``codec``
#: saying how): the compiled INSERT lists them so, and the driver gets a caller's tuple as it is.
VALUE_NAMES = ("backend", "signature", "expires_at", "fetched_at", "codec", "response_headers", "payload")

_locks = cast(Table, CacheLock.__table__)
_lock_key_matches = (_locks.c.backend == bindparam("backend"), _locks.c.signature == bindparam("signature"))
_lease_ended = _locks.c.lease_until <= bindparam("now_ms")
#: The values a claim takes, in this order (``now_ms`` decides whether an existing claim's lease ended).
_CLAIM_NAMES = ("backend", "signature", "holder", "lease_until", "now_ms")


def _compile(statement: ClauseElement, dialect: Dialect, names: Sequence[str]) -> Compiled:
    """Compile ``statement``; ``names`` is the order callers pass values in."""
    compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
    if compiled.positional and compiled.positiontup is not None:
        order = [names.index(name) for name in compiled.positiontup]
        return Compiled(compiled.string, tuple if order == list(range(len(names))) else InOrder(*order))
    return Compiled(compiled.string, lambda values: dict(zip(names, values)))


def _upsert(dialect: Dialect) -> ClauseElement:
    """One-statement insert-or-replace: no read-modify-write race between writers."""
    values: dict[str, BindParameter[Any]] = {name: bindparam(name) for name in VALUE_NAMES}
    replaced = VALUE_NAMES[2:]
    if dialect.name in ("mysql", "mariadb"):
        from sqlalchemy.dialects.mysql import insert as mysql_insert

        inserted = mysql_insert(_rows).values(values)
        return inserted.on_duplicate_key_update({name: inserted.inserted[name] for name in replaced})
    return _on_conflict_update(_rows, dialect, values, replaced)


def _on_conflict_update(
    table: Table,
    dialect: Dialect,
    values: dict[str, BindParameter[Any]],
    replaced: Sequence[str],
    where: Callable[[Any], ColumnElement[bool]] | None = None,
) -> ClauseElement:
    """PostgreSQL/SQLite: ``INSERT ... ON CONFLICT (primary key) DO UPDATE SET replaced [WHERE where]``;
    ``where(excluded)`` builds the condition from the row that was to be inserted."""
    if dialect.name not in ("postgresql", "sqlite"):
        raise NotImplementedError(f"animedex-store does not support the {dialect.name} dialect")
    # PostgreSQL's and SQLite's insert() spell ON CONFLICT alike.
    dialect_insert = importlib.import_module(f"sqlalchemy.dialects.{dialect.name}").insert
    statement = dialect_insert(table).values(values)
    upsert: ClauseElement = statement.on_conflict_do_update(
        index_elements=list(table.primary_key.columns),
        set_={name: statement.excluded[name] for name in replaced},
        where=None if where is None else where(statement.excluded),
    )
    return upsert


def _claim(dialect: Dialect) -> ClauseElement:
    """Claim a key in one statement: insert a claim, or take over one whose lease has ended or that
    is the same holder's already.

    The last case makes a claim idempotent: a claim that committed but whose
    reply was lost with its connection runs again (see
    :mod:`animedex_store.sql.servers`) and finds its own claim, which it holds,
    instead of another caller's to wait for. SQLite and PostgreSQL: an upsert
    whose update only happens when the lease ended or the holder is the same;
    rowcount 1 = claimed, 0 = another caller's live claim. MariaDB/MySQL:
    ``INSERT IGNORE`` (the primary key decides: 1 inserted, 0 a claim exists),
    followed by :func:`_take_over` when it inserted nothing. Not an
    ``ON DUPLICATE KEY UPDATE``: SQLAlchemy's MySQL drivers connect with
    ``CLIENT_FOUND_ROWS``, under which an insert and an update that changed
    nothing both count 1.
    """
    values: dict[str, BindParameter[Any]] = {name: bindparam(name) for name in _CLAIM_NAMES[:-1]}
    if dialect.name in ("mysql", "mariadb"):
        from sqlalchemy import insert

        # IGNORE would also turn bad data into warnings; every value here was checked before.
        return insert(_locks).values(values).prefix_with("IGNORE")
    return _on_conflict_update(
        _locks,
        dialect,
        values,
        ("holder", "lease_until"),
        where=lambda excluded: or_(_lease_ended, _locks.c.holder == excluded.holder),
    )


def _take_over() -> ClauseElement:
    """MariaDB/MySQL's second half of a claim: take over a claim whose lease has ended, or hold our own.

    Atomic on its own: InnoDB re-reads the row under its lock, so of two callers
    only the first sees the lease ended; the rowcount (rows matched, under
    ``CLIENT_FOUND_ROWS``) is 1 for it (and for the holder itself, run again)
    and 0 for the other.
    """
    return (
        update(_locks)
        .where(*_lock_key_matches, or_(_lease_ended, _locks.c.holder == bindparam("holder")))
        .values(holder=bindparam("holder"), lease_until=bindparam("lease_until"))
    )


def _purge_batch(*scope: ColumnElement[bool]) -> ClauseElement:
    """Delete up to ``limit`` expired rows (of those matching ``scope``): a short write transaction
    however many rows expired."""
    # The keys go through a derived table: MySQL refuses LIMIT in an IN subquery
    # and a subquery on the table being deleted from, but not a derived table.
    expired = select(_rows.c.backend, _rows.c.signature).where(*scope, _expired).limit(bindparam("limit")).offset(_ZERO)
    keys = expired.subquery("expired")
    return delete(_rows).where(tuple_(_rows.c.backend, _rows.c.signature).in_(select(keys.c.backend, keys.c.signature)))


#: A row expired by the moment of a write (its ``fetched_at``): one that such a write may replace.
_expired_at_write = _rows.c.expires_at <= bindparam("fetched_at")


def _insert_missing(dialect: Dialect) -> ClauseElement:
    """Store a row only where none is live, in one statement: an insert, or the replacement of an
    expired row. Values: :data:`VALUE_NAMES`; rowcount 1 = stored, 0 = a live row was there.

    SQLite and PostgreSQL: an upsert whose update happens only when the stored row expired by the
    write's ``fetched_at``. MariaDB/MySQL: ``INSERT IGNORE`` (1 inserted, 0 a row exists), followed
    by :func:`_replace_expired` when it inserted nothing, for the reason :func:`_claim` gives.
    """
    values: dict[str, BindParameter[Any]] = {name: bindparam(name) for name in VALUE_NAMES}
    if dialect.name in ("mysql", "mariadb"):
        from sqlalchemy import insert

        # IGNORE would also turn bad data into warnings; every value here was checked before.
        return insert(_rows).values(values).prefix_with("IGNORE")
    return _on_conflict_update(_rows, dialect, values, VALUE_NAMES[2:], where=lambda _excluded: _expired_at_write)


def _replace_expired() -> ClauseElement:
    """MariaDB/MySQL's second half of :func:`_insert_missing`: replace a row that expired by the
    write's ``fetched_at``. Atomic on its own, as :func:`_take_over` is: of two callers, only the
    first sees the row expired (rows matched, under ``CLIENT_FOUND_ROWS``)."""
    return (
        update(_rows)
        .where(*_key_matches, _expired_at_write)
        .values({name: bindparam(name) for name in VALUE_NAMES[2:]})
    )


#: What :class:`KeyPage` orders by, as SQL.
_KEY_SORTS: dict[str, ColumnElement[Any]] = {
    "signature": _rows.c.signature,
    "expires_at": _rows.c.expires_at,
    "size": _payload_length,
}
#: The values a keys page takes, in this order (a first page binds only those it uses).
KEY_PAGE_NAMES = ("backend", "bound", "after_value", "after_signature", "limit")


def _keys_page(page: KeyPage) -> ClauseElement:
    """``(signature, expires_at, stored bytes)`` of one backend's rows, a page in ``page``'s order."""
    sort = _KEY_SORTS[page.order_by]
    signature = _rows.c.signature
    expiry = _by_bound if page.expired else _after_bound
    if page.order_by != "expires_at" and not page.expired:
        # Live rows, or every row (the bound below all), by signature or size: the primary key or
        # ix_cache_rows_backend_size (0007) holds that order, and rows are mostly live, so reading it
        # in order until the page is full reads about a page. On a bare column SQLite (no statistics)
        # would range over the expiry index instead, every row of the backend, and sort them (17 ms
        # for ten keys of 100,000): an expression keeps it off that index. Only expired rows (few)
        # are better found through it.
        expiry = _rows.c.expires_at + _ZERO > bindparam("bound")
    query = select(signature, _rows.c.expires_at, _payload_length).where(_key_matches[0], expiry)
    if page.after:
        # Keyset pagination: strictly beyond the last row seen, ties broken by signature.
        after_signature: BindParameter[Any] = bindparam("after_signature")
        past_signature = signature < after_signature if page.descending else signature > after_signature
        if page.order_by == "signature":
            query = query.where(past_signature)
        else:
            after_value: BindParameter[Any] = bindparam("after_value")
            past_value = sort < after_value if page.descending else sort > after_value
            query = query.where(or_(past_value, and_(sort == after_value, past_signature)))
    orders = [sort] if page.order_by == "signature" else [sort, signature]
    return (
        query.order_by(*(order.desc() if page.descending else order for order in orders))
        .limit(bindparam("limit"))
        .offset(_ZERO)
    )


def row_totals(now: int) -> Executable:
    """Rows, expired rows (``expires_at <= now``) and payload bytes stored, over every backend, as one
    ``SELECT``. Only seed-v1 columns: ``animedex-store info`` counts a seed's or a behind database too."""
    return select(
        func.count(),
        func.coalesce(func.sum(case((_rows.c.expires_at <= now, 1), else_=0)), 0),
        func.coalesce(func.sum(_payload_length), 0),
    )


def _stats() -> ClauseElement:
    """Per backend: rows, expired rows, payload bytes, oldest and newest ``fetched_at``, in one pass."""
    expired = case((_expired, literal_column("1")), else_=_ZERO)
    return (
        select(
            _rows.c.backend,
            func.count(),
            func.sum(expired),  # never NULL: every group has at least one row
            func.sum(_payload_length),
            func.min(_rows.c.fetched_at),
            func.max(_rows.c.fetched_at),
        )
        .group_by(_rows.c.backend)
        .order_by(_rows.c.backend)
    )


class Statements:
    """Every statement the repository runs, compiled for one dialect on first use.

    Lazy, so opening a repository compiles only what it runs (a cold ``get``
    compiles one statement), and shared: :meth:`for_dialect` hands every
    repository on the same kind of database the same instance, so a test
    suite opening thousands of repositories compiles each statement once.
    """

    #: Signatures per :meth:`get_many` query (frozen for SQLite as ``get_many_chunk``).
    get_many_chunk = GET_MANY_CHUNK

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        self._sized: dict[tuple[str, int], Compiled] = {}
        self._pages: dict[KeyPage, Compiled] = {}

    @classmethod
    def for_dialect(cls, dialect: Dialect) -> Statements:
        """The shared instance for ``dialect``'s kind of database."""
        # What the compiled SQL depends on: the dialect and driver (class), the
        # placeholder style, and the server version and flavour (MariaDB spells
        # its upsert differently from MySQL 8). Races only compile twice.
        key = (type(dialect), dialect.paramstyle, dialect.server_version_info, getattr(dialect, "is_mariadb", None))
        shared = _SHARED.get(key)
        if shared is None:
            shared = _SHARED[key] = cls(dialect)
        return shared

    # The single-row reads return expired rows too: the repository compares
    # expires_at with its clock only when a row comes back, so a miss never
    # reads the clock (and the statement binds one value fewer).
    @cached_property
    def get(self) -> Compiled:
        return _compile(
            select(_rows.c.payload, _rows.c.expires_at, _rows.c.codec).where(*_key_matches), self._dialect, _KEY
        )

    @cached_property
    def get_with_meta(self) -> Compiled:
        return _compile(select(*_with_meta).where(*_key_matches), self._dialect, _KEY)

    def get_many(self, size: int) -> Compiled:
        """``(signature, expires_at, codec, payload)`` of the rows among ``size`` signatures of one backend,
        expired ones too.

        Values: backend, the ``size`` signatures. Callers pad their chunks to a
        power of two, so at most a dozen variants get compiled.
        """
        return self._for_size("get_many", size)

    def delete_many(self, size: int) -> Compiled:
        """Delete the rows of ``size`` signatures of one backend.

        Values: backend, the ``size`` signatures; padded like :meth:`get_many`.
        """
        return self._for_size("delete_many", size)

    def _for_size(self, name: str, size: int) -> Compiled:
        compiled = self._sized.get((name, size))
        if compiled is None:
            signatures = [f"signature_{i}" for i in range(size)]
            among = (_key_matches[0], _rows.c.signature.in_([bindparam(bound) for bound in signatures]))
            statement: ClauseElement
            # The reads leave expiry to the caller, as get does: with a condition on expires_at
            # too, SQLite (no statistics) would range over ix_cache_rows_backend_expires_at, every
            # live row of the backend, instead of looking the keys up in the primary key.
            if name == "get_many":
                names = ("backend", *signatures)
                statement = select(_rows.c.signature, _rows.c.expires_at, _rows.c.codec, _rows.c.payload).where(*among)
            elif name == "present_many":
                # A keys row (and not one that ix_cache_rows_backend_expires_at covers, which SQLite
                # would scan instead of looking the keys up).
                names = ("backend", *signatures)
                statement = select(_rows.c.signature, _rows.c.expires_at, _payload_length).where(*among)
            else:
                names = ("backend", *signatures)
                statement = delete(_rows).where(*among)
            compiled = self._sized[name, size] = _compile(statement, self._dialect, names)
        return compiled

    def present_many(self, size: int) -> Compiled:
        """``(signature, expires_at, stored bytes)`` of the rows among ``size`` signatures of one backend.

        Values: backend, the ``size`` signatures; padded like :meth:`get_many`.
        """
        return self._for_size("present_many", size)

    def keys_page(self, page: KeyPage) -> Compiled:
        """``(signature, expires_at, stored bytes)`` of a backend's rows, one page of the variant ``page``
        (values: :data:`KEY_PAGE_NAMES`). Every variant of :data:`~animedex_store.core.listing.KEY_PAGES`
        is compiled at most once."""
        compiled = self._pages.get(page)
        if compiled is None:
            compiled = self._pages[page] = _compile(_keys_page(page), self._dialect, KEY_PAGE_NAMES)
        return compiled

    @cached_property
    def count_live(self) -> Compiled:
        """How many of a backend's rows expire after ``bound`` (values: backend, bound)."""
        counted = select(func.count()).select_from(_rows).where(_key_matches[0], _after_bound)
        return _compile(counted, self._dialect, ("backend", "bound"))

    @cached_property
    def count_expired(self) -> Compiled:
        """How many of a backend's rows expire at or before ``bound`` (values: backend, bound)."""
        counted = select(func.count()).select_from(_rows).where(_key_matches[0], _by_bound)
        return _compile(counted, self._dialect, ("backend", "bound"))

    @cached_property
    def upsert(self) -> Compiled:
        return _compile(_upsert(self._dialect), self._dialect, VALUE_NAMES)

    @cached_property
    def replace(self) -> Compiled:
        """Overwrite a row that exists, never insert one (values: :data:`VALUE_NAMES`); rowcount 1 = it
        existed (rows matched: MariaDB/MySQL connect with ``CLIENT_FOUND_ROWS``)."""
        replaced: dict[str, BindParameter[Any]] = {name: bindparam(name) for name in VALUE_NAMES[2:]}
        return _compile(update(_rows).where(*_key_matches).values(replaced), self._dialect, VALUE_NAMES)

    @cached_property
    def purge_expired(self) -> Compiled:
        """Delete up to ``limit`` expired rows (values: now, limit), found through the ``expires_at`` index."""
        return _compile(_purge_batch(), self._dialect, ("now", "limit"))

    @cached_property
    def purge_expired_backend(self) -> Compiled:
        """Delete up to ``limit`` expired rows of one backend (values: backend, now, limit), found through
        ``ix_cache_rows_backend_expires_at``."""
        return _compile(_purge_batch(_key_matches[0]), self._dialect, ("backend", "now", "limit"))

    # Conditional writes: set_if_missing, touch, modify.
    @cached_property
    def insert_missing(self) -> Compiled:
        """Store a row unless a live one is there (values: :data:`VALUE_NAMES`); rowcount 1 = stored."""
        return _compile(_insert_missing(self._dialect), self._dialect, VALUE_NAMES)

    @cached_property
    def replace_expired(self) -> Compiled | None:
        """MariaDB/MySQL only, after an :attr:`insert_missing` that counted 0: replace an expired row
        (same values); ``None`` where :attr:`insert_missing` does both in one statement."""
        if self._dialect.name not in ("mysql", "mariadb"):
            return None
        return _compile(_replace_expired(), self._dialect, VALUE_NAMES)

    @cached_property
    def touch(self) -> Compiled:
        """Give a live row a new ``expires_at`` (values: backend, signature, expires_at, now); rowcount 1 =
        a live row was there (rows matched: MariaDB/MySQL connect with ``CLIENT_FOUND_ROWS``)."""
        return _compile(
            update(_rows)
            .where(*_key_matches, _rows.c.expires_at > bindparam("now"))
            .values(expires_at=bindparam("expires_at")),
            self._dialect,
            ("backend", "signature", "expires_at", "now"),
        )

    @cached_property
    def swap(self) -> Compiled:
        """Compare and swap a live row's payload (values: backend, signature, payload, codec, expected,
        expected_codec, now): replaced only while it still holds ``expected`` as stored; rowcount 1 =
        swapped (rows matched, as for :attr:`touch`). Expiry, headers and ``fetched_at`` are kept."""
        still = (_rows.c.payload == bindparam("expected"), _rows.c.codec == bindparam("expected_codec"))
        return _compile(
            update(_rows)
            .where(*_key_matches, *still, _rows.c.expires_at > bindparam("now"))
            .values(payload=bindparam("payload"), codec=bindparam("codec")),
            self._dialect,
            ("backend", "signature", "payload", "codec", "expected", "expected_codec", "now"),
        )

    @cached_property
    def delete(self) -> Compiled:
        return _compile(delete(_rows).where(*_key_matches), self._dialect, _KEY)

    @cached_property
    def clear(self) -> Compiled:
        return _compile(delete(_rows), self._dialect, ())

    @cached_property
    def clear_backend(self) -> Compiled:
        return _compile(delete(_rows).where(_key_matches[0]), self._dialect, ("backend",))

    @cached_property
    def stats(self) -> Compiled:
        return _compile(_stats(), self._dialect, ("now",))

    # Size cap: a write's previous size, the exact total, and the next rows to evict.
    @cached_property
    def payload_size(self) -> Compiled:
        return _compile(select(_payload_length).where(*_key_matches), self._dialect, _KEY)

    @cached_property
    def payload_total(self) -> Compiled:
        return _compile(select(func.coalesce(func.sum(_payload_length), _ZERO)), self._dialect, ())

    @cached_property
    def backend_payload_total(self) -> Compiled:
        """Bytes of one backend's payloads as stored, expired rows too (values: backend)."""
        total = select(func.coalesce(func.sum(_payload_length), _ZERO)).where(_key_matches[0])
        return _compile(total, self._dialect, ("backend",))

    @cached_property
    def eviction_batch(self) -> Compiled:
        return _compile(
            select(_rows.c.backend, _rows.c.signature, _payload_length)
            .order_by(_rows.c.expires_at, _rows.c.backend, _rows.c.signature)
            .limit(bindparam("limit"))
            .offset(_ZERO),  # explicit: SQLite's compiler would otherwise bind an OFFSET parameter of its own
            self._dialect,
            ("limit",),
        )

    # Single flight (get_or_fetch): claims in cache_locks. Times are epoch milliseconds.
    @cached_property
    def claim(self) -> Compiled:
        """Claim a key (values: backend, signature, holder, lease_until, now_ms); rowcount 1 = claimed
        (a new claim, a takeover of an ended lease, or the holder's own claim again)."""
        return _compile(_claim(self._dialect), self._dialect, _CLAIM_NAMES)

    @cached_property
    def claim_takeover(self) -> Compiled | None:
        """MariaDB/MySQL only, after a :attr:`claim` that counted 0: take over an ended lease, or hold
        the holder's own claim (same values); ``None`` where :attr:`claim` does both in one statement."""
        if self._dialect.name not in ("mysql", "mariadb"):
            return None
        return _compile(_take_over(), self._dialect, _CLAIM_NAMES)

    @cached_property
    def renew(self) -> Compiled:
        """Extend a claim (values: backend, signature, holder, lease_until): only its holder's; rowcount 1
        while it is still the holder's (rows matched: MariaDB/MySQL connect with ``CLIENT_FOUND_ROWS``)."""
        return _compile(
            update(_locks)
            .where(*_lock_key_matches, _locks.c.holder == bindparam("holder"))
            .values(lease_until=bindparam("lease_until")),
            self._dialect,
            ("backend", "signature", "holder", "lease_until"),
        )

    @cached_property
    def release(self) -> Compiled:
        """Give a claim up (values: backend, signature, holder): only its holder's, never a successor's."""
        return _compile(
            delete(_locks).where(*_lock_key_matches, _locks.c.holder == bindparam("holder")),
            self._dialect,
            ("backend", "signature", "holder"),
        )

    @cached_property
    def purge_claims(self) -> Compiled:
        """Delete every claim whose lease has ended (values: now_ms). Claims are few: no batches, no index."""
        return _compile(delete(_locks).where(_lease_ended), self._dialect, ("now_ms",))

    @cached_property
    def claims_held(self) -> Compiled:
        """How many claims have a live lease (values: now_ms)."""
        held = select(func.count()).select_from(_locks).where(_locks.c.lease_until > bindparam("now_ms"))
        return _compile(held, self._dialect, ("now_ms",))


_SHARED: dict[tuple[Any, ...], Statements] = {}
