"""Column types whose DDL depends on the database, shared by the models and the revisions.

They are DDL building blocks that never change meaning; a revision may use
them, but never the models, which describe only the latest schema.

The MySQL types are imported when a MySQL/MariaDB dialect asks for them: the
``sqlalchemy.dialects.mysql`` package costs a SQLite user's every cold start ~7 ms.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Dialect, Integer, LargeBinary, String, Text
from sqlalchemy.types import TypeDecorator, TypeEngine

__all__ = ["ExactKey", "Payload", "EpochSeconds", "EpochMillis"]

#: Whole epoch seconds: the seed's INTEGER on SQLite (already 64-bit), BIGINT on the servers.
EpochSeconds = BigInteger().with_variant(Integer(), "sqlite")
#: Whole epoch milliseconds (leases of a few seconds need better than a second): the same DDL.
EpochMillis = EpochSeconds


class ExactKey(TypeDecorator[str]):
    """A key column that compares exactly: case, trailing spaces and Unicode normalisation count.

    SQLite and PostgreSQL compare text byte-wise already. On MariaDB/MySQL the
    column needs a binary collation that is also NO PAD (``utf8mb4_bin`` pads,
    so ``'k' = 'k '``): ``utf8mb4_nopad_bin`` on MariaDB, ``utf8mb4_0900_bin``
    on MySQL 8. SQLAlchemy names both dialects ``mysql`` when the URL says
    ``mysql://``, so the choice follows the server actually connected to
    (``is_mariadb``), not the URL's dialect name.
    """

    impl = String
    cache_ok = True

    def __init__(self, length: int) -> None:
        super().__init__(length)
        self.length = length

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[str]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(Text())  # the seed's TEXT columns
        if dialect.name in ("mysql", "mariadb"):
            from sqlalchemy.dialects import mysql

            collation = "utf8mb4_nopad_bin" if getattr(dialect, "is_mariadb", False) else "utf8mb4_0900_bin"
            return dialect.type_descriptor(mysql.VARCHAR(self.length, charset="utf8mb4", collation=collation))
        return dialect.type_descriptor(String(self.length))


class Payload(TypeDecorator[bytes]):
    """Raw bytes: ``BLOB`` on SQLite, ``bytea`` on PostgreSQL, and ``LONGBLOB`` on
    MariaDB/MySQL, whose ``BLOB`` stops at 64 KiB."""

    impl = LargeBinary
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[bytes]:
        if dialect.name in ("mysql", "mariadb"):
            from sqlalchemy.dialects import mysql

            return dialect.type_descriptor(mysql.LONGBLOB())
        return dialect.type_descriptor(LargeBinary())
