"""What the documentation generates from the code, during the Sphinx build (never committed).

Directives, for the Markdown (MyST) pages:

``{api-reference} SECTION``
    autodoc entries for one part of the public API: ``package`` (every name in
    ``animedex_store.__all__``, the two repositories with every public method), ``sqlite`` (the
    seed drop-in), ``testing`` (the pytest plugin's clock), ``integrations`` (every public class of
    every module in ``animedex_store/integrations/``, found in the folder: a new integration is
    documented by being written).
``{errors-reference}``
    a table of every ``StoreError`` in ``animedex_store.errors.__all__`` (what it is a kind of, what
    it means: the first paragraph of its docstring), then an entry for each.
``{revisions-table}``
    every revision in ``alembic/versions/``: its id, what it revises, the first paragraph of its
    docstring.
``{cli-reference}``
    every command of the ``animedex-store`` click group: usage, help text, options.
``{module-map}``
    every module of the package, folder by folder, with the first line of its docstring.

The entries are reStructuredText (autodoc's language) parsed where the directive stands, the way
MyST's ``{eval-rst}`` does. What the code is asked lives in ``public_api.py`` beside this file,
which the tests ask too.

The test harness's markers (``<!-- not run: why -->``, ``<!-- needs Python 3.11+ -->``, see
``tests/test_doc_examples.py``) are shown on the site, under the block they mark.
"""

from __future__ import annotations

import importlib
import inspect
import re
from typing import Any

import click
from docutils import nodes
from docutils.parsers.rst import Directive, Parser
from docutils.utils import new_document
from public_api import (
    first_paragraph,
    integration_modules,
    package_modules,
    package_names,
    plain,
    public_classes,
    revisions,
    store_errors,
)
from sphinx.application import Sphinx

#: The harness's markers, on the line before a ```python fence.
NOT_RUN = re.compile(r"^<!--\s*not run:\s*(?P<reason>.+?)\s*-->\s*$", re.MULTILINE)
NEEDS_PYTHON = re.compile(r"^<!--\s*needs Python (?P<version>\d+\.\d+)\+\s*-->\s*$", re.MULTILINE)


class ReStructuredText(Directive):
    """A directive whose content is generated reStructuredText, parsed in place."""

    def generate(self) -> list[str]:
        raise NotImplementedError

    def run(self) -> list[nodes.Node]:
        document = self.state.document
        generated = new_document(document["source"], document.settings)
        generated.reporter = document.reporter
        Parser().parse("\n".join(self.generate()) + "\n", generated)
        for node in generated.children:
            if isinstance(node, nodes.Element) and node["names"]:
                document.note_explicit_target(node, node)
        return list(generated.children)


def list_table(widths: str, header: list[str], rows: list[list[str]]) -> list[str]:
    lines = [".. list-table::", "   :header-rows: 1", f"   :widths: {widths}", ""]
    for row in [header, *rows]:
        lines += [f"   * - {row[0]}", *(f"     - {cell}" for cell in row[1:])]
    return [*lines, ""]


class ApiReference(ReStructuredText):
    """``{api-reference} package|sqlite|testing|integrations``: autodoc entries for one part of the API."""

    required_arguments = 1

    def generate(self) -> list[str]:
        section = self.arguments[0]
        if section == "package":
            return package_entries()
        if section == "sqlite":
            return [
                *class_entries("animedex_store.sqlite", ["SqliteCache"]),
                ".. autofunction:: animedex_store.sqlite.selftest",
                "",
            ]
        if section == "testing":
            return class_entries("animedex_store.testing", ["FrozenClock"])
        if section == "integrations":
            return integration_entries()
        raise self.error(f"unknown API section {section!r}")


def class_entries(module: str, names: list[str]) -> list[str]:
    lines = []
    for name in names:
        lines += [f".. autoclass:: {module}.{name}", "   :members:", ""]
    return lines


def package_entries() -> list[str]:
    package = importlib.import_module("animedex_store")
    lines: list[str] = []
    for name in package_names():
        value = getattr(package, name)
        if inspect.isclass(value) and issubclass(value, BaseException):
            lines += [f".. autoexception:: animedex_store.{name}", ""]
        elif inspect.isclass(value):
            lines += [f".. autoclass:: animedex_store.{name}", "   :members:", ""]
        else:
            lines += [f".. autofunction:: animedex_store.{name}", ""]
    return lines


def integration_entries() -> list[str]:
    lines: list[str] = []
    for module in integration_modules():
        lines += [f".. automodule:: {module}", "   :no-members:", ""]
        lines += class_entries(module, public_classes(module))
    return lines


