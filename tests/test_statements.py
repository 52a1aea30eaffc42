"""The frozen SQLite text (``animedex_store/fastpath/statements.py``) is what the constructs compile to now.

The SQLite fast path runs that text without SQLAlchemy; the constructs in
``animedex_store/sql/statements.py`` stay the one source of truth. After changing a
construct, regenerate with ``python -m animedex_store.sql.freeze``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from animedex_store.core.compiled import Compiled
from animedex_store.fastpath import statements as sqlite_statements
from animedex_store.repository import CacheRepository
from animedex_store.sql import freeze, statements

REGENERATE = "python -m animedex_store.sql.freeze"


def test_the_frozen_sqlite_text_matches_a_fresh_compilation() -> None:
    frozen = Path(sqlite_statements.__file__).read_text(encoding="utf-8")
    assert frozen == freeze.render_sqlite_module(), f"fastpath/statements.py is stale: run {REGENERATE}"


def test_a_changed_construct_makes_the_rendering_differ(monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison above can fail: a construct compiled differently renders a different module."""
    before = freeze.render_sqlite_module()
    changed = Compiled("SELECT 1", tuple)
    monkeypatch.setattr(statements.Statements, "delete", property(lambda _self: changed))
    after = freeze.render_sqlite_module()
    assert after != before
    assert 'delete = Compiled(\n    "SELECT 1",\n    tuple,\n)' in after


def test_every_frozen_statement_is_valid_sqlite_on_a_migrated_database() -> None:
    with CacheRepository("sqlite://") as repository:
        connection: sqlite3.Connection = repository._db.conn  # type: ignore[attr-defined]
        frozen = [getattr(sqlite_statements, name) for name in freeze.FROZEN_STATEMENTS]
        frozen += [getattr(sqlite_statements, name)(size) for name in freeze.SIZED for size in freeze.GET_MANY_SIZES]
        for compiled in frozen:
            # EXPLAIN compiles the statement against the real schema without running it.
            placeholders = compiled.sql.count("?")
            connection.execute(f"EXPLAIN {compiled.sql}", [None] * placeholders)


def test_the_regenerate_command_reports_an_up_to_date_module(capsys: pytest.CaptureFixture[str]) -> None:
    assert freeze.main(["--check"]) == 0
    assert "up to date" in capsys.readouterr().out
