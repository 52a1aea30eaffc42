"""Timing helpers and the result rows every suite returns.

Each measurement runs a batch of operations several times and keeps the
median per-operation time; ours and the baseline alternate round by round, so
a noisy neighbour on a shared machine slows both sides alike. The garbage
collector is paused during a round, as ``timeit`` does.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

__all__ = ["Settings", "Result", "Skipped", "per_op_us", "interleaved", "alternating_ops", "median_of", "merge_runs"]


@dataclass(frozen=True)
class Settings:
    """How much work each suite does; ``quick`` is the CI smoke run."""

    quick: bool
    repeats: int  # rounds per measurement; the median is kept
    ops: int  # single operations per round
    scale_sizes: tuple[int, ...]  # table sizes for the purge/get-at-scale suite
    scale_payload: int  # payload bytes per row in that suite
    cold_starts: int  # interpreter launches per side
    fixture_tests: int  # tests in the generated pytest run

    @classmethod
    def for_run(cls, quick: bool, scale_payload: int = 256) -> Settings:
        if quick:
            return cls(quick, 3, 300, (1_000, 10_000), scale_payload, cold_starts=3, fixture_tests=50)
        return cls(quick, 9, 10_000, (10_000, 100_000, 1_000_000), scale_payload, cold_starts=21, fixture_tests=1_000)


@dataclass(frozen=True)
class Result:
    """One table row: ours against one baseline, in µs per operation."""

    operation: str
    ours_us: float
    baseline: str
    baseline_us: float
    target: float | None = None  # the ratio ours/baseline must not exceed; None: for information
    run_ratios: tuple[float, ...] = ()  # each run's ratio, when several runs were merged

    @property
    def ratio(self) -> float:
        """ours / baseline; over merged runs, the median of each run's ratio (each run pairs its own numbers)."""
        if self.run_ratios:
            return statistics.median(self.run_ratios)
        return self.ours_us / self.baseline_us

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.ratio <= self.target


@dataclass(frozen=True)
class Skipped:
    """A table row for a measurement that could not run here (a server that does not answer)."""

    operation: str
    reason: str


def _timed_round(run: Callable[[], object]) -> float:
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        run()
        return (time.perf_counter_ns() - start) / 1000
    finally:
        if gc_was_enabled:
            gc.enable()


def per_op_us(run: Callable[[], object], ops: int, repeats: int) -> float:
    """Median µs per operation of ``run`` (which performs ``ops`` operations)."""
    run()  # warm up: statement caches, page cache, lazy imports
    return statistics.median(_timed_round(run) for _ in range(repeats)) / ops


def interleaved(
    runs: dict[str, Callable[[], object]], ops: int, repeats: int, *, warm_up: bool = True
) -> dict[str, float]:
    """Median µs per operation of each of ``runs``, alternating between them round by round."""
    if warm_up:
        for run in runs.values():
            run()
    rounds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            rounds[name].append(_timed_round(run))
    return {name: statistics.median(times) / ops for name, times in rounds.items()}


def alternating_ops(calls: dict[str, Callable[[str], object]], keys: list[str], repeats: int) -> dict[str, float]:
    """Median µs of single operations, the callers taking turns op by op.

    For round trips to a server: their latency swings with how the scheduler
    treats a process that sleeps on a socket, which changes from one
    millisecond to the next; alternating every operation exposes both sides to
    the same conditions. Each call gets every key, ``repeats`` times.
    """
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for call in calls.values():
        call(keys[0])  # warm up: connections, prepared statements
    clock = time.perf_counter_ns
    for _ in range(repeats):
        for key in keys:
            for name, call in calls.items():
                start = clock()
                call(key)
                samples[name].append((clock() - start) / 1000)
    return {name: statistics.median(times) for name, times in samples.items()}


def median_of(samples: list[float]) -> float:
    """The median of ``samples`` (one helper so every suite summarises alike)."""
    return statistics.median(samples)


def merge_runs(runs: list[list[Result | Skipped]]) -> list[Result | Skipped]:
    """One row per comparison over several runs: median µs of each side, and every run's ratio."""
    if len(runs) == 1:
        return runs[0]
    merged: list[Result | Skipped] = []
    for position, first in enumerate(runs[0]):
        same = [run[position] for run in runs]
        results = [row for row in same if isinstance(row, Result)]
        if len(results) < len(same):
            merged.append(next(row for row in same if isinstance(row, Skipped)))
            continue
        merged.append(
            replace(
                first,
                ours_us=statistics.median(row.ours_us for row in results),
                baseline_us=statistics.median(row.baseline_us for row in results),
                run_ratios=tuple(row.ratio for row in results),
            )
        )
    return merged
