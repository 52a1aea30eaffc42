"""Key columns compare exactly on every engine: the DDL each dialect gets."""

from __future__ import annotations

import pytest
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.schema import CreateTable

from animedex_store.sql.models import CacheRow


@pytest.mark.parametrize(
    ("dialect", "key_type"),
    [
        (mysql.dialect(is_mariadb=True), "VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL"),
        (mysql.dialect(), "VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_0900_bin NOT NULL"),
        (postgresql.dialect(), "VARCHAR(255) NOT NULL"),
        (sqlite.dialect(), "TEXT NOT NULL"),
    ],
    ids=["mariadb", "mysql8", "postgresql", "sqlite"],
)
def test_key_columns_ddl(dialect, key_type: str) -> None:
    ddl = str(CreateTable(CacheRow.__table__).compile(dialect=dialect))
    assert f"backend {key_type}," in ddl and f"signature {key_type}," in ddl
    assert "utf8mb4_bin" not in ddl  # a PAD SPACE collation: 'k' = 'k '
