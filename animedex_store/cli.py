"""``animedex-store``: the command line, a click group animedex can mount as ``animedex cache``.

Commands that only read or write rows (``get``, ``purge``, ``stats``, ...) open
the cache like any repository, so on an up-to-date SQLite file they run
without SQLAlchemy (scripts call ``get`` in loops); ``selftest``, ``info`` and
``copy`` import what they need when they run.

Each command is a function registered with :func:`store_command`. It takes
``url`` (``None`` for the default target) plus its own click options and
returns a JSON-ready report; the decorator adds ``--url`` and ``--json``,
prints the report, and turns a storage error into one line on stderr and
exit status 1. A report with ``"ok": False`` also exits 1 with its ``error``.
Exit status 2 is click's, for usage errors.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from .errors import StoreError, driver_message
from .opening import HEAD_REVISION
from .repository import CacheRepository
from .results import BackendStats, CacheStats
from .targets import URL_ENV_VAR, resolve_target
from .transfer import DEFAULT_BATCH_SIZE, copy_store
from .validation import check_key

__all__ = ["cli", "main", "store_command"]

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


def _one_line(error: object) -> str:
    # Driver messages can span lines (psycopg adds a hint line); stderr gets one.
    return " ".join(str(error).split())


def _check_url(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """Reject a malformed URL as a usage error (exit 2) before anything opens."""
    if value is not None:
        try:
            resolve_target(value)
        except ValueError as exc:
            raise click.BadParameter(_one_line(driver_message(exc))) from exc
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
            callback=_check_url,
            help="Database URL (postgresql+psycopg://..., mysql+pymysql://..., sqlite:///...) or SQLite "
            "file path. Default: animedex's cache file in your user cache directory.",
        )
        @_json_option
        @functools.wraps(function)
        def command(url: str | None, as_json: bool, **options: Any) -> None:
            _report(lambda: function(url, **options), render, as_json)

        return command

    return register


_json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")


def _report(produce: Callable[[], Report], render: Render, as_json: bool) -> None:
    """Print what ``produce`` returns; a storage error, or a report with ``"ok": False``, exits 1."""
    try:
        report = produce()
    except StoreError as exc:
        raise click.ClickException(_one_line(exc)) from exc
    except ImportError as exc:
        # A URL naming a driver that is not installed.
        raise click.ClickException(f"cannot load the database driver: {_one_line(driver_message(exc))}") from exc
    except ValueError as exc:
        # A URL naming a kind of database SQLAlchemy has no dialect for.
        raise click.ClickException(_one_line(exc)) from exc
    output = json.dumps(report, indent=2, ensure_ascii=False) if as_json else render(report)
    # Bytes (a payload) go out as they are, without a newline added.
    click.echo(output, nl=not isinstance(output, bytes))
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
    from .checks import run_selftest

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
    from .inspection import describe_store

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
    from .inspection import describe_store

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
    with _existing_cache(url) as (target, repository):
        removed = 0 if repository is None else repository.purge_expired()
        return {"target": target, "exists": repository is not None, "removed": removed}


@contextlib.contextmanager
def _existing_cache(url: str | None) -> Iterator[tuple[str, CacheRepository | None]]:
    """``(target, repository)`` for ``url``; the repository is ``None`` when ``url`` names a SQLite
    file that does not exist, which is not created. Opening migrates to head, as any open does."""
    target = resolve_target(url)
    if isinstance(target, Path) and not target.exists():
        yield str(target), None
        return
    with CacheRepository(target) as repository:
        yield repository.target, repository


def _render_copy(report: Report) -> str:
    skipped = "" if report["include_expired"] else f", skipped {report['expired_skipped']} expired"
    return (
        f"copied {report['rows_copied']} row(s) ({human_size(report['payload_bytes'])}{skipped}) "
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


# -- looking at and removing rows, compaction -------------------------------------------------


def human_size(size: int) -> str:
    """``size`` bytes for people: ``512 B``, ``12.3 KiB``, ``4.0 GiB``."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def _when(iso: str | None) -> str:
    return "-" if iso is None else datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S UTC")


