"""Every ```python block of the documentation runs as written, as a new user would run it.

The documentation is ``README.md``, ``CONTRIBUTING.md``, every page of ``docs/`` and every file a
page includes (```{include}```). Each block is one test (its id: the document, the heading it is
under and the line of its opening fence), run by a new interpreter in an empty directory of its
own, with ``HOME`` and ``XDG_CACHE_HOME`` inside it (the default cache file is there, never the
user's) and no ``$ANIMEDEX_STORE_*`` variables. A block must exit 0; a block that defines
``test_*`` functions is run by pytest instead, and must pass. A block written twice, word for
word (the README's examples are also on the pages), runs once; its test names every place.

What a block reaches outside its directory is moved, by rewriting the block's string literals,
never its logic:

* a PostgreSQL or MySQL/MariaDB URL becomes a sandbox on the test server (the block is a
  ``server`` test: it fails under ``CI=true`` when the server is down, and skips elsewhere, like
  every server test);
* an ``http://``/``https://`` URL becomes the same path under ``/anything/`` on a local httpbin
  (pytest-httpbin), so no test calls a real web API.

A block that cannot run alone is marked, right before its fence, with ``<!-- not run: why -->``;
its test is skipped with that reason (the site shows the reason under the block). A block whose
library needs a newer Python than the oldest supported is marked there with
``<!-- needs Python 3.11+ -->``, and skipped on older ones. Python code in any other kind of
fence (```py, ```pycon, ```{code-block} python) would escape all this, so it is refused.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fresh_interpreter import child_env
from sourcefiles import REPO_ROOT

README = REPO_ROOT / "README.md"
DOCS = REPO_ROOT / "docs"
#: The marker of a block that is deliberately not run, on the line before its fence.
NOT_RUN = re.compile(r"^<!--\s*not run:\s*(?P<reason>.+?)\s*-->$")
#: The marker of a block that runs on a newer Python only, on the line before its fence.
NEEDS_PYTHON = re.compile(r"^<!--\s*needs Python (?P<major>\d+)\.(?P<minor>\d+)\+\s*-->$")
#: A fence's opening line (CommonMark: three or more backticks or tildes, up to three spaces in; a
#: backtick fence's info string has no backtick, so ```` ```python ```` in a line of text is no fence).
FENCE = re.compile(r"^ {0,3}(?:(?P<fence>`{3,})\s*(?P<info>[^`]*?)|(?P<tildes>~{3,})\s*(?P<tinfo>.*?))\s*$")
#: An info string that says Python without being exactly ``python`` (the only one that is run).
PYTHON_LIKE = re.compile(r"\b(py|python\d?|pycon|ipython\d?|code-cell)\b", re.IGNORECASE)
#: A MyST include of another file, whose blocks count as the including page's.
INCLUDE = re.compile(r"^(`{3,}|:{3,})\{include\}\s+(?P<path>\S+)\s*$")
#: A database server URL as the documentation writes one; the name says which test server stands in.
SERVER_URL = re.compile(r"^(?P<dialect>postgresql|mysql|mariadb)(\+\w+)?://")
WEB_URL = re.compile(r"^https?://")
SERVER_OF_DIALECT = {"postgresql": "postgresql", "mysql": "mariadb", "mariadb": "mariadb"}
BLOCK_TIMEOUT_SECONDS = 120
README_MAX_LINES = 300


def documents() -> list[Path]:
    """The README, CONTRIBUTING, every page of ``docs/`` (not its build) and what the pages include."""
    pages = sorted(path for path in DOCS.rglob("*.md") if "_build" not in path.relative_to(DOCS).parts)
    included = {
        (page.parent / match["path"]).resolve()
        for page in pages
        for match in map(INCLUDE.match, page.read_text(encoding="utf-8").splitlines())
        if match
    }
    found = [README, REPO_ROOT / "CONTRIBUTING.md", *pages, *sorted(included)]
    return list(dict.fromkeys(found))


def string_literals(code: str) -> dict[str, str]:
    """The ``str`` literals of ``code``: their source text (quotes and all) to their values.
    Comments are not code: URLs in them stay as they are."""
    nodes = [node for node in ast.walk(ast.parse(code)) if isinstance(node, ast.Constant)]
    return {str(ast.get_source_segment(code, node)): node.value for node in nodes if isinstance(node.value, str)}


def _remote(value: str) -> bool:
    """Whether a literal names a web host other than this machine."""
    return bool(WEB_URL.match(value)) and urlsplit(value).hostname not in ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class Block:
    """One ```python block: where it is, and what it needs."""

    line: int  # of the opening fence, 1-based
    heading: str
    code: str
    not_run: str | None  # the reason given in a ``<!-- not run: ... -->`` marker
    needs_python: tuple[int, int] | None = None  # from a ``<!-- needs Python X.Y+ -->`` marker
    document: str = "README.md"  # relative to the checkout
    also: tuple[str, ...] = field(default=())  # the other places the same block is written

    @property
    def where(self) -> str:
        return f"{self.document}:{self.line}"

    @property
    def id(self) -> str:
        """``<document>#<the heading's anchor>-L<line>``, e.g. ``README.md#a-first-call-L40``."""
        anchor = re.sub(r"[^\w\- ]", "", self.heading.lower()).strip().replace(" ", "-")
        return f"{self.document}#{anchor}-L{self.line}"

    @property
    def servers(self) -> list[str]:
        """The test servers (``SERVER_URLS`` names) the block's URLs stand for."""
        found = (SERVER_URL.match(value) for value in string_literals(self.code).values())
        return sorted({SERVER_OF_DIALECT[match["dialect"]] for match in found if match})

    @property
    def is_pytest_module(self) -> bool:
        return any(
            isinstance(node, ast.FunctionDef) and node.name.startswith("test_") for node in ast.parse(self.code).body
        )


@dataclass(frozen=True)
class Fence:
    """A fenced block of any language: its opening line (1-based), info string and contents."""

    line: int
    info: str
    body: list[str]
    heading: str
    before: str  # the last non-blank line before the fence


def fences(text: str) -> list[Fence]:
    """Every fenced block of ``text`` (Markdown), in order; a fence's contents are never headings."""
    found: list[Fence] = []
    lines = text.splitlines()
    heading, index = "", 0
    while index < len(lines):
        line = lines[index]
        opening = FENCE.match(line)
        if opening is None:
            if line.startswith("#") and not line.startswith("#!"):
                heading = line.lstrip("#").strip()
            index += 1
            continue
        fence = opening["fence"] or opening["tildes"]
        info = opening["info"] if opening["fence"] else opening["tinfo"]
        closing = re.compile(rf"^ {{0,3}}{fence[0]}{{{len(fence)},}}\s*$")
        end = next((i for i in range(index + 1, len(lines)) if closing.match(lines[i])), len(lines))
        before = next((lines[i].strip() for i in range(index - 1, -1, -1) if lines[i].strip()), "")
        found.append(Fence(index + 1, info, lines[index + 1 : end], heading, before))
        index = end + 1
    return found


def doc_blocks(text: str, document: str = "README.md") -> list[Block]:
    """Every ```python block of ``text`` (Markdown), in order."""
    blocks = []
    for fence in fences(text):
        if fence.info != "python":
            continue
        marker, needs = NOT_RUN.match(fence.before), NEEDS_PYTHON.match(fence.before)
        version = (int(needs["major"]), int(needs["minor"])) if needs else None
        code = "\n".join(fence.body) + "\n"
        blocks.append(Block(fence.line, fence.heading, code, marker and marker["reason"], version, document))
    return blocks


def _relative(path: Path) -> str:
    return path.resolve().relative_to(REPO_ROOT).as_posix()


def all_blocks() -> list[Block]:
    """Every block of every document, a block written more than once only at its first place."""
    unique: dict[tuple[str, str | None, tuple[int, int] | None], Block] = {}
    for path in documents():
        for block in doc_blocks(path.read_text(encoding="utf-8"), _relative(path)):
            key = (block.code, block.not_run, block.needs_python)
            first = unique.get(key)
            unique[key] = block if first is None else _with_place(first, block.where)
    return list(unique.values())


def _with_place(block: Block, where: str) -> Block:
    return Block(
        block.line, block.heading, block.code, block.not_run, block.needs_python, block.document, (*block.also, where)
    )


BLOCKS = all_blocks()


def _param(block: Block) -> object:
    marks = [pytest.mark.server] if block.servers else []
    return pytest.param(block, id=block.id, marks=marks)


def rewritten(block: Block, server_url: Callable[[str], str], web_base: Callable[[], str]) -> str:
    """The block's code with its server URLs on the test servers and its web URLs on the local httpbin."""
    code = block.code
    for source, value in string_literals(block.code).items():
        if match := SERVER_URL.match(value):
            replacement = server_url(SERVER_OF_DIALECT[match["dialect"]])
        elif WEB_URL.match(value):
            parts = urlsplit(value)
            replacement = f"{web_base()}/anything{parts.path}" + (f"?{parts.query}" if parts.query else "")
        else:
            continue
        code = code.replace(source, repr(replacement))
    return code


