"""``animedex-store``: the command line, a click group animedex can mount as ``animedex cache``.

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
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click
from sqlalchemy.exc import ArgumentError

from .checks import run_selftest
from .engine import URL_ENV_VAR, resolve_target
from .errors import StoreError
from .inspection import describe_store
from .repository import CacheRepository
from .schema import HEAD_REVISION
from .transfer import DEFAULT_BATCH_SIZE, copy_store

__all__ = ["cli", "main", "store_command"]

Report = dict[str, Any]


@click.group(name="animedex-store", context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="animedex-store")
def cli() -> None:
    """Inspect and maintain animedex's response cache (SQLite file, PostgreSQL or MariaDB/MySQL)."""


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="animedex-store")


def _one_line(error: object) -> str:
    # Driver messages can span lines (psycopg adds a hint line); stderr gets one.
    return " ".join(str(error).split())


def _check_url(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """Reject a malformed URL as a usage error (exit 2) before anything opens."""
    if value is not None:
        try:
            resolve_target(value)
        except (ArgumentError, ValueError) as exc:
            raise click.BadParameter(_one_line(exc)) from exc
    return value


def store_command(render: Callable[[Report], str]) -> Callable[[Callable[..., Report]], click.Command]:
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
            callback=_check_url,
            help="Database URL (postgresql+psycopg://..., mysql+pymysql://..., sqlite:///...) or SQLite "
            "file path. Default: the default cache file.",
        )
        @_json_option
        @functools.wraps(function)
        def command(url: str | None, as_json: bool, **options: Any) -> None:
            _report(lambda: function(url, **options), render, as_json)

        return command

    return register


_json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")


def _report(produce: Callable[[], Report], render: Callable[[Report], str], as_json: bool) -> None:
    """Print what ``produce`` returns; a storage error, or a report with ``"ok": False``, exits 1."""
    try:
        report = produce()
    except StoreError as exc:
        raise click.ClickException(_one_line(exc)) from exc
    except (ImportError, ArgumentError) as exc:
        # A URL naming a driver or dialect that is not installed.
        raise click.ClickException(f"cannot load the database driver: {_one_line(exc)}") from exc
    click.echo(json.dumps(report, indent=2, ensure_ascii=False) if as_json else render(report))
    if report.get("ok") is False:
        raise click.ClickException(report["error"])


def _render_selftest(report: Report) -> str:
    lines = [f"{'ok  ' if check['ok'] else 'FAIL'}  {check['name']}" for check in report["checks"]]
    summary = f"selftest passed ({len(report['checks'])} checks)" if report["ok"] else "selftest FAILED"
    return "\n".join([*lines, summary])


@store_command(_render_selftest)
def selftest(url: str | None) -> Report:
    """Check that the cache works on this machine.

    Without --url (and without $ANIMEDEX_STORE_URL): runs the drop-in module's
    selftest, then writes, reads, expires and purges rows in a scratch file in
    the default cache directory, removed afterwards. Your cache.sqlite is never
    opened. With --url: the same checks on that database (opening it migrates it
    to head); the scratch rows are dated January 1970 so purging removes only them.
    """
    checks = run_selftest(url)
    failed = [check for check in checks if not check.ok]
    report: Report = {"ok": not failed, "checks": [asdict(check) for check in checks]}
    if failed:
        report["error"] = f"selftest failed: {failed[0].name}: {_one_line(failed[0].error)}"
    return report


def _render_info(report: Report) -> str:
    lines = [
        f"cache:         {report['target']}",
        f"state:         {report['state']} ({report['state_help']})",
        f"revision:      {report['revision'] or 'none'} (this package's head: {report['head']})",
    ]
    if report["rows"] is None:
        return "\n".join([*lines, "rows:          none (no cache_rows table)"])
    return "\n".join(
        [
            *lines,
            f"rows:          {report['rows']}",
            f"expired rows:  {report['expired_rows']}",
            f"payload bytes: {report['payload_bytes']}",
        ]
    )


