"""The docs name what exists, and name all of it.

* Every dotted ``animedex_store.…`` name the docs mention exists: in the package's and the
  revisions' source (docstrings and comments), the README, CONTRIBUTING, the pages of ``docs/`` and
  the code that builds them. (The CHANGELOG names old places on purpose.) Resolved by reading the
  sources, so a module whose optional dependency is missing counts too.
* Every logger the package creates, and every ``ANIMEDEX_STORE_*`` environment variable that the
  package, the tests, the benchmarks or ``.ci/run`` read, is on ``docs/logging.md``; every variable
  that page names is read somewhere.
* Every folder of the package is in the package map of ``docs/design.md``.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "animedex_store"
DOCS = ROOT / "docs"
PAGES = sorted(path for path in DOCS.rglob("*.md") if "_build" not in path.relative_to(DOCS).parts)
DOCUMENTS = [
    *sorted(PACKAGE.rglob("*.py")),
    *sorted((ROOT / "alembic").rglob("*.py")),
    ROOT / "README.md",
    ROOT / "CONTRIBUTING.md",
    *PAGES,
    *sorted(DOCS.glob("*.py")),
    *sorted((DOCS / "_ext").glob("*.py")),
]
LOGGING_PAGE = DOCS / "logging.md"
DESIGN_PAGE = DOCS / "design.md"
#: An environment variable of ours, as code or a page spells it.
ENV_VAR = re.compile(r"\bANIMEDEX_STORE_[A-Z][A-Z0-9_]*[A-Z0-9]\b")
#: Where variables are read: the package, the tests, the benchmarks, CI.
READERS = [
    *sorted(PACKAGE.rglob("*.py")),
    *sorted((ROOT / "tests").rglob("*.py")),
    *sorted((ROOT / "benchmarks").rglob("*.py")),
    ROOT / ".ci" / "run",
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


def _loggers() -> list[tuple[str, str]]:
    """``(logger name, module)`` of every ``logging.getLogger(...)`` call in the package: ``__name__`` is
    the module's dotted name; a string is itself."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.walk(_tree(path)):
            if not (
                isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "getLogger"
            ):
                continue
            argument = node.args[0] if node.args else None
            if isinstance(argument, ast.Name) and argument.id == "__name__":
                found.append((module, module))
            elif isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                found.append((argument.value, module))
            else:
                found.append((f"<a logger named at run time in {module}>", module))
    return found


@pytest.mark.parametrize(("logger", "module"), _loggers())
def test_every_logger_is_on_the_logging_page(logger: str, module: str) -> None:
    assert f"`{logger}`" in LOGGING_PAGE.read_text(encoding="utf-8"), (
        f"{module} logs on {logger!r}, which docs/logging.md does not list (what it reports, in its table)"
    )


def _variables(paths: list[Path]) -> set[str]:
    return {name for path in paths for name in ENV_VAR.findall(path.read_text(encoding="utf-8"))}


def test_every_environment_variable_is_on_the_logging_page_and_every_one_there_is_read() -> None:
    read = _variables(READERS)
    documented = _variables([LOGGING_PAGE])
    assert "ANIMEDEX_STORE_URL" in read and len(read) >= 5  # the scan found them
    assert sorted(read - documented) == [], "read but not on docs/logging.md"
    assert sorted(documented - read) == [], "on docs/logging.md but read nowhere"


def test_every_folder_of_the_package_is_in_the_package_map() -> None:
    folders = sorted(path.parent.name for path in PACKAGE.glob("*/__init__.py"))
    assert "fastpath" in folders  # the scan found them
    text = DESIGN_PAGE.read_text(encoding="utf-8")
    package_map = text[text.index("## Package map") :]
    assert [folder for folder in folders if f"| `{folder}/` |" not in package_map] == []


#: A measured ratio as the benchmarks report one (``0.26×``): it belongs in ``benchmarks/RESULTS.md`` alone.
RATIO = re.compile(r"\b\d+\.\d+\s?×")


def test_no_benchmark_ratio_is_copied_out_of_the_results() -> None:
    """Each figure lives in one place, ``benchmarks/RESULTS.md``, which ``docs/performance.md`` includes;
    a ratio typed into a page drifts (the README's had: hishel async 0.35× and 0.31×)."""
    copies = {
        str(path.relative_to(ROOT)): RATIO.findall(path.read_text(encoding="utf-8"))
        for path in [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *PAGES]
    }
    assert {path: found for path, found in copies.items() if found} == {}
    assert RATIO.search("a hit at 0.31× the baseline")  # the pattern finds what it is for