def run_block(code: str, directory: Path, *, as_pytest_module: bool) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in ``directory`` in a new interpreter, as a script or as a pytest test module."""
    directory.mkdir()
    script = directory / ("test_doc_block.py" if as_pytest_module else "doc_block.py")
    script.write_text(code, encoding="utf-8")
    command = ["-m", "pytest", "-q", "-p", "no:cacheprovider", script.name] if as_pytest_module else [script.name]
    environment = {key: value for key, value in child_env().items() if not key.startswith("ANIMEDEX_STORE_")}
    environment.update(
        HOME=str(directory),
        XDG_CACHE_HOME=str(directory / ".cache"),
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    return subprocess.run(
        [sys.executable, *command],
        cwd=directory,
        env=environment,
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT_SECONDS,
    )


@pytest.mark.parametrize("block", [_param(block) for block in BLOCKS])
def test_python_block_runs(
    block: Block, tmp_path: Path, open_sandbox: Callable[[str], str], request: pytest.FixtureRequest
) -> None:
    if block.not_run:
        pytest.skip(f"{block.where} is marked not run: {block.not_run}")
    if block.needs_python and sys.version_info < block.needs_python:
        pytest.skip(f"{block.where} needs Python {'.'.join(map(str, block.needs_python))} or later")
    code = rewritten(block, open_sandbox, lambda: str(request.getfixturevalue("httpbin").url).rstrip("/"))
    assert not [value for value in string_literals(code).values() if _remote(value)], f"a web URL left in:\n{code}"
    result = run_block(code, tmp_path / "empty", as_pytest_module=block.is_pytest_module)
    places = ", ".join((block.where, *block.also))
    assert result.returncode == 0, (
        f"{places} (under {block.heading!r}) exited {result.returncode}\n"
        f"--- code run\n{code}--- stdout\n{result.stdout}--- stderr\n{result.stderr}"
    )


def _info(line: str) -> str | None:
    """The info string of a fence's opening line, ``None`` for any other line."""
    match = FENCE.match(line)
    if match is None:
        return None
    return match["info"] if match["fence"] else match["tinfo"]


