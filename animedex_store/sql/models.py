"""The tables of the cache, declared once with typed SQLAlchemy 2 mappings.

No engine and no I/O here. The revision scripts in ``alembic/versions`` describe
each schema step on their own; ``alembic check`` proves these models and a
migrated database agree.
"""

from __future__ import annotations

from typing import Optional

from sqlalchemy import Index, MetaData, SmallInteger, String, Text, func, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ..core.validation import KEY_MAX_LENGTH
from .coltypes import EpochMillis, EpochSeconds, ExactKey, Payload

__all__ = [
    "Base",
    "CacheRow",
    "CacheMeta",
    "CacheLock",
    "KEY_MAX_LENGTH",
    "HOLDER_MAX_LENGTH",
    "BACKEND_SIZE_INDEX",
    "EXPRESSION_INDEX_ENGINES",
]

#: Longest ``cache_locks.holder``: a claim's random token (32 hex digits today).
HOLDER_MAX_LENGTH = 64

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Keys compare exactly on every engine (a NO PAD binary collation on MariaDB/MySQL).
KeyType = ExactKey(KEY_MAX_LENGTH)
# The seed declared INTEGER/BLOB; servers need 64-bit seconds (EpochSeconds) and >64 KiB payloads.
PayloadType = Payload()


class Base(DeclarativeBase):
    """Declarative base whose metadata names every constraint and index."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class CacheRow(Base):
    """One cached response, keyed by ``(backend, signature)``.

    The columns are declared in their order on SQLite (revision 0005): what a
    read needs before the payload (expiry, codec, headers) comes first, so it
    never sits behind the payload's overflow pages, and the table is an
    ordinary rowid table. The seed's ``WITHOUT ROWID`` suits rows under about a
    twentieth of a page; animedex's responses are 4 KB in median, and on them a
    ``get`` was four times slower that way.
    """

    __tablename__ = "cache_rows"
    # Revision 0006: one backend's rows by expiry, ties by signature, for count() and keys() (the
    # primary key finds the backend's rows but not their expiry).
    __table_args__ = (Index("ix_cache_rows_backend_expires_at", "backend", "expires_at", "signature"),)

    backend: Mapped[str] = mapped_column(KeyType, primary_key=True)
    signature: Mapped[str] = mapped_column(KeyType, primary_key=True)
    # Indexed (revision 0003) so purge_expired reads only the expired rows.
    expires_at: Mapped[int] = mapped_column(EpochSeconds, index=True)
    # Optional, not `X | None`: SQLAlchemy evaluates mapped annotations, and `|` on types is 3.10+.
    fetched_at: Mapped[Optional[int]] = mapped_column(EpochSeconds)  # noqa: UP045
    # How the payload is stored (animedex_store.core.codecs); the default 0, "as it is", is what a
    # row written by the seed's module, which names only its own columns, gets.
    codec: Mapped[int] = mapped_column(SmallInteger, server_default=text("0"))
    response_headers: Mapped[Optional[bytes]] = mapped_column(PayloadType)  # noqa: UP045
    payload: Mapped[bytes] = mapped_column(PayloadType)


# Revision 0007: one backend's rows by stored size, ties by signature, for keys(order_by="size"): an
# index on an expression, which SQLite and PostgreSQL build and MariaDB/MySQL do not (alembic/env.py
# leaves it out of the comparison there).
#: The engines that build an index on an expression.
EXPRESSION_INDEX_ENGINES = ("sqlite", "postgresql")
BACKEND_SIZE_INDEX = Index(
    "ix_cache_rows_backend_size", CacheRow.backend, func.length(CacheRow.payload), CacheRow.signature
).ddl_if(dialect=EXPRESSION_INDEX_ENGINES)  # type: ignore[arg-type]  # a tuple, as SQLAlchemy documents


class CacheMeta(Base):
    """Key/value facts about the file; holds ``schema_version`` for the seed's code
    (:data:`animedex_store.migrations.revisions.SEED_V2_SCHEMA_VERSION`)."""

    __tablename__ = "cache_meta"

    key: Mapped[str] = mapped_column(String(64).with_variant(Text(), "sqlite"), primary_key=True)
    value: Mapped[str] = mapped_column(Text())


class CacheLock(Base):
    """A claim on a key by one ``get_or_fetch`` call (revision 0004): who fetches it, and until when.

    Keyed exactly like :class:`CacheRow`. A claim whose ``lease_until`` has
    passed no longer blocks anyone: the next caller takes it over.
    """

    __tablename__ = "cache_locks"
    __table_args__ = {"sqlite_with_rowid": False}  # claims are a key and two small values: the key is the table

    backend: Mapped[str] = mapped_column(KeyType, primary_key=True)
    signature: Mapped[str] = mapped_column(KeyType, primary_key=True)
    # A random token per claim, compared exactly: only its holder releases a claim.
    holder: Mapped[str] = mapped_column(ExactKey(HOLDER_MAX_LENGTH))
    # Epoch milliseconds by the claimer's clock.
    lease_until: Mapped[int] = mapped_column(EpochMillis)
