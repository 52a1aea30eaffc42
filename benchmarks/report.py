"""The results table (Markdown, so it pastes into RESULTS.md) and its JSON form."""

from __future__ import annotations

import json
import os
import platform
import sqlite3
from datetime import datetime, timezone

import sqlalchemy

from .measure import Result, Settings, Skipped

__all__ = ["environment", "markdown_table", "as_json"]


def environment(settings: Settings, runs: int) -> dict[str, object]:
    """What the numbers depend on: machine, versions, mode and date."""
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{_cpu_name()} ({platform.machine()}), {os.cpu_count()} CPUs, {platform.platform(terse=True)}",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "sqlalchemy": sqlalchemy.__version__,
        "mode": "quick" if settings.quick else "full",
        "repeats": settings.repeats,
        "runs": runs,
    }


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"


def _verdict(row: Result) -> str:
    if row.target is None:
        return ""
    return f"≤ {row.target:g}: " + ("met" if row.met else "**missed**")


def markdown_table(rows: list[Result | Skipped]) -> str:
    """One row per comparison: medians in µs per operation, ratio = ours / baseline
    (and each run's ratio when several runs were merged)."""
    runs = any(isinstance(row, Result) and row.run_ratios for row in rows)
    lines = [
        "| operation | ours µs/op | baseline | baseline µs/op | ratio |"
        + (" each run |" if runs else "")
        + " target |",
        "|---|---:|---|---:|---:|" + ("---|" if runs else "") + "---|",
    ]
    for row in rows:
        if isinstance(row, Skipped):
            lines.append(f"| {row.operation} | – | skipped: {row.reason} | – | – |" + (" – |" if runs else "") + " – |")
            continue
        each = f" {' '.join(f'{ratio:.2f}' for ratio in row.run_ratios)} |" if runs else ""
        lines.append(
            f"| {row.operation} | {_number(row.ours_us)} | {row.baseline} | {_number(row.baseline_us)} "
            f"| {row.ratio:.2f} |{each} {_verdict(row)} |"
        )
    return "\n".join(lines)


def as_json(settings: Settings, runs: int, rows: list[Result | Skipped]) -> str:
    """Every row with its numbers, plus the environment, for machines."""
    encoded = []
    for row in rows:
        if isinstance(row, Skipped):
            encoded.append({"operation": row.operation, "skipped": row.reason})
        else:
            encoded.append(
                {
                    "operation": row.operation,
                    "ours_us": row.ours_us,
                    "baseline": row.baseline,
                    "baseline_us": row.baseline_us,
                    "ratio": row.ratio,
                    "run_ratios": list(row.run_ratios),
                    "target_ratio": row.target,
                    "met": row.met,
                }
            )
    return json.dumps({"environment": environment(settings, runs), "results": encoded}, indent=2, ensure_ascii=False)
