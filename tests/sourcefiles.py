"""The code that ships, parsed, for tests that scan it (no string-built SQL, no pickle or eval)."""

from __future__ import annotations

import ast
from pathlib import Path

__all__ = ["REPO_ROOT", "package_sources"]

#: The checkout: ``animedex_store/``, ``alembic/`` and ``alembic.ini`` live here.
REPO_ROOT = Path(__file__).resolve().parent.parent


def package_sources() -> list[tuple[str, ast.Module]]:
    """``(path relative to the checkout, syntax tree)`` of every module of the package and of ``alembic/``.

    Asserts that there are more than a handful, so a scan cannot pass by finding no files.
    """
    files = sorted([*REPO_ROOT.joinpath("animedex_store").rglob("*.py"), *REPO_ROOT.joinpath("alembic").rglob("*.py")])
    assert len(files) > 10, f"the package's sources are not under {REPO_ROOT}"
    return [(file.relative_to(REPO_ROOT).as_posix(), ast.parse(file.read_text(encoding="utf-8"))) for file in files]
