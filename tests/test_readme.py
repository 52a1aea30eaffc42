"""Every ```python block of README.md runs as written, as a new user would run it.

Each block is one test (its id: the heading it is under and the line of its
opening fence), run by a new interpreter in an empty directory of its own, with
``HOME`` and ``XDG_CACHE_HOME`` inside it (the default cache file is there, never
the user's) and no ``$ANIMEDEX_STORE_*`` variables. A block must exit 0; a block
that defines ``test_*`` functions is run by pytest instead, and must pass.

What a block reaches outside its directory is moved, by rewriting the block's
string literals, never its logic:

* a PostgreSQL or MySQL/MariaDB URL becomes a sandbox on the test server (the
  block is a ``server`` test: it fails under ``CI=true`` when the server is down,
  and skips elsewhere, like every server test);
* an ``http://``/``https://`` URL becomes the same path under ``/anything/`` on a
  local httpbin (pytest-httpbin), so no test calls a real web API.

A block that cannot run alone is marked in the README, right before its fence,
with ``<!-- not run: why -->``; its test is skipped with that reason. A block
whose library needs a newer Python than the oldest supported is marked there
with ``<!-- needs Python 3.11+ -->``, and skipped on older ones.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fresh_interpreter import child_env
from sourcefiles import REPO_ROOT

README = REPO_ROOT / "README.md"
#: The marker of a block that is deliberately not run, on the line before its fence.
NOT_RUN = re.compile(r"^<!--\s*not run:\s*(?P<reason>.+?)\s*-->$")
#: The marker of a block that runs on a newer Python only, on the line before its fence.
NEEDS_PYTHON = re.compile(r"^<!--\s*needs Python (?P<major>\d+)\.(?P<minor>\d+)\+\s*-->$")
#: A database server URL as the README writes one; the name says which test server stands in.
SERVER_URL = re.compile(r"^(?P<dialect>postgresql|mysql|mariadb)(\+\w+)?://")
WEB_URL = re.compile(r"^https?://")
SERVER_OF_DIALECT = {"postgresql": "postgresql", "mysql": "mariadb", "mariadb": "mariadb"}
BLOCK_TIMEOUT_SECONDS = 120


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

    @property
    def id(self) -> str:
        """``<the heading's anchor>-L<line>``, e.g. ``the-api-in-15-lines-L69``."""
        anchor = re.sub(r"[^\w\- ]", "", self.heading.lower()).strip().replace(" ", "-")
        return f"{anchor}-L{self.line}"

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


def readme_blocks(text: str) -> list[Block]:
    """Every ```python block of ``text`` (Markdown), in order."""
    blocks: list[Block] = []
    lines = text.splitlines()
    heading, index = "", 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("#") and not line.startswith("#!"):
            heading = line.lstrip("#").strip()
        if line.startswith("```"):
            end = next(i for i in range(index + 1, len(lines)) if lines[i].startswith("```"))
            if line.strip() == "```python":
                before = next((lines[i].strip() for i in range(index - 1, -1, -1) if lines[i].strip()), "")
                marker, needs = NOT_RUN.match(before), NEEDS_PYTHON.match(before)
                code = "\n".join(lines[index + 1 : end]) + "\n"
                version = (int(needs["major"]), int(needs["minor"])) if needs else None
                blocks.append(Block(index + 1, heading, code, marker and marker["reason"], version))
            index = end  # a fence's contents are never headings
        index += 1
    return blocks


BLOCKS = readme_blocks(README.read_text(encoding="utf-8"))


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
    script = directory / ("test_readme_block.py" if as_pytest_module else "readme_block.py")
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
def test_readme_python_block_runs(
    block: Block, tmp_path: Path, open_sandbox: Callable[[str], str], request: pytest.FixtureRequest
) -> None:
    if block.not_run:
        pytest.skip(f"README.md:{block.line} is marked not run: {block.not_run}")
    if block.needs_python and sys.version_info < block.needs_python:
        pytest.skip(f"README.md:{block.line} needs Python {'.'.join(map(str, block.needs_python))} or later")
    code = rewritten(block, open_sandbox, lambda: str(request.getfixturevalue("httpbin").url).rstrip("/"))
    assert not [value for value in string_literals(code).values() if _remote(value)], f"a web URL left in:\n{code}"
    result = run_block(code, tmp_path / "empty", as_pytest_module=block.is_pytest_module)
    assert result.returncode == 0, (
        f"README.md:{block.line} (under {block.heading!r}) exited {result.returncode}\n"
        f"--- code run\n{code}--- stdout\n{result.stdout}--- stderr\n{result.stderr}"
    )


def test_the_readme_has_python_blocks_and_every_not_run_marker_is_on_one() -> None:
    """The blocks are found (a parser that finds none would pass every block test), and a
    ``<!-- not run -->`` or ``<!-- needs Python -->`` marker that is not right before a ```python
    fence is a mistake."""
    assert len(BLOCKS) >= 10
    lines = README.read_text(encoding="utf-8").splitlines()
    markers = (NOT_RUN, NEEDS_PYTHON)
    marked = {index + 1 for index, line in enumerate(lines) if any(m.match(line.strip()) for m in markers)}
    following = {mark: next((line.strip() for line in lines[mark:] if line.strip()), "") for mark in sorted(marked)}
    assert {mark: fence for mark, fence in following.items() if fence != "```python"} == {}


def test_the_block_parser_reads_headings_markers_and_urls() -> None:
    """The parser on a small document: headings, fences of other languages, markers, URL kinds."""
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
        ]
    )
    first, second = readme_blocks(text)
    assert (first.needs_python, second.needs_python) == (None, (3, 11))
    assert (first.line, first.heading, first.not_run, first.servers) == (
        8,
        "A section: with `code`",
        "needs a GPU",
        ["mariadb"],
    )
    assert first.id == "a-section-with-code-L8"
    assert (second.not_run, second.servers, second.is_pytest_module, first.is_pytest_module) == (None, [], True, False)
    code = rewritten(first, lambda server: f"{server}://sandbox", lambda: "http://127.0.0.1:9")
    assert "'mariadb://sandbox'" in code and "'http://127.0.0.1:9/anything/v1/a?b=1'" in code
    assert '"https://example.com/in-a-comment"' in code  # comments are left as they are