@pytest.mark.parametrize("path", documents(), ids=_relative)
def test_every_marker_is_on_a_python_block_and_python_is_only_in_python_blocks(path: Path) -> None:
    """A ``<!-- not run -->`` or ``<!-- needs Python -->`` marker that is not right before a ```python
    fence is a mistake; so is Python in a fence the harness does not run (```py, ```pycon,
    ```{code-block} python)."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    markers = (NOT_RUN, NEEDS_PYTHON)
    marked = {index + 1 for index, line in enumerate(lines) if any(m.match(line.strip()) for m in markers)}
    following = {mark: next((line.strip() for line in lines[mark:] if line.strip()), "") for mark in sorted(marked)}
    assert {mark: fence for mark, fence in following.items() if _info(fence) != "python"} == {}
    hidden = [(fence.line, fence.info) for fence in fences(text) if fence.info != "python"]
    assert [(line, info) for line, info in hidden if PYTHON_LIKE.search(info)] == []


def test_the_documentation_has_python_blocks() -> None:
    """The blocks are found (a parser that finds none would pass every block test): the README's
    sync, async and integration examples, and the pages' many more."""
    readme = doc_blocks(README.read_text(encoding="utf-8"))
    assert len(readme) >= 3
    assert len([block for block in BLOCKS if block.document.startswith("docs/")]) >= 30
    assert any(block.also for block in BLOCKS), "the README's examples are also on the pages, run once"


def test_the_readme_is_short_and_starts_a_newcomer() -> None:
    """At most 300 lines, a user's install line, and the two commands of a fresh clone near the top."""
    text = README.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert len(lines) <= README_MAX_LINES
    top = "\n".join(lines[:60])
    assert "pip install -e '.[test]' && animedex-store selftest" in top
    assert "python -m pytest" in top
    assert re.search(r"pip install 'animedex-store\[[a-z,-]+\]'", text)


def test_the_fence_parser_reads_headings_markers_urls_and_nested_fences() -> None:
    """The parser on a small document: headings, fences of other languages (longer fences
    holding shorter ones, tildes), markers, URL kinds."""
    text = "\n".join(
        [
            "# Top",
            "```bash",
            "# not a heading",
            "```",
            "## A section: with `code`",
            "<!-- not run: needs a GPU -->",
            "",
            "```python",
            'repo = CacheRepository("mysql+pymysql://u:p@db/x")  # "https://example.com/in-a-comment"',
            'fetch("https://api.example.com/v1/a?b=1")',
            "```",
            "<!-- needs Python 3.11+ -->",
            "```python",
            "def test_it():",
            "    pass",
            "```",
            "````markdown",
            "```python",
            "shown, never run",
            "```",
            "````",
            "~~~python",
            "print('a tilde fence is a fence')",
            "~~~",
            "  ```` ```python ```` in a line of text is no fence",
        ]
    )
    first, second, third = doc_blocks(text, "docs/page.md")
    assert (third.line, third.code) == (22, "print('a tilde fence is a fence')\n")
    assert (first.needs_python, second.needs_python) == (None, (3, 11))
    assert (first.line, first.heading, first.not_run, first.servers) == (
        8,
        "A section: with `code`",
        "needs a GPU",
        ["mariadb"],
    )
    assert (first.id, first.where) == ("docs/page.md#a-section-with-code-L8", "docs/page.md:8")
    assert (second.not_run, second.servers, second.is_pytest_module, first.is_pytest_module) == (None, [], True, False)
    assert [fence.info for fence in fences(text)] == ["bash", "python", "python", "markdown", "python"]
    code = rewritten(first, lambda server: f"{server}://sandbox", lambda: "http://127.0.0.1:9")
    assert "'mariadb://sandbox'" in code and "'http://127.0.0.1:9/anything/v1/a?b=1'" in code
    assert '"https://example.com/in-a-comment"' in code  # comments are left as they are
    assert PYTHON_LIKE.search("{code-block} python") and PYTHON_LIKE.search("pycon")
    assert not PYTHON_LIKE.search("console") and not PYTHON_LIKE.search("{revisions-table}")