def _check_key_argument(_ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A key longer than the store accepts is a usage error (exit 2), not a traceback."""
    if value is not None:
        try:
            check_key(str(param.name), value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from exc
    return value


def _require(repository: CacheRepository | None, target: str) -> CacheRepository:
    if repository is None:
        raise click.ClickException(f"no cache at {target}")
    return repository


def _stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


def _render_stats(report: Report) -> str:
    if not report["exists"]:
        return f"no cache at {report['target']}"
    lines = [
        f"cache:    {report['target']}",
        f"rows:     {report['rows']:,} ({report['expired_rows']:,} expired)",
        f"payload:  {human_size(report['payload_bytes'])}",
        f"claims:   {report['claims_held']:,} held (keys being fetched by get_or_fetch now)",
    ]
    if not report["backends"]:
        return "\n".join(lines)
    lines.append(f"fetched:  {_when(report['oldest_fetched_at'])} to {_when(report['newest_fetched_at'])}")
    table = [("BACKEND", "ROWS", "EXPIRED", "PAYLOAD", "NEWEST FETCH")]
    for name, part in report["backends"].items():
        rows = (f"{part['rows']:,}", f"{part['expired_rows']:,}", human_size(part["payload_bytes"]))
        table.append((name, *rows, _when(part["newest_fetched_at"])))
    widths = [max(len(row[column]) for row in table) for column in range(len(table[0]))]
    lines.append("")
    for row in table:
        # Names and dates left-aligned, numbers right-aligned.
        cells = [
            cell.ljust(width) if column in (0, 4) else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(row, widths))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


@store_command(_render_stats)
def stats(url: str | None) -> Report:
    """Show how many rows and bytes the cache holds, per backend.

    Rows, expired rows (still stored until `purge`), payload size, the
    oldest and newest fetch times, and how many keys get_or_fetch callers are
    fetching now (claims held). A missing cache file is reported, not created.
    """
    with _existing_cache(url) as (target, repository):
        counts = CacheStats() if repository is None else repository.stats()
        return {"target": target, "exists": repository is not None, **counts.as_dict()}


def _render_get(report: Report) -> str | bytes:
    if "payload_base64" in report:
        return base64.b64decode(report["payload_base64"])
    return json.dumps(report, indent=2, ensure_ascii=False)


@store_command(_render_get)
@click.argument("backend", callback=_check_key_argument)
@click.argument("signature", callback=_check_key_argument)
@click.option("--meta", is_flag=True, help="Print headers, fetched_at and expires_at as JSON instead of the payload.")
@click.option("--stale", is_flag=True, help="Also print a row that has expired but is still stored.")
def get(url: str | None, backend: str, signature: str, meta: bool, stale: bool) -> Report:
    """Print one cached payload to stdout, byte for byte.

    The row is found by BACKEND and SIGNATURE, exactly as the application
    stored them. Exits 1 when there is no such row, or it has expired
    (unless --stale). With --json: one JSON object with the metadata and the
    payload in base64.

    \b
    Examples:
      animedex-store get jikan SIGNATURE > response.json
      animedex-store get jikan SIGNATURE --meta --stale
    """
    with _existing_cache(url) as (target, repository):
        found = _require(repository, target).get_with_meta(backend, signature, allow_stale=True)
    if found is None:
        raise click.ClickException(f"no row for backend {backend!r}, signature {signature!r} in {target}")
    if found.is_stale and not stale:
        expired = found.expires_at.strftime("%Y-%m-%d %H:%M:%S UTC")
        raise click.ClickException(f"the row for {backend!r}, {signature!r} expired at {expired}; --stale prints it")
    report = {
        "target": target,
        "backend": backend,
        "signature": signature,
        "headers": found.headers,
        "fetched_at": None if found.fetched_at is None else found.fetched_at.isoformat(),
        "expires_at": found.expires_at.isoformat(),
        "is_stale": found.is_stale,
        "payload_bytes": len(found.payload),
    }
    if not meta:
        report["payload_base64"] = base64.b64encode(found.payload).decode("ascii")
    return report


def _render_delete(report: Report) -> str:
    return f"deleted the row for {report['backend']!r}, {report['signature']!r} from {report['target']}"


@store_command(_render_delete)
@click.argument("backend", callback=_check_key_argument)
@click.argument("signature", callback=_check_key_argument)
def delete(url: str | None, backend: str, signature: str) -> Report:
    """Delete one row, expired or not.

    The row is found by BACKEND and SIGNATURE, exactly as the application
    stored them. Exits 1 when there is no such row.
    """
    with _existing_cache(url) as (target, repository):
        if not _require(repository, target).delete(backend, signature):
            raise click.ClickException(f"no row for backend {backend!r}, signature {signature!r} in {target}")
    return {"target": target, "backend": backend, "signature": signature, "deleted": True}


def _render_clear(report: Report) -> str:
    if not report["exists"]:
        return f"no cache at {report['target']}; nothing to clear"
    scope = "" if report["backend"] is None else f" of backend {report['backend']!r}"
    return f"removed {report['removed']:,} row(s){scope} from {report['target']}"


@store_command(_render_clear)
@click.option("--backend", metavar="NAME", callback=_check_key_argument, help="Only this backend's rows.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def clear(url: str | None, backend: str | None, yes: bool) -> Report:
    """Delete every row, or only one backend's.

    Asks first, showing how much would go, unless --yes is given; with no
    terminal to ask on, --yes is required. The file keeps its size until
    `vacuum` gives the space back.
    """
    with _existing_cache(url) as (target, repository):
        if repository is None:
            return {"target": target, "exists": False, "backend": backend, "removed": 0}
        if not yes:
            _confirm_clear(repository, target, backend)
        return {"target": target, "exists": True, "backend": backend, "removed": repository.clear(backend)}


def _confirm_clear(repository: CacheRepository, target: str, backend: str | None) -> None:
    """Ask before deleting anything; exit 1 if the answer is no or nobody can answer."""
    counts = repository.stats()
    part = counts if backend is None else counts.backends.get(backend, BackendStats())
    if part.rows == 0:
        return
    scope = "" if backend is None else f" of backend {backend!r}"
    what = f"{part.rows:,} row(s){scope} ({human_size(part.payload_bytes)})"
    if not _stdin_is_terminal():
        raise click.ClickException(f"not deleting {what} from {target}: pass --yes to confirm (no terminal to ask on)")
    if not click.confirm(f"Delete {what} from {target}?", err=True):
        raise click.ClickException("cancelled; nothing was deleted")


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
    with _existing_cache(url) as (target, repository):
        if repository is None:
            return {"target": target, "exists": False, "reclaimed_bytes": 0}
        if sys.stderr.isatty():
            click.echo(f"compacting {target} ...", err=True)
        return {"target": target, "exists": True, "reclaimed_bytes": repository.vacuum()}
