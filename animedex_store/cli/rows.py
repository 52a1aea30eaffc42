"""Commands that look at and remove rows: ``stats``, ``keys``, ``get``, ``delete`` and ``clear``.

They open the cache like any repository, so on an up-to-date SQLite file they
run without SQLAlchemy (scripts call ``get`` in loops).
"""

from __future__ import annotations

import base64
import itertools
import json
import sys
from datetime import datetime, timezone

import click

from ..core.stats import BackendStats, CacheStats
from ..core.validation import check_key
from ..repository import CacheRepository
from .group import Report, existing_cache, human_size, include_expired_option, store_command

__all__ = ["stats", "keys", "get", "delete", "clear"]


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
    with existing_cache(url) as (target, repository):
        counts = CacheStats() if repository is None else repository.stats()
        return {"target": target, "exists": repository is not None, **counts.as_dict()}


def _render_keys(report: Report) -> str:
    if not report["exists"]:
        return f"no cache at {report['target']}"
    table = [("SIGNATURE", "EXPIRES", "SIZE")]
    for key in report["keys"]:
        expires = _when(key["expires_at"]) + (" (expired)" if key["expired"] else "")
        table.append((key["signature"], expires, human_size(key["bytes"])))
    widths = [max(len(row[column]) for row in table) for column in range(3)]
    lines = [f"{row[0].ljust(widths[0])}  {row[1].ljust(widths[1])}  {row[2].rjust(widths[2])}" for row in table]
    lines.append(f"{len(report['keys']):,} key(s) of backend {report['backend']!r} in {report['target']}")
    return "\n".join(lines)


@store_command(_render_keys)
@click.argument("backend", callback=_check_key_argument)
@include_expired_option("Also list rows that have expired but are still stored.", deprecated="--expired")
@click.option("--limit", type=click.IntRange(min=1), metavar="N", help="List at most N keys.")
def keys(url: str | None, backend: str, include_expired: bool, limit: int | None) -> Report:
    """List one backend's keys, with when each expires and its size.

    Sorted by signature; payloads are not read, so this is quick on a large
    cache. Sizes are as stored (compressed rows count compressed bytes). A
    missing cache file is reported, not created.

    \b
    Examples:
      animedex-store keys anilist --limit 20
      animedex-store keys rc:10:http_cache:responses --include-expired --json
    """
    with existing_cache(url) as (target, repository):
        if repository is None:
            return {"target": target, "exists": False, "backend": backend, "keys": []}
        now = datetime.now(timezone.utc)
        listed = [
            {
                "signature": key.signature,
                "expires_at": key.expires_at.isoformat(),
                "expired": key.expires_at <= now,
                "bytes": key.size,
            }
            for key in itertools.islice(repository.keys(backend, include_expired=include_expired), limit)
        ]
    return {"target": target, "exists": True, "backend": backend, "keys": listed}


def _render_get(report: Report) -> str | bytes:
    if "payload_base64" in report:
        return base64.b64decode(report["payload_base64"])
    return json.dumps(report, indent=2, ensure_ascii=False)


@store_command(_render_get)
@click.argument("backend", callback=_check_key_argument)
@click.argument("signature", callback=_check_key_argument)
@click.option("--meta", is_flag=True, help="Print headers, fetched_at and expires_at as JSON instead of the payload.")
@include_expired_option("Also print a row that has expired but is still stored.", deprecated="--stale")
def get(url: str | None, backend: str, signature: str, meta: bool, include_expired: bool) -> Report:
    """Print one cached payload to stdout, byte for byte.

    The row is found by BACKEND and SIGNATURE, exactly as the application
    stored them. Exits 1 when there is no such row, or it has expired
    (unless --include-expired). With --json: one JSON object with the metadata and the
    payload in base64.

    \b
    Examples:
      animedex-store get jikan SIGNATURE > response.json
      animedex-store get jikan SIGNATURE --meta --include-expired
    """
    with existing_cache(url) as (target, repository):
        found = _require(repository, target).get_with_meta(backend, signature, include_expired=True)
    if found is None:
        raise click.ClickException(f"no row for backend {backend!r}, signature {signature!r} in {target}")
    if found.is_stale and not include_expired:
        expired = found.expires_at.strftime("%Y-%m-%d %H:%M:%S UTC")
        raise click.ClickException(
            f"the row for {backend!r}, {signature!r} expired at {expired}; --include-expired prints it"
        )
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
    with existing_cache(url) as (target, repository):
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
    with existing_cache(url) as (target, repository):
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
