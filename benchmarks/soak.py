"""Soak run: the reliability tests at full size, with a summary of what they survived.

    python -m benchmarks.soak            # 8 x 5,000 contention, 50 kills, 100k-row migration kills, ...
    python -m benchmarks.soak --quick    # the CI sizes
    python -m benchmarks.soak --no-servers

It runs the same tests CI runs (``tests/test_contention.py`` and friends),
scaled up through ``ANIMEDEX_STORE_SOAK=1`` (sizes in ``tests/reliability.py``),
collects the figures each test records, and prints them. The exit code is
pytest's: 0 only when everything held. Run it from the checkout.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
RELIABILITY_TESTS = [
    "tests/test_contention.py",
    "tests/test_crash_safety.py",
    "tests/test_faults.py",
    "tests/test_state_machine.py",
    "tests/test_hostile_input.py",
    "tests/test_security.py",
    "tests/test_upgrade_safety.py",
]


def run(quick: bool, servers: bool, report: Path) -> int:
    """Run the reliability tests, appending their figures to ``report``; pytest's exit code."""
    environment = {**os.environ, "ANIMEDEX_STORE_SOAK_REPORT": str(report)}
    environment.pop("ANIMEDEX_STORE_SOAK", None)
    if not quick:
        environment["ANIMEDEX_STORE_SOAK"] = "1"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *RELIABILITY_TESTS]
    if not servers:
        command += ["-m", "not server"]
    return subprocess.run(command, cwd=REPO_ROOT, env=environment, check=False).returncode


def summarise(records: list[dict]) -> list[str]:
    """Human lines for the recorded figures."""
    by_test: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        by_test[record.pop("test")].append(record)
    lines = []
    for figures in by_test.get("contention", []):
        lines.append(
            f"contention: {figures['processes']} processes x {figures['operations_per_process']:,} operations"
            f" = {figures['operations']:,} calls, {figures['acknowledged_writes']:,} acknowledged writes,"
            f" {figures['errors']} errors, {figures['lost']} lost"
        )
    for figures in by_test.get("kill_9_writer", []):
        lines.append(
            f"kill -9 of a writer: {figures['kills']} kills survived ({figures['killed_while_opening']} while"
            f" opening), {figures['acknowledged_keys']:,} acknowledged keys, all present, integrity ok after each"
        )
    for figures in by_test.get("kill_9_during_migration", []):
        lines.append(
            f"kill -9 during migration of a {figures['seed_rows']:,}-row seed v1 file: at each of"
            f" {figures['statement_kills']} statements (revisions {', '.join(figures['revisions'])}),"
            f" old schema left {figures['left_old_schema']}x, new {figures['left_new_schema']}x, no row lost"
        )
    for figures in by_test.get("kill_9_random_during_migration", []):
        lines.append(
            f"kill -9 at random moments of that migration: {figures['kills']} kills,"
            f" old schema left {figures['old']}x, new {figures['new']}x, no row lost"
        )
    faults = [figures["kind"] for figures in by_test.get("fault", [])]
    if faults:
        lines.append(f"faults tried: {len(faults)} ({'; '.join(faults)})")
    for figures in by_test.get("state_machine", []):
        lines.append(
            f"model-based test on {figures['engine']}: {figures['examples']:,} hypothesis examples,"
            f" {figures['steps']:,} checked calls"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the CI sizes instead of the soak's")
    parser.add_argument("--no-servers", action="store_true", help="skip the PostgreSQL and MariaDB tests")
    parser.add_argument("--report", type=Path, help="also keep the raw figures (JSON lines) in this file")
    arguments = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        report = arguments.report or Path(scratch) / "soak.jsonl"
        report.unlink(missing_ok=True)
        exit_code = run(arguments.quick, not arguments.no_servers, report)
        records = [json.loads(line) for line in report.read_text().splitlines()] if report.exists() else []
    print(f"\nsoak ({'quick' if arguments.quick else 'full'}): {'PASSED' if exit_code == 0 else 'FAILED'}")
    for line in summarise(records):
        print(f"  {line}")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
