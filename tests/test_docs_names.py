"""Every dotted ``animedex_store.…`` name the docs mention exists: in the package's and the revisions'
source (docstrings and comments), the README and CONTRIBUTING. (The CHANGELOG names old places on
purpose.) Resolved by reading the sources, so a module whose optional dependency is missing counts too.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "animedex_store"
DOCUMENTS = [
    *sorted(PACKAGE.rglob("*.py")),
    *sorted((ROOT / "alembic").rglob("*.py")),
    ROOT / "README.md",
    ROOT / "CONTRIBUTING.md",
]
DOTTED = re.compile(r"\banimedex_store(?:\.[A-Za-z_]\w*)+")


def _mentions() -> list[tuple[str, str]]:
    return sorted(
        {
            (name, str(document.relative_to(ROOT)))
            for document in DOCUMENTS
            for name in DOTTED.findall(document.read_text(encoding="utf-8"))
        }
    )


def _module_file(parts: list[str]) -> Path | None:
    base = ROOT.joinpath(*parts)
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


@cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


def _definitions(body: list[ast.stmt]) -> dict[str, ast.AST]:
    """What a module or class body defines, looking inside ``if``/``try`` blocks (``TYPE_CHECKING``)."""
    found: dict[str, ast.AST] = {}
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found[node.name] = node
        elif isinstance(node, ast.Assign):
            found.update((target.id, node) for target in node.targets if isinstance(target, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            found[node.target.id] = node
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            found.update(((alias.asname or alias.name).split(".")[0], node) for alias in node.names)
        elif isinstance(node, (ast.If, ast.Try)):
            for block in (node.body, getattr(node, "orelse", []), *(h.body for h in getattr(node, "handlers", []))):
                found.update(_definitions(block))
    return found


def _resolves(name: str) -> bool:
    parts = name.split(".")
    for split in range(len(parts), 0, -1):
        path = _module_file(parts[:split])
        if path is not None:
            return _defines(path, parts[split:])
    return False


def _defines(path: Path, attributes: list[str]) -> bool:
    body: list[ast.stmt] = _tree(path).body
    for position, attribute in enumerate(attributes):
        node = _definitions(body).get(attribute)
        if node is None:
            return False
        if isinstance(node, ast.ImportFrom):  # follow a re-export to where it is defined
            source = _imported_module(path, node)
            return source is not None and _defines(source, attributes[position:])
        if not isinstance(node, ast.ClassDef):
            return position == len(attributes) - 1
        body = node.body
    return True


def _imported_module(path: Path, node: ast.ImportFrom) -> Path | None:
    package = path.parent.relative_to(ROOT).parts
    base = list(package[: len(package) - node.level + 1]) if node.level else []
    return _module_file([*base, *(node.module or "").split(".")] if node.module else base)


@pytest.mark.parametrize(("name", "document"), _mentions())
def test_every_dotted_name_in_the_docs_exists(name: str, document: str) -> None:
    assert _resolves(name), f"{document} names {name}, which does not exist"


def test_the_resolver_can_fail() -> None:
    assert _resolves("animedex_store.repository.CacheRepository.keys")
    assert _resolves("animedex_store.CacheRepository")  # a re-export, followed
    assert not _resolves("animedex_store.results")  # a module that moved
    assert not _resolves("animedex_store.repository.CacheRepository.no_such_method")
