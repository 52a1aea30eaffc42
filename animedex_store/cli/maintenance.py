"""Commands that look after the cache as a whole: ``selftest``, ``info``, ``upgrade``, ``purge``,
``copy`` and ``vacuum``. ``selftest``, ``info`` and ``copy`` import SQLAlchemy when they run."""

from __future__ import annotations

import contextlib
import sys
from dataclasses import asdict
from typing import Any

import click

from ..fastpath.targets import resolve_target
from ..migrations.revisions import HEAD_REVISION
from ..ops.copy import DEFAULT_BATCH_SIZE, copy_store
from .group import (
    Report,
    check_url,
    cli,
    existing_cache,
    human_size,
    include_expired_option,
    json_option,
    one_line,
    print_report,
    store_command,
)

__all__ = ["selftest", "info", "upgrade", "purge", "copy_command", "vacuum", "ProgressBar"]


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
    from .selftest import run_selftest

    checks = run_selftest(url)
    failed = [check for check in checks if not check.ok]
    report: Report = {"ok": not failed, "checks": [asdict(check) for check in checks]}
    if failed:
        report["error"] = f"selftest failed: {failed[0].name}: {one_line(failed[0].error)}"
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
            f"rows:          {report['rows']:,} ({report['expired_rows']:,} expired)",
            f"payload:       {human_size(report['payload_bytes'])}",
        ]
    )


@store_command(_render_info)
def info(url: str | None) -> Report:
    """Show where the cache is, its schema state and its size.

    Prints the file or URL, the schema revision and what opening it would do,
    the rows, expired rows and payload size. Read-only: never creates,
    migrates or writes. A missing file is reported as missing.
    """
    from ..ops.inspection import describe_store

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
    A step that rewrites every row (revision 0005 on SQLite) shows a progress
    bar on stderr when it is a terminal.
    """
    from ..migrations.opening import open_store
    from ..ops.inspection import describe_store

    before = describe_store(url)
    with ProgressBar("migrating rows") as progress:
        open_store(resolve_target(url), progress=progress.show).dispose()
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
    with existing_cache(url) as (target, repository):
        removed = 0 if repository is None else repository.purge_expired()
        return {"target": target, "exists": repository is not None, "removed": removed}


def _render_copy(report: Report) -> str:
    skipped = "" if report["include_expired"] else f", skipped {report['expired_skipped']} expired"
    return (
        f"copied {report['rows_copied']} row(s) ({human_size(report['payload_bytes'])}{skipped}) "
        f"from {report['source']} to {report['destination']}"
    )


@cli.command(name="copy")
@click.argument("source", metavar="SRC", callback=check_url)
@click.argument("destination", metavar="DST", callback=check_url)
@include_expired_option("Copy expired rows too (default: live rows only).")
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=DEFAULT_BATCH_SIZE, show_default=True, help="Rows per commit."
)
@json_option
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
        with ProgressBar("copying rows") as progress:
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
                raise click.UsageError(one_line(exc)) from exc
        return summary.as_dict()

    print_report(run, _render_copy, as_json)


class ProgressBar:
    """A click progress bar on stderr when it is a terminal, created once the number of rows is known."""

    def __init__(self, label: str) -> None:
        self._label = label
        self._stack = contextlib.ExitStack()
        self._bar: Any = None
        self._done = 0

    def start(self, total: int) -> None:
        if sys.stderr.isatty():
            bar: Any = click.progressbar(length=total, label=self._label, show_pos=True, file=sys.stderr)
            self._bar = self._stack.enter_context(bar)

    def advance(self, rows: int) -> None:
        self._done += rows
        if self._bar is not None:
            self._bar.update(rows)

    def show(self, done: int, total: int) -> None:
        """``progress(done, total)``, as a long migration step reports it."""
        if self._bar is None and self._done == 0:
            self.start(total)
        self.advance(done - self._done)

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stack.__exit__(*exc_info)


def _render_vacuum(report: Report) -> str:
    if not report["exists"]:
        return f"no cache at {report['target']}; nothing to compact"
    if report["reclaimed_bytes"] is None:
        return f"compacted {report['target']} (this server does not report how much space it gave back)"
    return f"compacted {report['target']}: {human_size(report['reclaimed_bytes'])} given back"


@store_command(_render_vacuum)
def vacuum(url: str | None) -> Report:
    """Give the disk space of deleted rows back.

    SQLite: VACUUM (rewrites the file). PostgreSQL: VACUUM FULL on the cache
    table. MariaDB/MySQL: OPTIMIZE TABLE. Other users of the cache wait
    while it runs, which on a large cache can take a while; run `purge` or
    `clear` first so there is something to give back.
    """
    with existing_cache(url) as (target, repository):
        if repository is None:
            return {"target": target, "exists": False, "reclaimed_bytes": 0}
        if sys.stderr.isatty():
            click.echo(f"compacting {target} ...", err=True)
        return {"target": target, "exists": True, "reclaimed_bytes": repository.vacuum()}
