"""What the documentation must cover, read from the code: the public names, the integrations, the
errors, the revisions and the modules.

Standard library only (no Sphinx), so that the tests that hold the built site to it
(``tests/test_docs_site.py``) and the Sphinx extension that generates the pages
(``docs/_ext/animedex_docs.py``) ask the same questions the same way.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "animedex_store"
INTEGRATIONS = PACKAGE / "integrations"
REVISIONS = ROOT / "alembic" / "versions"
#: Modules of ``integrations/`` that are no integration of their own.
NOT_AN_INTEGRATION = {"__init__", "shared"}
#: The repository classes: every public method of both is documented.
REPOSITORIES = ("CacheRepository", "AsyncCacheRepository")
#: A reST role in a docstring (``:class:`~a.B```): shown as a literal where it is quoted out of context.
ROLE = re.compile(r":[\w:]+:`~?([^`<]+?)(?:\s*<[^>]*>)?`")


def integration_modules() -> list[str]:
    """The dotted names of the integration modules (or packages) in ``animedex_store/integrations/``."""
    names = {path.stem for path in INTEGRATIONS.glob("*.py")}
    names |= {path.parent.name for path in INTEGRATIONS.glob("*/__init__.py")}
    public = sorted(name for name in names if name not in NOT_AN_INTEGRATION and not name.startswith("_"))
    return [f"animedex_store.integrations.{name}" for name in public]


def public_classes(module_name: str) -> list[str]:
    """The classes a module exports: in its ``__all__``, else those it defines without a leading ``_``."""
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    if names is None:
        names = [name for name, value in vars(module).items() if getattr(value, "__module__", None) == module_name]
    return [name for name in names if not name.startswith("_") and inspect.isclass(getattr(module, name))]


def package_names() -> list[str]:
    """``animedex_store.__all__``."""
    return list(importlib.import_module("animedex_store").__all__)


def public_methods(class_name: str) -> list[str]:
    """The public methods (coroutines and iterators included) of a repository class."""
    cls = getattr(importlib.import_module("animedex_store"), class_name)
    return sorted(name for name, value in vars(cls).items() if callable(value) and not name.startswith("_"))


def store_errors() -> list[type[BaseException]]:
    """Every exception class ``animedex_store.errors`` exports, ``StoreError`` first."""
    errors = importlib.import_module("animedex_store.errors")
    found = [getattr(errors, name) for name in errors.__all__]
    return [error for error in found if inspect.isclass(error) and issubclass(error, errors.StoreError)]


def first_paragraph(docstring: str | None) -> str:
    """The first paragraph of a docstring, on one line."""
    text = inspect.cleandoc(docstring or "")
    return " ".join(text.split("\n\n", 1)[0].split())


def plain(text: str) -> str:
    """``text`` with its reST roles as literals (``:class:`~a.B``` becomes ````a.B````)."""
    return ROLE.sub(lambda match: f"``{match[1].strip()}``", text)


def revisions() -> list[dict[str, Any]]:
    """Each revision script's id, what it revises and its docstring, oldest first, read without running it."""
    found = []
    for path in sorted(REVISIONS.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        values = {
            target.id: node.value.value
            for node in tree.body
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        found.append(
            {
                "revision": values["revision"],
                "down_revision": values.get("down_revision"),
                "summary": first_paragraph(ast.get_docstring(tree)),
                "file": path.name,
            }
        )
    return found


def package_modules() -> list[tuple[str, str]]:
    """Every module of the package (its path inside ``animedex_store/``) and the first line of its docstring,
    read without importing it: the folders first, each with its ``__init__.py`` first."""

    def order(path: Path) -> tuple[int, str, int, str]:
        relative = path.relative_to(PACKAGE)
        folder = relative.parent.as_posix() if len(relative.parts) > 1 else ""
        return (1 if folder else 0, folder, 0 if path.name == "__init__.py" else 1, path.name)

    modules = []
    for path in sorted(PACKAGE.rglob("*.py"), key=order):
        if "_alembic" in path.parts:
            continue
        docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        modules.append((path.relative_to(PACKAGE).as_posix(), docstring.strip().splitlines()[0] if docstring else ""))
    return modules
