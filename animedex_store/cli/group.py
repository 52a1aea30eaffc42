"""The ``animedex-store`` click group and what every command shares: ``--url``, ``--json``, reports.

Each command is a function registered with :func:`store_command`. It takes
``url`` (``None`` for the default target) plus its own click options and
returns a JSON-ready report; the decorator adds ``--url`` and ``--json``,
prints the report, and turns a storage error into one line on stderr and
exit status 1. A report with ``"ok": False`` also exits 1 with its ``error``.
Exit status 2 is click's, for usage errors.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click

from ..errors import StoreError, driver_message
from ..fastpath.sqlite_file import require_file
from ..fastpath.targets import URL_ENV_VAR, resolve_target
from ..repository import CacheRepository

__all__ = [
    "cli",
    "main",
    "store_command",
    "json_option",
    "include_expired_option",
    "print_report",
    "one_line",
    "check_url",
    "existing_cache",
    "human_size",
    "Report",
]

Report = dict[str, Any]
#: Turns a report into the text output; bytes are written to stdout as they are (``get``).
Render = Callable[[Report], "str | bytes"]


@click.group(name="animedex-store", context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="animedex-store")
def cli() -> None:
    """Inspect and maintain animedex's response cache (SQLite file, PostgreSQL or MariaDB/MySQL).

    Commands work on animedex's cache file in your user cache directory
    unless --url or $ANIMEDEX_STORE_URL names another database. Run
    `animedex-store COMMAND --help` for what each one does and touches.
    """


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="animedex-store")


def one_line(error: object) -> str:
    # Driver messages can span lines (psycopg adds a hint line); stderr gets one.
    return " ".join(str(error).split())


def check_url(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """Reject a malformed URL as a usage error (exit 2) before anything opens."""
    if value is not None:
        try:
            resolve_target(value)
        except ValueError as exc:
            raise click.BadParameter(one_line(driver_message(exc))) from exc
    return value


def store_command(render: Render) -> Callable[[Callable[..., Report]], click.Command]:
    """Register the decorated function as a command of :data:`cli` with ``--url`` and ``--json``.

    Options declared on the function with ``@click.option`` (below this
    decorator) are kept. ``render`` turns the report into the text output.
    """

    def register(function: Callable[..., Report]) -> click.Command:
        @cli.command(name=function.__name__.replace("_", "-"))
        @click.option(
            "--url",
            envvar=URL_ENV_VAR,
            show_envvar=True,
            metavar="URL|PATH",
            callback=check_url,
            help="Database URL (postgresql+psycopg://..., mysql+pymysql://..., sqlite:///...) or SQLite "
            "file path. Default: animedex's cache file in your user cache directory.",
        )
        @json_option
        @functools.wraps(function)
        def command(url: str | None, as_json: bool, **options: Any) -> None:
            print_report(lambda: function(url, **options), render, as_json)

        return command

    return register


json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")

_Decorated = TypeVar("_Decorated", bound=Callable[..., Any])


def include_expired_option(help: str, *, deprecated: str | None = None) -> Callable[[_Decorated], _Decorated]:
    """``--include-expired`` (the command gets ``include_expired``), and the flag's old spelling
    ``deprecated`` (hidden; it still works for one release, with a note on stderr)."""

    def merge(ctx: click.Context, param: click.Parameter, value: bool) -> None:
        # Neither flag passes its own value: both fold into include_expired, whichever click reads first.
        if value and param.name != "include_expired":
            click.echo(
                f"animedex-store: {deprecated} is deprecated and will be removed in the next release; "
                "use --include-expired",
                err=True,
            )
        ctx.params["include_expired"] = ctx.params.get("include_expired", False) or value

    def decorate(function: _Decorated) -> _Decorated:
        flags = [click.option("--include-expired", is_flag=True, expose_value=False, callback=merge, help=help)]
        if deprecated is not None:
            flags.append(
                click.option(
                    deprecated, "deprecated_flag", is_flag=True, expose_value=False, hidden=True, callback=merge
                )
            )
        for flag in reversed(flags):
            function = flag(function)
        return function

    return decorate


def print_report(produce: Callable[[], Report], render: Render, as_json: bool) -> None:
    """Print what ``produce`` returns; a storage error, or a report with ``"ok": False``, exits 1."""
    try:
        report = produce()
    except StoreError as exc:
        raise click.ClickException(one_line(exc)) from exc
    except ImportError as exc:
        # A URL naming a driver that is not installed.
        raise click.ClickException(f"cannot load the database driver: {one_line(driver_message(exc))}") from exc
    except ValueError as exc:
        # A URL naming a kind of database SQLAlchemy has no dialect for.
        raise click.ClickException(one_line(exc)) from exc
    output = json.dumps(report, indent=2, ensure_ascii=False) if as_json else render(report)
    # Bytes (a payload) go out as they are, without a newline added.
    click.echo(output, nl=not isinstance(output, bytes))
    if report.get("ok") is False:
        raise click.ClickException(report["error"])


@contextlib.contextmanager
def existing_cache(url: str | None) -> Iterator[tuple[str, CacheRepository | None]]:
    """``(target, repository)`` for ``url``; the repository is ``None`` when ``url`` names a SQLite
    file that does not exist, which is not created. Opening migrates to head, as any open does."""
    target = resolve_target(url)
    if isinstance(target, Path):
        try:
            require_file(target)
        except FileNotFoundError:
            yield str(target), None
            return
    with CacheRepository(target) as repository:
        yield repository.target, repository


def human_size(size: int) -> str:
    """``size`` bytes for people: ``512 B``, ``12.3 KiB``, ``4.0 GiB``."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