@store_command(_render_info)
def info(url: str | None) -> Report:
    """Show where the cache is, its schema revision, rows, expired rows and payload bytes.

    Read-only: never creates, migrates or writes. A missing file is reported
    as missing; a database behind this package reports its revision.
    """
    return describe_store(url).as_dict()


def _render_upgrade(report: Report) -> str:
    if not report["changed"]:
        return f"{report['target']} is already at revision {report['after']}; nothing to do"
    before = "a new database" if report["before_state"] in ("missing", "empty") else f"revision {report['before']}"
    if report["before_state"] == "legacy":
        before = f"a seed cache file (adopted at {report['before']})"
    return f"migrated {report['target']} from {before} to revision {report['after']}"


@store_command(_render_upgrade)
def upgrade(url: str | None) -> Report:
    """Migrate the database to this package's head revision now.

    Opening a cache does this anyway; run it to migrate at a time of your
    choosing (for example before deploying a new animedex to several machines).
    A missing SQLite file is created. A seed cache file is adopted first.
    """
    before = describe_store(url)
    CacheRepository(url).close()
    return {
        "target": before.target,
        "before": before.revision,
        "before_state": before.state,
        "after": HEAD_REVISION,
        "changed": before.state != "current",
    }


def _render_purge(report: Report) -> str:
    if not report["exists"]:
        return f"no cache at {report['target']}; nothing to purge"
    return f"removed {report['removed']} expired row(s) from {report['target']}"


@store_command(_render_purge)
def purge(url: str | None) -> Report:
    """Remove expired rows (expires_at <= now) and print how many.

    A missing SQLite file is not created. Opening migrates the database to
    head first, as any open does.
    """
    target = resolve_target(url)
    if isinstance(target, Path) and not target.exists():
        return {"target": str(target), "exists": False, "removed": 0}
    with CacheRepository(target) as repository:
        return {"target": repository.target, "exists": True, "removed": repository.purge_expired()}


def _render_copy(report: Report) -> str:
    skipped = "" if report["include_expired"] else f", skipped {report['expired_skipped']} expired"
    return (
        f"copied {report['rows_copied']} row(s) ({report['payload_bytes']} payload bytes{skipped}) "
        f"from {report['source']} to {report['destination']}"
    )


@cli.command(name="copy")
@click.argument("source", metavar="SRC", callback=_check_url)
@click.argument("destination", metavar="DST", callback=_check_url)
@click.option("--include-expired", is_flag=True, help="Copy expired rows too (default: live rows only).")
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=DEFAULT_BATCH_SIZE, show_default=True, help="Rows per commit."
)
@_json_option
def copy_command(source: str, destination: str, include_expired: bool, batch_size: int, as_json: bool) -> None:
    """Copy every live row from SRC to DST (URLs or SQLite file paths).

    Payload, headers, fetched_at and expires_at are kept exactly. Rows already
    in DST under the same key are replaced and other rows are left alone, so
    running it again (or after an interruption) is safe. Both databases are
    migrated to head first, as opening them does. A progress bar goes to
    stderr when it is a terminal.
    """

    def run() -> Report:
        # The bar is finished (its line ended) before the report is printed.
        with CopyProgress() as progress:
            try:
                summary = copy_store(
                    source,
                    destination,
                    include_expired=include_expired,
                    batch_size=batch_size,
                    on_start=progress.start,
                    on_batch=progress.advance,
                )
            except ValueError as exc:
                raise click.UsageError(_one_line(exc)) from exc
        return summary.as_dict()

    _report(run, _render_copy, as_json)


class CopyProgress:
    """A click progress bar on stderr, created once the number of rows is known."""

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()
        self._bar: Any = None

    def start(self, total: int) -> None:
        if sys.stderr.isatty():
            bar = click.progressbar(length=total, label="copying rows", show_pos=True, file=sys.stderr)
            self._bar = self._stack.enter_context(bar)

    def advance(self, rows: int) -> None:
        if self._bar is not None:
            self._bar.update(rows)

    def __enter__(self) -> CopyProgress:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stack.__exit__(*exc_info)