class ErrorsReference(ReStructuredText):
    """``{errors-reference}``: every error, a table, then an entry for each."""

    def generate(self) -> list[str]:
        errors = store_errors()
        rows = []
        for error in errors:
            bases = ", ".join(
                f":py:exc:`~{base.__module__}.{base.__qualname__}`"
                if base.__module__.startswith("animedex_store")
                else f"``{base.__qualname__}``"
                for base in error.__bases__
            )
            rows.append([f":py:exc:`~animedex_store.errors.{error.__name__}`", bases, first_paragraph(error.__doc__)])
        lines = list_table("25 20 55", ["error", "a kind of", "what it means"], rows)
        for error in errors:
            lines += [f".. autoexception:: animedex_store.errors.{error.__name__}", ""]
        return lines


class RevisionsTable(ReStructuredText):
    """``{revisions-table}``: the revisions in ``alembic/versions/``, from their files."""

    def generate(self) -> list[str]:
        found = revisions()
        rows = [
            [
                f"``{revision['revision']}``",
                f"``{revision['down_revision']}``" if revision["down_revision"] else "(nothing: a new database)",
                f"{plain(revision['summary'])} (``alembic/versions/{revision['file']}``)",
            ]
            for revision in found
        ]
        lines = list_table("10 12 78", ["revision", "revises", "what and why (from the revision's docstring)"], rows)
        return [*lines, f"The head revision is ``{found[-1]['revision']}``.", ""]


class ModuleMap(ReStructuredText):
    """``{module-map}``: every module of the package with the first line of its docstring."""

    def generate(self) -> list[str]:
        rows = [[f"``{path}``", plain(summary) or "(no docstring)"] for path, summary in package_modules()]
        return list_table("30 70", ["module", "its job (the first line of its docstring)"], rows)


class CliReference(ReStructuredText):
    """``{cli-reference}``: every command of ``animedex-store``, from the click group."""

    def generate(self) -> list[str]:
        from animedex_store.cli import cli

        assert isinstance(cli, click.Group)
        lines = command_entries(cli, "animedex-store", None)
        with click.Context(cli, info_name="animedex-store") as context:
            for name in cli.list_commands(context):
                command = cli.get_command(context, name)
                assert command is not None
                lines += command_entries(command, f"animedex-store {name}", context)
        return lines


def command_entries(command: click.Command, program: str, parent: click.Context | None) -> list[str]:
    """A label, a heading line, the usage, the help text and the options of one click command."""
    with click.Context(command, info_name=program.split()[-1], parent=parent) as context:
        usage = " ".join(command.collect_usage_pieces(context))
        help_text = inspect.cleandoc(command.help or "")
        lines = [
            f".. _cli-{program.replace(' ', '-')}:",
            "",
            f".. rubric:: {program}",
            "",
            f"``{program} {usage}``",
            "",
            f".. program:: {program}",
            "",
            *help_lines(help_text),
        ]
        for parameter in command.get_params(context):
            record = parameter.get_help_record(context)
            if record is not None:
                names, text = record
                lines += [f".. option:: {names}", "", f"   {escape(text)}", ""]
    return lines


def help_lines(help_text: str) -> list[str]:
    """Click's help text as reST paragraphs; a paragraph click keeps as it is (``\\b``) as a literal block."""
    lines: list[str] = []
    for paragraph in help_text.split("\n\n"):
        paragraph_lines = paragraph.splitlines()
        if paragraph_lines and paragraph_lines[0].strip() == "\b":
            lines += [".. code-block:: text", "", *(f"    {line}" for line in paragraph_lines[1:]), ""]
        else:
            lines += [escape(" ".join(line.strip() for line in paragraph_lines)), ""]
    return lines


def escape(text: str) -> str:
    """Click's help text as reST: its backticks, ``*`` and ``|`` are not markup."""
    text = text.replace("\\", "\\\\").replace("*", "\\*").replace("|", "\\|")
    return re.sub(r"`([^`]+)`", r"``\1``", text)


def show_markers(app: Sphinx, docname: str, source: list[str]) -> None:
    """Turn the harness's hidden markers into a line a reader sees, before the block they mark."""
    text = NOT_RUN.sub(lambda match: f"*Not run by the test suite: {match['reason']}*\n", source[0])
    source[0] = NEEDS_PYTHON.sub(lambda match: f"*Needs Python {match['version']} or later.*\n", text)


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("api-reference", ApiReference)
    app.add_directive("errors-reference", ErrorsReference)
    app.add_directive("revisions-table", RevisionsTable)
    app.add_directive("module-map", ModuleMap)
    app.add_directive("cli-reference", CliReference)
    app.connect("source-read", show_markers)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
