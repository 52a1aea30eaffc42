"""``python -m benchmarks [--quick] [--json] [--runs N] [--only SUITE ...]``: run the suites, print one table.

Nothing here asserts anything about time: ``--quick`` is the CI smoke run
(small sizes, few repeats) and a missed target is reported, never raised.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from . import (
    async_suite,
    batch,
    django_cache,
    hishel_hits,
    hot_path,
    http_cache_hits,
    layouts,
    loop_held,
    real_payloads,
    requests_cache_hits,
    scale,
    servers,
    startup,
)
from .measure import Result, Settings, Skipped, merge_runs
from .report import as_json, environment, markdown_table

SUITES = {
    "hot_path": hot_path.run,
    "batch": batch.run,
    "real_payloads": real_payloads.run,
    "layouts": layouts.run,
    "requests_cache": requests_cache_hits.run,
    "hishel": hishel_hits.run,
    "http_caches": http_cache_hits.run,
    "scale": scale.run,
    "startup": startup.run,
    "servers": servers.run,
    "async": async_suite.run,
    "loop_held": loop_held.run,
    "django": django_cache.run,
}


def _run_suites(suites: list[str], settings: Settings, number: int) -> list[Result | Skipped]:
    rows: list[Result | Skipped] = []
    # Big scale files go to the temporary directory and are removed afterwards.
    with tempfile.TemporaryDirectory(prefix="animedex-bench-") as workdir:
        for name in suites:
            started = time.perf_counter()
            suite_dir = Path(workdir) / name
            suite_dir.mkdir()
            rows += SUITES[name](settings, suite_dir)
            print(f"benchmarks: run {number}: {name} done in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: small sizes, few repeats (CI)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    parser.add_argument("--only", nargs="+", choices=sorted(SUITES), metavar="SUITE", help="run only these suites")
    parser.add_argument(
        "--scale-payload", type=int, default=256, metavar="BYTES", help="payload size in the scale suite"
    )
    parser.add_argument("--runs", type=int, default=1, metavar="N", help="run everything N times; report medians")
    args = parser.parse_args(argv)
    settings = Settings.for_run(args.quick, args.scale_payload)
    suites = [name for name in SUITES if not args.only or name in args.only]
    rows = merge_runs([_run_suites(suites, settings, number) for number in range(1, args.runs + 1)])
    if args.json:
        print(as_json(settings, args.runs, rows))
    else:
        for key, value in environment(settings, args.runs).items():
            print(f"- {key}: {value}")
        print()
        print(markdown_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
