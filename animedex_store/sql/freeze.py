"""Freeze the SQLite compilation of :mod:`animedex_store.sql.statements` into :mod:`animedex_store.fastpath.statements`.

The SQLite fast path runs the statements as text, without SQLAlchemy; this module writes that text
from the constructs, which stay the one source of truth::

    python -m animedex_store.sql.freeze          # rewrite animedex_store/fastpath/statements.py
    python -m animedex_store.sql.freeze --check  # exit 1 if it is stale (CI runs this)

``tests/test_statements.py`` fails while the frozen module differs from a fresh compilation.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from ..core.compiled import Compiled, InOrder
from ..core.listing import KEY_PAGES
from .statements import GET_MANY_CHUNK, Statements

__all__ = [
    "FROZEN_STATEMENTS",
    "FROZEN_ABSENT",
    "GET_MANY_SIZES",
    "SIZED",
    "PARAMETRIZED",
    "render_sqlite_module",
    "main",
]


#: Statements that SQLite does without (``None`` for it), frozen as ``None`` so callers ask uniformly.
FROZEN_ABSENT = ("claim_takeover", "replace_expired")
#: The statements frozen as SQLite text: every single statement of :class:`Statements` but
#: those of :data:`FROZEN_ABSENT`, in the order it declares them; those of :data:`SIZED` are
#: frozen at each of :data:`GET_MANY_SIZES`.
FROZEN_STATEMENTS = tuple(
    name
    for name, member in vars(Statements).items()
    if isinstance(member, cached_property) and name not in FROZEN_ABSENT
)
#: The statements taking a number of signatures, padded to a power of two.
SIZED = ("get_many", "delete_many", "present_many")
#: The sizes ``get_many`` and ``delete_many`` pad their chunks to: the powers of two up to the chunk.
GET_MANY_SIZES = tuple(1 << power for power in range(GET_MANY_CHUNK.bit_length()))
#: The statements compiled once per argument, and the arguments each is frozen at for SQLite.
PARAMETRIZED: dict[str, tuple[Any, ...]] = {
    **{name: GET_MANY_SIZES for name in SIZED},
    "keys_page": KEY_PAGES,
}
_FROZEN_MODULE = Path(__file__).parent.parent / "fastpath" / "statements.py"
_FROZEN_HEADER = '''\
"""The SQLite text of every statement in :mod:`animedex_store.sql.statements`. GENERATED: do not edit.

Regenerate with ``python -m animedex_store.sql.freeze`` after changing a
construct there; ``tests/test_statements.py`` fails while this file is stale.
The SQLite fast path runs these without importing SQLAlchemy.
"""

from __future__ import annotations

from ..core.compiled import Compiled, InOrder  # noqa: F401 - InOrder appears when a statement reorders its values
from ..core.listing import KeyPage

'''


def _compiled_source(compiled: Compiled, indent: str = "") -> str:
    """``Compiled(...)`` as ``ruff format`` leaves it: one argument a line, double quotes
    (a JSON string of ASCII text is a Python literal), a trailing comma that keeps it so."""
    if compiled.bind is tuple:
        bind = "tuple"
    elif isinstance(compiled.bind, InOrder):
        bind = repr(compiled.bind)
    else:
        raise ValueError(f"SQLite statements bind positionally; got {compiled.bind!r} for {compiled.sql!r}")
    return f"Compiled(\n{indent}    {json.dumps(compiled.sql)},\n{indent}    {bind},\n{indent})"


def render_sqlite_module() -> str:
    """The source of :mod:`animedex_store.fastpath.statements`, compiled afresh from the constructs."""
    from sqlalchemy.dialects import sqlite

    statements = Statements(sqlite.dialect())
    lines = [_FROZEN_HEADER]
    for name in FROZEN_STATEMENTS:
        compiled = getattr(statements, name)
        lines.append(f"{name} = {_compiled_source(compiled)}\n")
    for name in FROZEN_ABSENT:
        if getattr(statements, name) is not None:
            raise ValueError(f"{name} compiles for SQLite now: move it to FROZEN_STATEMENTS")
        lines.append(f"{name}: Compiled | None = None\n")
    lines.append(f"get_many_chunk = {GET_MANY_CHUNK}\n")
    for name, arguments in PARAMETRIZED.items():
        lines.append(f"_{name.upper()} = {{\n")
        for argument in arguments:
            compiled = getattr(statements, name)(argument)
            lines.append(f"    {_literal(argument)}: {_compiled_source(compiled, '    ')},\n")
        lines.append("}\n")
    for name, arguments in PARAMETRIZED.items():
        summary = (getattr(Statements, name).__doc__ or "").split("\n\n")[0].replace("\n       ", "")
        parameter = "size: int" if isinstance(arguments[0], int) else f"page: {type(arguments[0]).__name__}"
        lines.append(
            f"\n\ndef {name}({parameter}) -> Compiled:\n"
            f'    """{" ".join(summary.split())}"""\n'
            f"    return _{name.upper()}[{parameter.split(':')[0]}]\n"
        )
    return "".join(lines)


def _literal(argument: object) -> str:
    """A dictionary key of the frozen module as ``ruff format`` writes it: an ``int``, or a tuple
    (a :class:`KeyPage`, looked up by equal tuples) of strings and booleans."""
    if isinstance(argument, tuple):
        return "(" + ", ".join(json.dumps(item) if isinstance(item, str) else repr(item) for item in argument) + ")"
    return repr(argument)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m animedex_store.sql.freeze [--check]``: regenerate (or check) the frozen SQLite text."""
    parser = argparse.ArgumentParser(prog="python -m animedex_store.sql.freeze", description=main.__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if the generated module is stale; write nothing")
    args = parser.parse_args(argv)
    source = render_sqlite_module()
    current = _FROZEN_MODULE.read_text(encoding="utf-8") if _FROZEN_MODULE.exists() else None
    if source == current:
        print(f"{_FROZEN_MODULE.name} is up to date")
        return 0
    if args.check:
        print(f"{_FROZEN_MODULE.name} is stale: run python -m animedex_store.sql.freeze", file=sys.stderr)
        return 1
    _FROZEN_MODULE.write_text(source, encoding="utf-8")
    print(f"wrote {_FROZEN_MODULE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
